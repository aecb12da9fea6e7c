package southbound

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/mapping"
)

type countingSink struct {
	samples, states atomic.Int32
	slow            time.Duration
}

func (c *countingSink) Samples(string, []mapping.Sample) { time.Sleep(c.slow); c.samples.Add(1) }
func (c *countingSink) State(string, State, error)       { c.states.Add(1) }

func TestSinkGuardNeverForwardsAfterClose(t *testing.T) {
	sink := &countingSink{slow: 20 * time.Millisecond}
	var g SinkGuard
	g.Samples(nil) // before Open: dropped, no panic
	g.Open("d", sink)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.Samples(nil) }() // in progress while Close runs
	time.Sleep(5 * time.Millisecond)
	if g.Close() {
		t.Fatal("first Close reported already closed")
	}
	got := sink.samples.Load() // Close waited for the call in progress
	g.Samples(nil)
	g.State(StateOnline, nil)
	wg.Wait()
	if got != 1 || sink.samples.Load() != 1 || sink.states.Load() != 0 {
		t.Fatalf("after Close: samples %d (at Close %d), states %d", sink.samples.Load(), got, sink.states.Load())
	}
	if !g.Close() || !g.Final(StateStopped, nil) || sink.states.Load() != 0 {
		t.Fatal("a closed guard forwarded a final state")
	}
	g.Open("d", sink)
	if g.Final(StateStopped, nil) || sink.states.Load() != 1 {
		t.Fatal("Final on an open guard must forward once and close")
	}
	g.State(StateOnline, nil)
	if sink.states.Load() != 1 {
		t.Fatal("forwarded after Final")
	}
}
