package residency

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4): reclaim a range's pages now. For
// a file mapping this is non-destructive: the next access reads the page
// back from the file.
const madvPageout = 21

var noPageout atomic.Bool // the kernel refused MADV_PAGEOUT (before 5.4)

// TrimExecutable advises the executable's file mappings MADV_RANDOM and
// pages them out. It returns how many bytes of mappings it advised; on a
// kernel without MADV_PAGEOUT it does nothing and returns 0.
func TrimExecutable() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	return PageOut(func(path string) bool { return path == exe }, true)
}

// PageOut pages out the mappings of this process whose file path match
// accepts, advising them MADV_RANDOM first when random is set (a later
// fault then reads one page, not a read-ahead window). The ranges come from
// /proc/self/maps: should a file be unmapped between the read and the
// madvise and the address be reused, MADV_PAGEOUT (unlike MADV_DONTNEED)
// loses nothing. It returns how many bytes of mappings it advised.
func PageOut(match func(path string) bool, random bool) int64 {
	if noPageout.Load() {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	for sc.Scan() {
		start, end, path, ok := parseMapsLine(sc.Text())
		if !ok || !match(path) {
			continue
		}
		size := end - start
		if random {
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, start, size, syscall.MADV_RANDOM)
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, size, madvPageout); e == syscall.EINVAL {
			noPageout.Store(true)
			return n
		}
		n += int64(size)
	}
	return n
}

// mapping parses one /proc/self/maps line and reports whether it maps the
// file path, and its address range.
func mapping(line, path string) (start, end uintptr, ok bool) {
	start, end, p, ok := parseMapsLine(line)
	if !ok || p != path {
		return 0, 0, false
	}
	return start, end, true
}

// parseMapsLine splits one /proc/self/maps line into its address range and
// the mapped file's path ("" for an anonymous mapping).
func parseMapsLine(line string) (start, end uintptr, path string, ok bool) {
	fields := strings.SplitN(line, " ", 6)
	if len(fields) < 5 {
		return 0, 0, "", false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return 0, 0, "", false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, "", false
	}
	if len(fields) == 6 {
		path = strings.TrimLeft(fields[5], " ")
	}
	return uintptr(s), uintptr(e), path, true
}
