package systemd

import (
	"syscall"
	"unsafe"
)

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd uses
// for MONOTONIC_USEC, or 0 if it cannot be read.
func monotonicUsec() int64 {
	const clockMonotonic = 1 // CLOCK_MONOTONIC in <time.h>, the same on every Linux architecture
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return int64(ts.Sec)*1_000_000 + int64(ts.Nsec)/1_000
}
