package buffer

import (
	"testing"
	"time"
)

// benchAppendAck is the uplink's live path through the buffer: batches of
// 100 messages appended, read back once committed, and acknowledged.
func benchAppendAck(b *testing.B, opts Options) {
	opts.Dir = b.TempDir()
	q, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	r := q.NewReader()
	payload := []byte(`{"v":21.53,"ts":1764156621123,"q":"good","unit":"°C"}`)
	var next uint64
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(100, b.N-done)
		for range n {
			q.Append("edged/gw1/dev1/tag1", payload)
		}
		done += n
		for next < uint64(done) {
			<-q.Committed(next)
			es, nx, err := r.Read(next, 0, 100)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range es {
				q.Ack(e.Seq, e.Size)
			}
			next = nx
		}
	}
}

// BenchmarkAppendAckLive: acknowledged within the write delay, nothing is
// written to the store (the healthy uplink).
func BenchmarkAppendAckLive(b *testing.B) {
	benchAppendAck(b, Options{CommitInterval: time.Millisecond})
}

// BenchmarkAppendAckWritten: every group commit written to the store at
// once (write_delay off), as during an outage.
func BenchmarkAppendAckWritten(b *testing.B) {
	benchAppendAck(b, Options{CommitInterval: time.Millisecond, WriteDelay: -1})
}
