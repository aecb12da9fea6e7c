package residency

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4): reclaim a range's pages now. For
// a file mapping this is non-destructive: the next access reads the page
// back from the file.
const madvPageout = 21

// TrimExecutable advises the executable's file mappings MADV_RANDOM and
// pages them out. It returns how many bytes of mappings it advised; on a
// kernel without MADV_PAGEOUT (before 5.4) it does nothing and returns 0.
func TrimExecutable() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		start, end, ok := mapping(sc.Text(), exe)
		if !ok {
			continue
		}
		size := end - start
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, start, size, syscall.MADV_RANDOM)
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, size, madvPageout); e != 0 {
			return n // EINVAL: a kernel before 5.4
		}
		n += int64(size)
	}
	return n
}

// mapping parses one /proc/self/maps line and reports whether it maps the
// file path, and its address range.
func mapping(line, path string) (start, end uintptr, ok bool) {
	rng, rest, _ := strings.Cut(line, " ")
	if !strings.HasSuffix(rest, " "+path) {
		return 0, 0, false
	}
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
