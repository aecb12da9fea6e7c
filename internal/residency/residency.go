// Package residency keeps the pages of edged's own executable that it does
// not use out of its resident set.
//
// On current Linux kernels a file's page cache is made of large folios,
// and a page fault maps the whole folio: running edged for a minute left
// 18 MB of its 21 MB of code and tables resident although the polling and
// publishing paths touch a few megabytes of them. Advising the mappings
// random (no read-ahead: a later fault reads one page) and paging them out
// once start-up is over leaves only what is used from then on
// (bin/bench-compare idle: 23.7 → 14.0 MB RSS).
package residency

import "time"

// Settle is how long after start-up TrimExecutable runs in the daemon: by
// then the devices have been polled and the uplinks connected, so what is
// faulted back in afterwards is what steady running uses.
const Settle = 20 * time.Second
