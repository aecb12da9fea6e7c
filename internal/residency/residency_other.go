//go:build !linux

package residency

// TrimExecutable does nothing outside Linux.
func TrimExecutable() int64 { return 0 }
