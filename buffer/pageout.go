package buffer

import (
	"strings"

	"github.com/edged-gw/edged/internal/residency"
)

// pageOut drops the resident pages of Badger's table and value-log
// mappings in dir from this process.
//
// Badger v4 writes every table through a shared mmap and reads it through
// the same mapping, and there is no option to do otherwise; the pages it
// touched stay mapped, so the process's RSS grows with the backlog (about
// one page per 4 KiB buffered) although the kernel could drop them at any
// time. Paging them out (non-destructive for a shared file mapping) keeps
// RSS flat; reading the backlog faults the pages it needs back in. The
// memtables' write-ahead files are left alone: they are bounded and hot.
func pageOut(dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	residency.PageOut(func(path string) bool {
		return strings.Contains(path, prefix) && (strings.HasSuffix(path, ".sst") || strings.HasSuffix(path, ".vlog"))
	}, false)
}
