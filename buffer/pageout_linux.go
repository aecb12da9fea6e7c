package buffer

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4): reclaim the pages of a range
// now. It is non-destructive: a shared file mapping reads them back from
// the file on the next access; an anonymous page without swap stays.
const madvPageout = 21

var noPageout atomic.Bool

// pageOut drops the resident pages of Badger's table and value-log
// mappings in dir from this process.
//
// Badger v4 writes every table through a shared mmap and reads it through
// the same mapping, and there is no option to do otherwise; the pages it
// touched stay mapped, so the process's RSS grows with the backlog (about
// one page per 4 KiB buffered) although the kernel could drop them at any
// time. Paging them out keeps RSS flat; reading the backlog faults the
// pages it needs back in. The range to advise comes from /proc/self/maps:
// should Badger unmap a table between the read and the madvise and the
// address be reused, MADV_PAGEOUT (unlike MADV_DONTNEED) loses nothing.
// The memtables' write-ahead files are left alone: they are bounded and
// hot.
func pageOut(dir string) {
	if noPageout.Load() {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	prefix := []byte(strings.TrimSuffix(dir, "/") + "/")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.Index(line, prefix)
		if i < 0 {
			continue
		}
		path := line[i:]
		if !bytes.HasSuffix(path, []byte(".sst")) && !bytes.HasSuffix(path, []byte(".vlog")) {
			continue
		}
		rng, _, _ := bytes.Cut(line, []byte(" "))
		lo, hi, ok := bytes.Cut(rng, []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout); e == syscall.EINVAL {
			noPageout.Store(true) // a kernel before 5.4
			return
		}
	}
}
