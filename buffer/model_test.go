package buffer

import (
	"bytes"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// modelEntry is what the model expects the queue to hold.
type modelEntry struct {
	seq     uint64
	topic   string
	payload []byte
	size    int
	staged  bool // readable, not yet on disk (Options.WriteDelay)
}

// queueMachine checks the queue against a model: a plain slice of the
// entries that were appended and neither acknowledged nor evicted, in
// append order.
type queueMachine struct {
	t        *rapid.T
	dir      string
	opts     Options
	q        *Queue
	model    []modelEntry
	nextSeq  uint64
	dropped  uint64 // since the last open
	appended int    // since the last flush
	delayed  bool   // the queue stages commits (WriteDelay) instead of writing at once
}

func (m *queueMachine) open(t *rapid.T) {
	q, err := Open(m.opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if q.Stats().Recovered {
		t.Fatalf("store was moved aside on reopen")
	}
	m.q = q
	m.dropped = 0
}

func (m *queueMachine) Append(t *rapid.T) {
	n := rapid.IntRange(1, 20).Draw(t, "n")
	for range n {
		topic := fmt.Sprintf("edged/gw/dev/tag%d", rapid.IntRange(0, 3).Draw(t, "tag"))
		payload := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "payload")
		m.q.Append(topic, payload)
		m.model = append(m.model, modelEntry{seq: m.nextSeq, topic: topic, payload: payload, size: entryOverhead + headerLen + len(topic) + len(payload)})
		m.nextSeq++
		m.appended++
	}
}

// Flush commits and writes staged entries; the queue then evicts the
// oldest while over LiveBytes, and so does the model.
func (m *queueMachine) Flush(t *rapid.T) {
	m.q.Flush()
	staged := false
	for i := range m.model {
		staged = staged || m.model[i].staged
		m.model[i].staged = false
	}
	if m.appended > 0 || staged {
		m.evict()
	}
	m.appended = 0
}

// Stage commits without writing: what was appended becomes readable but
// stays in memory until its write delay (an hour here) or a flush. The
// queue can only evict what is on disk, and so does the model.
func (m *queueMachine) Stage(t *rapid.T) {
	if !m.delayed {
		t.Skip("writes at once")
	}
	m.q.commitNow()
	for i := len(m.model) - m.appended; i < len(m.model); i++ {
		m.model[i].staged = true
	}
	if m.appended > 0 {
		m.evict()
	}
	m.appended = 0
}

func (m *queueMachine) evict() {
	total := 0
	for _, e := range m.model {
		total += e.size
	}
	for len(m.model) > 0 && int64(total) > m.opts.liveBytes && !m.model[0].staged {
		total -= m.model[0].size
		m.model = m.model[1:]
		m.dropped++
	}
}

func (m *queueMachine) Ack(t *rapid.T) {
	if m.delayed && rapid.Bool().Draw(t, "ack_staged") {
		m.Stage(t) // acknowledge entries that never reached the disk
	} else {
		m.Flush(t)
	}
	if len(m.model) == 0 {
		t.Skip("nothing to ack")
	}
	// Mostly in order from the front (as a broker acknowledges), sometimes
	// anywhere (live and replayed streams interleave).
	i := 0
	if rapid.Bool().Draw(t, "anywhere") {
		i = rapid.IntRange(0, len(m.model)-1).Draw(t, "i")
	}
	n := rapid.IntRange(1, len(m.model)-i).Draw(t, "count")
	for _, e := range m.model[i : i+n] {
		m.q.Ack(e.seq, e.size)
	}
	if rapid.Bool().Draw(t, "twice") { // a duplicate PUBACK after a resend
		m.q.Ack(m.model[i].seq, m.model[i].size)
	}
	m.model = append(m.model[:i], m.model[i+n:]...)
}

func (m *queueMachine) Reopen(t *rapid.T) {
	m.Flush(t)
	if err := m.q.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	m.open(t)
	// Sequence numbers continue after the last one appended before the
	// close, acknowledged or not: never reused.
	if got := m.q.NextSeq(); got != m.nextSeq {
		t.Fatalf("NextSeq after reopen = %d, want %d", got, m.nextSeq)
	}
}

// Check reads everything (in random chunk sizes, so that reads cross the
// memory/disk boundary) and compares with the model.
func (m *queueMachine) Check(t *rapid.T) {
	if m.appended > 0 {
		return // not yet committed: Read would not see them
	}
	r := m.q.NewReader()
	var got []modelEntry
	from := uint64(0)
	for {
		chunk := rapid.IntRange(1, 40).Draw(t, "chunk")
		es, next, err := r.Read(from, 0, chunk)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(es) > chunk {
			t.Fatalf("read %d entries, asked for at most %d", len(es), chunk)
		}
		for _, e := range es {
			got = append(got, modelEntry{seq: e.Seq, topic: string(e.Topic), payload: bytes.Clone(e.Payload), size: e.Size})
		}
		if len(es) == 0 && next == from {
			break
		}
		from = next
	}
	if len(got) != len(m.model) {
		t.Fatalf("queue holds %d entries, model %d\nqueue: %v\nmodel: %v", len(got), len(m.model), seqs(got), seqs(m.model))
	}
	for i := range got {
		g, w := got[i], m.model[i]
		if g.seq != w.seq || g.topic != w.topic || !bytes.Equal(g.payload, w.payload) || g.size != w.size {
			t.Fatalf("entry %d: got seq %d %q (%d bytes, size %d), want seq %d %q (%d bytes, size %d)",
				i, g.seq, g.topic, len(g.payload), g.size, w.seq, w.topic, len(w.payload), w.size)
		}
	}
	st := m.q.Stats()
	total := 0
	for _, e := range m.model {
		total += e.size
	}
	if st.Depth != int64(len(m.model)) || st.Bytes != int64(total) || st.Dropped != m.dropped {
		t.Fatalf("stats depth=%d bytes=%d dropped=%d, model depth=%d bytes=%d dropped=%d", st.Depth, st.Bytes, st.Dropped, len(m.model), total, m.dropped)
	}
}

func seqs(es []modelEntry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.seq
	}
	return out
}

