package southbound

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edged-gw/edged/mapping"
)

// countingSink counts calls; with hold set, the first Samples call says
// it entered and waits for release (a call in progress, for as long as the
// test wants, without sleeping).
type countingSink struct {
	samples, states atomic.Int32
	hold            bool
	entered         chan struct{}
	release         chan struct{}
}

func (c *countingSink) Samples(string, []mapping.Sample) {
	if c.hold {
		c.hold = false
		close(c.entered)
		<-c.release
	}
	c.samples.Add(1)
}
func (c *countingSink) State(string, State, error) { c.states.Add(1) }

func TestSinkGuardNeverForwardsAfterClose(t *testing.T) {
	sink := &countingSink{hold: true, entered: make(chan struct{}), release: make(chan struct{})}
	var g SinkGuard
	g.Samples(nil) // before Open: dropped, no panic
	g.Open("d", sink)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.Samples(nil) }() // in progress while Close runs
	<-sink.entered
	// The call is let go only once Close has been called: a Close that did
	// not wait would return before the call counted.
	var closing atomic.Bool
	go func() {
		for !closing.Load() {
			runtime.Gosched()
		}
		close(sink.release)
	}()
	closing.Store(true)
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
