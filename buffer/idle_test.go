package buffer

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing after a generous timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func storeOpen(q *Queue) bool {
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	return q.db != nil
}

// readAll reads every readable entry from seq on.
func readFrom(t *testing.T, q *Queue, from uint64) []Entry {
	t.Helper()
	es, _, err := q.NewReader().Read(from, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// An empty, unused store is closed (Badger's compactors stop), and opened
// again by the first entry that must be written; nothing is lost across
// it, nor across a Close while it is closed.
func TestIdleStoreClosesAndReopens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q, err := Open(Options{Dir: dir, idleClose: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Delivered within the write delay: never written, the store stays idle.
	q.Append("t/a", []byte("a"))
	<-q.Committed(1)
	es := readFrom(t, q, 0)
	if len(es) != 1 {
		t.Fatalf("read %d entries, want 1", len(es))
	}
	q.Ack(es[0].Seq, es[0].Size)
	waitFor(t, "the idle store to close", func() bool { return !storeOpen(q) })
	if q.idleCloses.Load() != 1 || q.Stats().Written != 0 {
		t.Fatalf("closes %d, written %d: want 1 close and nothing written", q.idleCloses.Load(), q.Stats().Written)
	}
	// Not delivered within the write delay: written, which opens it again.
	q.Append("t/b", []byte("b"))
	waitFor(t, "b to be written", func() bool { return q.Stats().Written == 1 })
	if !storeOpen(q) || q.reopens.Load() != 1 {
		t.Fatalf("store open %v after %d reopens, want open after 1", storeOpen(q), q.reopens.Load())
	}
	// It holds b: however long unused, it stays open.
	q.dbUsed.Store(0)
	q.closeIfIdle()
	if !storeOpen(q) {
		t.Fatal("the store was closed while it holds an undelivered entry")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(Options{Dir: dir, idleClose: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	es = readFrom(t, q, 0)
	if len(es) != 1 || string(es[0].Payload) != "b" {
		t.Fatalf("after reopen: %d entries, want b alone", len(es))
	}
	bSeq := es[0].Seq
	q.Ack(es[0].Seq, es[0].Size)
	waitFor(t, "the delivered store to close", func() bool { return !storeOpen(q) })
	// Closed while idle: Close opens it to write the state, and the next
	// start goes on from the sequence numbers given.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if es := readFrom(t, q, 0); len(es) != 0 {
		t.Fatalf("delivered entries came back: %d", len(es))
	}
	if st := q.Stats(); st.LostDamaged+st.LostUnstored != 0 {
		t.Fatalf("losses counted after idle closes: %+v", st)
	}
	q.Append("t/c", []byte("c"))
	<-q.Committed(bSeq + 2)
	if es := readFrom(t, q, 0); len(es) != 1 || es[0].Seq <= bSeq {
		t.Fatalf("new entry %+v, want one after seq %d", es, bSeq)
	}
}

// While the store is closed for idleness Badger's directory lock is
// released; the queue's own lock keeps a second process (here a second
// Open) from taking the store, and nothing is moved aside.
func TestIdleClosedStoreStaysLocked(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "q")
	q, err := Open(Options{Dir: dir, idleClose: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	waitFor(t, "the idle store to close", func() bool { return !storeOpen(q) })
	q2, err := Open(Options{Dir: dir})
	if err == nil {
		q2.Close()
		t.Fatal("a second Open took a store in use")
	}
	if !errors.Is(err, ErrCannotOpen) {
		t.Fatalf("second Open: %v, want ErrCannotOpen", err)
	}
	if m, _ := filepath.Glob(dir + ".broken-*"); len(m) != 0 {
		t.Fatalf("a store in use was moved aside: %v", m)
	}
	// The first queue still works.
	q.Append("t/a", []byte("a"))
	q.Flush()
	if es := readFrom(t, q, 0); len(es) != 1 {
		t.Fatalf("read %d entries after the refused Open, want 1", len(es))
	}
}
