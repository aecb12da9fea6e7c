package buffer

import (
	"path/filepath"

	badger "github.com/dgraph-io/badger/v4"
	"testing"
	"time"
)

// With a write delay, entries acknowledged before they are due never reach
// the store; the others are written once due and survive a reopen.
func TestWriteDelaySkipsDeliveredEntries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	opts := Options{Dir: dir, MemTableSize: 1 << 20, WriteDelay: 300 * time.Millisecond, SyncInterval: time.Second}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		q.Append("t", []byte{byte(i)})
	}
	q.commitNow()
	r := q.NewReader()
	es, _, err := r.Read(0, 0, 1000)
	if err != nil || len(es) != 100 {
		t.Fatalf("staged entries not readable at once: %d, %v", len(es), err)
	}
	for _, e := range es[:60] { // delivered within the delay
		q.Ack(e.Seq, e.Size)
	}
	if st := q.Stats(); st.Depth != 40 {
		t.Fatalf("depth %d after 60 acks", st.Depth)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Stats().Committed < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c := q.Stats().Committed; c != 100 {
		t.Fatalf("committed %d after the delay, want all 100 settled", c)
	}
	// What reached the store: exactly the 40 undelivered entries.
	if w := q.Stats().Written; w != 40 {
		t.Fatalf("%d entries written, want 40: the 60 delivered within the delay must never be written", w)
	}
	if n := storedEntries(t, q); n != 40 {
		t.Fatalf("%d entries written to the store, want 40 (the delivered 60 must never be written)", n)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	es, _, err = q.NewReader().Read(0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 40 || es[0].Payload[0] != 60 || es[39].Payload[0] != 99 {
		t.Fatalf("after reopen: %d entries (want the 40 undelivered, 60..99)", len(es))
	}
}

// storedEntries counts the entries in the stored batches.
func storedEntries(t *testing.T, q *Queue) int {
	t.Helper()
	n := 0
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{batchPrefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k, ok := parseBatchKey(it.Item().Key()); ok {
				n += int(k.n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWriteDelayBoundedByMemory: when more than maxStaged waits for its
// write delay (an uplink that is down or far behind), the oldest staged
// batches are written at once instead of the memory growing with
// WriteDelay × the message rate.
func TestWriteDelayBoundedByMemory(t *testing.T) {
	opts := Options{Dir: filepath.Join(t.TempDir(), "q"), MaxBytes: 256 << 20, MemoryBytes: 4 << 20,
		WriteDelay: time.Hour, SyncInterval: time.Hour}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	payload := make([]byte, 10_000)
	for range 700 { // 7 MB: within the bound, stays staged
		q.Append("t", payload)
	}
	q.commitNow()
	if w := q.Stats().Written; w != 0 {
		t.Fatalf("%d written with 7 MB staged under a %d-byte bound", w, q.maxStaged())
	}
	for range 2000 { // 20 MB more
		q.Append("t", payload)
	}
	q.commitNow()
	q.mu.Lock()
	staged := q.stagedBytesLocked()
	q.mu.Unlock()
	if st := q.Stats(); staged > q.maxStaged() || st.Written == 0 || st.Depth != 2700 {
		t.Fatalf("%d bytes staged (bound %d), %d written, depth %d", staged, q.maxStaged(), st.Written, st.Depth)
	}
	if es := readAll(t, q); len(es) != 2700 {
		t.Fatalf("%d entries readable, want 2700", len(es))
	}
	// Delivered staged batches do not count: acknowledge everything staged
	// and add as much again; nothing more is written early.
	written := q.Stats().Written
	for _, e := range readAll(t, q) {
		q.Ack(e.Seq, e.Size)
	}
	for range 700 {
		q.Append("t", payload)
	}
	q.commitNow()
	if w := q.Stats().Written; w != written {
		t.Fatalf("%d more written early after the staged ones were delivered", w-written)
	}
}

// With a write delay a commit only stages its entries in memory, so they
// do not wait the commit interval to be gathered: a live message is
// readable (and sent) within about a millisecond, not CommitInterval.
func TestStagedCommitDoesNotWaitCommitInterval(t *testing.T) {
	opts := Options{Dir: filepath.Join(t.TempDir(), "q"), MemTableSize: 1 << 20, WriteDelay: 500 * time.Millisecond,
		SyncInterval: time.Second, CommitInterval: 3 * time.Second}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	seq := q.NextSeq()
	start := time.Now()
	q.Append("t", []byte("live"))
	select {
	case <-q.Committed(seq):
	case <-time.After(2 * time.Second):
		t.Fatalf("a staged append waited %v for its commit (CommitInterval %v)", time.Since(start), opts.CommitInterval)
	}
}
