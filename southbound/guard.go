package southbound

import (
	"sync"

	"github.com/edged-gw/edged/mapping"
)

// SinkGuard forwards a device's samples and state to its Sink until Close,
// and never after: it is how a driver keeps the Driver contract "the sink
// is never called after Stop returns" even while its goroutine is still
// finishing a read. A call in progress completes before Close returns.
type SinkGuard struct {
	mu     sync.Mutex
	name   string
	sink   Sink
	closed bool
}

// Open sets the device name and sink (at Start) and reopens the guard.
func (g *SinkGuard) Open(name string, sink Sink) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.name, g.sink, g.closed = name, sink, false
}

// Samples forwards to the sink unless the guard is closed.
func (g *SinkGuard) Samples(samples []mapping.Sample) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed && g.sink != nil {
		g.sink.Samples(g.name, samples)
	}
}

// State forwards to the sink unless the guard is closed.
func (g *SinkGuard) State(s State, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed && g.sink != nil {
		g.sink.State(g.name, s, err)
	}
}

// Close stops forwarding, waiting for a call in progress; it reports
// whether the guard was already closed.
func (g *SinkGuard) Close() (wasClosed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	wasClosed = g.closed
	g.closed = true
	return wasClosed
}

// Final forwards a last state and closes the guard in one step; it
// reports whether the guard was already closed (nothing was forwarded).
func (g *SinkGuard) Final(s State, err error) (wasClosed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return true
	}
	if g.sink != nil {
		g.sink.State(g.name, s, err)
	}
	g.closed = true
	return false
}