// TestQueueModel: append, ack (in and out of order, twice), reopen and
// eviction never lose an un-acknowledged, un-evicted entry, never reorder,
// never resurrect an acknowledged one, and keep depth, bytes and the drop
// count exact.
func TestQueueModel(t *testing.T) {
	// Each check opens Badger a few times; 40 runs keep this under ~20 s
	// with -race (-rapid.checks=N overrides).
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == f.DefValue {
		_ = f.Value.Set("40")
		defer func() { _ = f.Value.Set(f.DefValue) }()
	}
	base := t.TempDir()
	run := 0
	rapid.Check(t, func(t *rapid.T) {
		run++
		m := &queueMachine{t: t, dir: filepath.Join(base, strconv.Itoa(run))}
		m.delayed = rapid.Bool().Draw(t, "write_delay")
		m.opts = Options{
			Dir:          m.dir,
			MaxBytes:     1 << 30, // the disk budget is not modelled; the message cap is:
			liveBytes:    int64(rapid.IntRange(2000, 40000).Draw(t, "live_bytes")),
			segBytes:     int64(rapid.IntRange(500, 10000).Draw(t, "segment_bytes")),
			MemoryBytes:  int64(rapid.IntRange(500, 8000).Draw(t, "memory_bytes")),
			MemTableSize: 1 << 20,
			WriteDelay:   -1,
		}
		if m.delayed {
			// Nothing becomes due during a run: staged entries reach the
			// disk only through Flush (and Close), not early for memory
			// either (TestWriteDelayBoundedByMemory covers that).
			m.opts.WriteDelay, m.opts.SyncInterval = time.Hour, time.Hour
			m.opts.MemoryBytes = 1 << 20
		}
		m.open(t)
		defer func() { _ = m.q.Close() }()
		t.Repeat(rapid.StateMachineActions(m))
	})
}
