//go:build !linux

package systemd

// monotonicUsec is 0 where there is no systemd.
func monotonicUsec() int64 { return 0 }
