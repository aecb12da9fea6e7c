package host

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// TestBackoff: equal jitter between half and all of min<<n, capped; a
// driver's RetryAfter and CapBackoff change one wait without a backoff of
// its own.
func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	plain := errors.New("no answer")
	for n, full := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		full *= time.Millisecond
		if n == 5 || n == 6 {
			full = 2 * time.Second
		}
		for range 50 {
			if w := b.waitAfter(plain, n); w < full/2 || w > full {
				t.Fatalf("attempt %d: wait %v, want %v..%v", n, w, full/2, full)
			}
		}
	}
	if w := b.waitAfter(RetryAfter(plain, time.Minute), 0); w != time.Minute {
		t.Errorf("RetryAfter: %v", w)
	}
	capped := CapBackoff(plain, 300*time.Millisecond)
	if w := b.waitAfter(capped, 10); w < 150*time.Millisecond || w > 300*time.Millisecond {
		t.Errorf("CapBackoff: %v", w)
	}
	if !errors.Is(capped, plain) || capped.Error() != plain.Error() {
		t.Errorf("a marked error must stay the error: %v", capped)
	}
}

// fake is a Poller for the lane's own logic: it records whether a poll and
// a write ever overlapped and fails while down.
type fake struct {
	Runner
	name    string
	spec    mapping.Spec
	mu      sync.Mutex
	down    bool
	busy    atomic.Int32
	overlap atomic.Int32
	polls   atomic.Int32
}

func newFake(name string) *fake {
	f := &fake{name: name, spec: mapping.Spec{Name: "v", Type: mapping.TypeUint16, Writable: true}}
	f.Bind(f)
	return f
}

func (f *fake) Tags() []*mapping.Spec { return []*mapping.Spec{&f.spec} }
func (f *fake) HostConfig() (Config, error) {
	return Config{Name: f.name, Interval: 5 * time.Millisecond, Lane: "bus", Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}}, nil
}
func (f *fake) Connect(context.Context) error { return nil }
func (f *fake) Close() error                  { return nil }
func (f *fake) work() {
	if f.busy.Add(1) > 1 {
		f.overlap.Add(1)
	}
	time.Sleep(200 * time.Microsecond)
	f.busy.Add(-1)
}
func (f *fake) Poll(context.Context, bool) ([]mapping.Sample, error) {
	f.work()
	f.polls.Add(1)
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, errors.New("down")
	}
	return []mapping.Sample{{Tag: &f.spec, Quality: mapping.Good}}, nil
}
func (f *fake) PrepareWrite(int, mapping.Value) (func(context.Context) error, error) {
	return func(context.Context) error { f.work(); return nil }, nil
}

type recorder struct {
	mu      sync.Mutex
	stopped atomic.Bool
	late    atomic.Int32
	states  map[string][]southbound.State
	samples map[string]int
}

func (r *recorder) Samples(dev string, _ []mapping.Sample) {
	if r.stopped.Load() {
		r.late.Add(1)
	}
	r.mu.Lock()
	r.samples[dev]++
	r.mu.Unlock()
}

func (r *recorder) State(dev string, s southbound.State, _ error) {
	if r.stopped.Load() {
		r.late.Add(1)
	}
	r.mu.Lock()
	r.states[dev] = append(r.states[dev], s)
	r.mu.Unlock()
}

// TestLaneSerialisesAndStops: two devices in one lane and writes from
// several goroutines never overlap; a device that fails goes offline and
// comes back; nothing reaches the sink after Stop returns.
func TestLaneSerialisesAndStops(t *testing.T) {
	h := New()
	rec := &recorder{states: map[string][]southbound.State{}, samples: map[string]int{}}
	a, b := newFake("a"), newFake("b")
	for _, f := range []*fake{a, b} {
		f.Provision(Env{Host: h})
		if err := f.Start(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	// Four writers keep the lane's write queue full until b has polled ten
	// more times: writes must not starve the polls.
	p0, start := b.polls.Load(), time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b.polls.Load() < p0+10 && time.Since(start) < 5*time.Second {
				if err := a.Write(context.Background(), "v", mapping.Value{Kind: mapping.KindUint, Uint: 1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := b.polls.Load() - p0; n < 10 {
		t.Errorf("b polled %d times in 5 s of writes to a: writes starve the polls", n)
	}
	b.mu.Lock()
	b.down = true
	b.mu.Unlock()
	testwait.For(t, testwait.Timeout, "b offline", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		s := rec.states["b"]
		return len(s) > 0 && s[len(s)-1] == southbound.StateOffline
	})
	b.mu.Lock()
	b.down = false
	b.mu.Unlock()
	testwait.For(t, testwait.Timeout, "b online again", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		s := rec.states["b"]
		return len(s) == 4
	}, func() string {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return fmt.Sprintf("; states of b %v, polls of b %d, of a %d", rec.states["b"], b.polls.Load(), a.polls.Load())
	})
	if n := a.overlap.Load() + b.overlap.Load(); n != 0 {
		t.Errorf("%d requests overlapped in one lane", n)
	}
	if ls := h.Lanes(); len(ls) != 1 || len(ls[0].Members) != 2 {
		t.Errorf("lanes %+v", ls)
	}
	for _, f := range []*fake{a, b} {
		if err := f.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rec.stopped.Store(true)
	time.Sleep(30 * time.Millisecond) // several poll intervals: a poll after Stop would show
	if n := rec.late.Load(); n != 0 {
		t.Errorf("%d sink calls after Stop", n)
	}
	rec.mu.Lock()
	got := rec.states["b"]
	rec.mu.Unlock()
	want := []southbound.State{southbound.StateConnecting, southbound.StateOnline, southbound.StateOffline, southbound.StateOnline, southbound.StateStopped}
	if len(got) != len(want) {
		t.Fatalf("states of b %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("states of b %v, want %v", got, want)
		}
	}
	if len(h.Lanes()) != 0 {
		t.Error("the lane outlived its last device")
	}
	if err := a.Write(context.Background(), "v", mapping.Value{Kind: mapping.KindUint, Uint: 1}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("write after Stop: %v", err)
	}
}
