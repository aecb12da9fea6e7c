//go:build !linux

package residency

// TrimExecutable does nothing outside Linux.
func TrimExecutable() int64 { return 0 }

// PageOut does nothing outside Linux.
func PageOut(func(path string) bool, bool) int64 { return 0 }
