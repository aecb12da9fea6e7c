package buffer

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// diskFiles is the blocks the files in dir take (allocated blocks, as du
// counts; files that vanish while it looks, deleted by a compaction, count
// nothing) and a listing of them (name=KiB).
func diskFiles(dir string) (int64, string) {
	ents, _ := os.ReadDir(dir)
	var total int64
	var list strings.Builder
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !fi.IsDir() {
			total += st.Blocks * 512
			fmt.Fprintf(&list, " %s=%d", e.Name(), st.Blocks/2)
		}
	}
	return total, list.String()
}

func readAll(t *testing.T, q *Queue) []Entry {
	t.Helper()
	r := q.NewReader()
	var out []Entry
	from := uint64(0)
	for {
		es, next, err := r.Read(from, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			e.Topic, e.Payload = append([]byte(nil), e.Topic...), append([]byte(nil), e.Payload...)
			out = append(out, e)
		}
		if len(es) == 0 && next == from {
			return out
		}
		from = next
	}
}

// TestCapDropsOldestExactly: a long outage into a small buffer keeps the
// stored messages under LiveBytes and the store's disk use, sampled every
// few milliseconds, under MaxBytes; the oldest are dropped and counted
// exactly, the newest survive a reopen in order. Dropping is logged as a
// full disk's is: a warn line when it starts, one when it stops with how
// many were dropped, not one per drop.
func TestCapDropsOldestExactly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	var logs logLines
	const quiet = 2 * time.Second
	opts := Options{Dir: dir, MaxBytes: MinMaxBytes, Logger: slog.New(slog.NewTextHandler(&logs, nil)), dropQuiet: quiet}
	start := time.Now()
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	peak, stopSampling := sampleDisk(dir)
	const n = 400_000 // ~45 MiB of messages through a 16 MiB store
	payload := []byte(strings.Repeat("x", 80))
	for i := range n {
		q.Append("edged/gw/dev/tag", fmt.Appendf(payload[:0:0], "%08d%s", i, payload[8:]))
		if i%10_000 == 9_999 {
			q.Flush()
			if st := q.Stats(); st.Bytes > q.opts.LiveBytes() {
				t.Fatalf("after %d appends: %d bytes of messages stored, cap %d", i+1, st.Bytes, q.opts.LiveBytes())
			}
		}
	}
	q.Flush()
	stopSampling()
	maxDisk, peakFiles := peak()
	st := q.Stats()
	if uint64(st.Depth)+st.Dropped != n {
		t.Fatalf("depth %d + dropped %d != appended %d", st.Depth, st.Dropped, n)
	}
	if st.Dropped == 0 {
		t.Fatal("nothing dropped")
	}
	// Each episode of drops (drops with no pause of dropQuiet between
	// them) has one line when it starts and one when it stops; the stop
	// lines add up to every drop.
	deadline := time.Now().Add(quiet + 10*time.Second)
	for logs.count("stopped dropping") < logs.count("dropping messages, the oldest first") {
		if time.Now().After(deadline) {
			t.Fatalf("no warn line when dropping stopped; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	starts := logs.count("dropping messages, the oldest first")
	var logged uint64
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "stopped dropping") {
			continue
		}
		var n uint64
		if i := strings.Index(line, " dropped="); i < 0 || !strings.Contains(line, `reason=max_bytes`) {
			t.Fatalf("stop line without the reason max_bytes or the count: %s", line)
		} else if _, err := fmt.Sscanf(line[i:], " dropped=%d", &n); err != nil {
			t.Fatalf("stop line %q: %v", line, err)
		}
		logged += n
	}
	if episodes := 1 + int(time.Since(start)/quiet); starts < 1 || starts > episodes || logged != st.Dropped {
		t.Fatalf("%d start lines (at most %d episodes fit), stop lines count %d dropped of %d; log:\n%s", starts, episodes, logged, st.Dropped, logs.String())
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	es := readAll(t, q)
	if int64(len(es)) != st.Depth {
		t.Fatalf("%d entries after reopen, depth was %d", len(es), st.Depth)
	}
	for i, e := range es {
		if want := fmt.Sprintf("%08d", int(st.Dropped)+i); string(e.Payload[:8]) != want {
			t.Fatalf("entry %d is %s, want %s (the oldest must go first, the rest in order)", i, e.Payload[:8], want)
		}
	}
	t.Logf("appended %d (%.1f MiB), dropped %d, kept %d (%.1f MiB); disk use peaked at %.1f MiB (max_bytes %.1f MiB)",
		n, float64(n*(entryOverhead+headerLen+16+80))/(1<<20), st.Dropped, st.Depth, float64(st.Bytes)/(1<<20),
		float64(maxDisk)/(1<<20), float64(opts.MaxBytes)/(1<<20))
	if maxDisk > opts.MaxBytes {
		t.Errorf("disk use reached %d bytes, over max_bytes %d; files (KiB):%s", maxDisk, opts.MaxBytes, peakFiles)
	}
}

// TestMaxAge drops entries older than max_age. The queue's clock is
// moved instead of the test sleeping past max_age.
func TestMaxAge(t *testing.T) {
	q, err := Open(Options{Dir: filepath.Join(t.TempDir(), "q"), MaxAge: 1500 * time.Millisecond, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var skew atomic.Int64
	q.mu.Lock()
	q.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	q.mu.Unlock()
	for range 10 {
		q.Append("a", []byte("old"))
	}
	q.Flush()
	skew.Store(int64(1600 * time.Millisecond))
	q.Append("a", []byte("new"))
	q.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for q.Stats().Dropped < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: old entries not dropped", q.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if es := readAll(t, q); len(es) != 1 || string(es[0].Payload) != "new" {
		t.Fatalf("left %d entries", len(es))
	}
}

// TestBrokenStoreMovedAside: a store Badger cannot open is moved aside, a
// fresh one works, and the alarm is raised.
func TestBrokenStoreMovedAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q, err := Open(Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	q.Append("a", []byte("1"))
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("garbage, not a manifest"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err = Open(Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatalf("open of a damaged store failed instead of starting fresh: %v", err)
	}
	defer q.Close()
	st := q.Stats()
	if !st.Recovered || !strings.Contains(st.RecoveredFrom, ".broken-") {
		t.Fatalf("no alarm: %+v", st)
	}
	if _, err := os.Stat(st.RecoveredFrom); err != nil {
		t.Fatalf("damaged store not kept for inspection: %v", err)
	}
	q.Append("a", []byte("2"))
	q.Flush()
	if es := readAll(t, q); len(es) != 1 {
		t.Fatalf("fresh store holds %d entries", len(es))
	}
}

// TestDiskFull: on a tiny tmpfs that something else fills up, the queue
// pauses writing (no SIGBUS, no corruption), keeps new messages within its
// memory bound (dropping and counting the oldest of those), and resumes by
// itself when space frees; what it stored is intact after a reopen.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("TestDiskFull mounts a tmpfs and needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	opts := Options{Dir: filepath.Join(mnt, "q"), MemTableSize: 1 << 20, MemoryBytes: 256 << 10, MaxBytes: 64 << 20}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("p", 100))
	for range 1000 {
		q.Append("before", payload)
	}
	q.Flush()
	// Something else fills the disk, leaving less than the store needs.
	free, err := freeBytes(mnt)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 20_000 { // ~2.4 MB: more than the memory bound
		q.Append("during", payload)
	}
	q.Flush()
	st := q.Stats()
	if !st.DiskFull {
		t.Fatalf("disk full not noticed: %+v", st)
	}
	if st.Dropped == 0 || st.Pending*int64(len(payload)) > 2*opts.MemoryBytes {
		t.Fatalf("memory not bounded while the disk is full: %+v", st)
	}
	q.mu.Lock()
	held := cap(q.pendBuf)
	q.mu.Unlock()
	if int64(held) > 4*opts.MemoryBytes { // the dropped ones' bytes are given back, not just skipped
		t.Fatalf("%d bytes held for %d pending messages while the disk is full (memory_bytes %d)", held, st.Pending, opts.MemoryBytes)
	}
	t.Logf("disk full: %+v", st)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.Flush()
		st = q.Stats()
		if !st.DiskFull && st.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not resume after space freed: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if uint64(st.Depth)+st.Dropped != 21_000 {
		t.Fatalf("depth %d + dropped %d != 21000 appended", st.Depth, st.Dropped)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	es := readAll(t, q)
	if int64(len(es)) != st.Depth || string(es[0].Topic) != "before" || string(es[len(es)-1].Topic) != "during" {
		t.Fatalf("after reopen %d entries (want %d)", len(es), st.Depth)
	}
}
