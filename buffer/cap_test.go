package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// sampleDisk records the peak disk use of dir every 2 ms until stop is
// called.
func sampleDisk(dir string) (peak func() (int64, string), stop func()) {
	var max atomic.Int64
	var files atomic.Value
	files.Store("")
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if d, f := diskFiles(dir); d > max.Load() {
				max.Store(d)
				files.Store(f)
			}
		}
	}()
	return func() (int64, string) { return max.Load(), files.Load().(string) },
		func() { close(done); <-stopped }
}

// TestDiskCapHoldsWhenCompactionsFallBehind: when the store reaches
// MaxBytes before the message cap drops anything (here forced by a message
// cap above MaxBytes; in the field, a flood faster than compactions), writes
// pause: the disk use stays under MaxBytes, the newest wait in memory with
// the oldest of those dropped and counted, nothing stored is lost, and
// writing resumes by itself once deliveries free space.
func TestDiskCapHoldsWhenCompactionsFallBehind(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	opts := Options{Dir: dir, MaxBytes: MinMaxBytes, MemoryBytes: 1 << 20, liveBytes: 1 << 30}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	peak, stop := sampleDisk(dir)
	const n = 300_000 // ~33 MiB of messages into a 16 MiB store
	payload := []byte(strings.Repeat("x", 80))
	for i := range n {
		q.Append("edged/gw/dev/tag", fmt.Appendf(payload[:0:0], "%08d%s", i, payload[8:]))
		if i%10_000 == 9_999 {
			q.Flush()
		}
	}
	q.Flush()
	st := q.Stats()
	if !st.AtCap {
		t.Fatalf("store not at its cap after %d MiB into %d MiB: %+v", n*113>>20, opts.MaxBytes>>20, st)
	}
	if uint64(st.Depth)+uint64(st.Pending)+st.Dropped != n || st.Dropped == 0 {
		t.Fatalf("depth %d + pending %d + dropped %d != appended %d", st.Depth, st.Pending, st.Dropped, n)
	}
	// What is stored is in order: the oldest, then (if the cap cleared for
	// a while during the flood) newer ones after the held messages that
	// were dropped.
	r := q.NewReader()
	last := -1
	from, acked := uint64(0), 0
	for {
		es, nx, err := r.Read(from, 0, 256)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			var v int
			if _, err := fmt.Sscanf(string(e.Payload[:8]), "%d", &v); err != nil || v <= last {
				t.Fatalf("stored entry %d is %s, after %d", acked, e.Payload[:8], last)
			}
			if acked == 0 && v != 0 {
				t.Fatalf("the oldest message was dropped: first stored is %d", v)
			}
			last = v
			q.Ack(e.Seq, e.Size) // delivered: frees its segments
			acked++
		}
		if len(es) == 0 && nx == from {
			break
		}
		from = nx
	}
	// The held ones may have been written while we read (the cap cleared).
	if int64(acked) < st.Depth || int64(acked) > st.Depth+st.Pending {
		t.Fatalf("read %d stored entries, depth was %d (+%d held)", acked, st.Depth, st.Pending)
	}
	// With the stored ones delivered, the held ones get written.
	deadline := time.Now().Add(10 * time.Second)
	for q.Stats().AtCap || q.Stats().Pending > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume after the store was drained: %+v", q.Stats())
		}
		time.Sleep(10 * time.Millisecond)
		q.Flush()
	}
	stop()
	if p, files := peak(); p > opts.MaxBytes {
		t.Errorf("disk use reached %d bytes, over max_bytes %d; files (KiB):%s", p, opts.MaxBytes, files)
	} else {
		t.Logf("disk use peaked at %.1f MiB of %d MiB; %d stored, %d held then written, %d dropped", float64(p)/(1<<20), opts.MaxBytes>>20, acked, st.Pending, st.Dropped)
	}
	q.Append("edged/gw/dev/tag", []byte("after"))
	q.Flush()
	es := readAll(t, q)
	if int64(acked+len(es)) != st.Depth+st.Pending+1 || string(es[len(es)-1].Payload) != "after" {
		t.Fatalf("after resuming: %d delivered + %d readable, want the %d stored + %d held + 1", acked, len(es), st.Depth, st.Pending)
	}
	if d := q.Stats().Dropped; d != st.Dropped {
		t.Fatalf("dropped %d after the flood stopped, %d during it", d, st.Dropped)
	}
}

// TestOldFormatMovedAside: a store written by an edged that kept one key
// per message is another format: moved aside with the alarm raised, never
// misread.
func TestOldFormatMovedAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("q\x00\x00\x00\x00\x00\x00\x00\x01"), []byte("an old entry"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st := q.Stats()
	if !st.Recovered {
		t.Fatalf("old-format store opened as if current: %+v", st)
	}
	if _, err := os.Stat(st.RecoveredFrom); err != nil {
		t.Fatalf("old store not kept: %v", err)
	}
	if es := readAll(t, q); len(es) != 0 {
		t.Fatalf("fresh store holds %d entries", len(es))
	}
}

// TestWriterBehindBoundsMemory: when the writer does not keep up (here it
// does not run at all), what waits for it stays within maxPending: the
// oldest waiting messages are dropped and counted, their memory given back.
func TestWriterBehindBoundsMemory(t *testing.T) {
	opts := Options{Dir: "unused", MaxBytes: MinMaxBytes, MemoryBytes: 64 << 10}
	opts.defaults()
	q := &Queue{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1)}
	payload := []byte(strings.Repeat("p", 100))
	const n = 50_000 // ~5.5 MB against a bound of 512 KiB
	for range n {
		q.Append("edged/gw/dev/tag", payload)
	}
	st := q.Stats()
	waiting := int64(len(q.pendBuf) - q.pending[q.pendFrom].off)
	if waiting > q.maxPending() || st.Dropped == 0 || uint64(st.Pending)+st.Dropped != n {
		t.Fatalf("%d bytes waiting (bound %d), %d pending + %d dropped of %d", waiting, q.maxPending(), st.Pending, st.Dropped, n)
	}
	if int64(cap(q.pendBuf)) > 4*q.maxPending() {
		t.Fatalf("%d bytes held for %d bytes waiting", cap(q.pendBuf), waiting)
	}
	// The newest are the ones kept.
	last := q.pending[len(q.pending)-1]
	if last.seq != n-1 {
		t.Fatalf("newest waiting is seq %d, want %d", last.seq, n-1)
	}
}

// TestAliveReportsAStuckWriter: a writer that cannot take a turn (here:
// the queue's lock held elsewhere) is reported after stuckAfter, so that
// the watchdog restarts the daemon; it is alive again once it moves.
func TestAliveReportsAStuckWriter(t *testing.T) {
	q, err := Open(Options{Dir: filepath.Join(t.TempDir(), "q"), MaxBytes: MinMaxBytes, stuckAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	time.Sleep(300 * time.Millisecond)
	if err := q.Alive(); err != nil {
		t.Fatalf("idle writer reported stuck: %v", err)
	}
	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		q.mu.Lock()
		close(held)
		<-release
		q.mu.Unlock()
	}()
	<-held
	time.Sleep(500 * time.Millisecond)
	err = q.Alive()
	close(release)
	if err == nil || !strings.Contains(err.Error(), "writer stuck") {
		t.Fatalf("stuck writer not reported: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Alive() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("writer still reported stuck after it moved: %v", q.Alive())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Alive(); err != nil {
		t.Fatalf("closed queue reported: %v", err)
	}
}
