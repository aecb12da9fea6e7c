package southbound

import (
	"context"
	"fmt"
	"sync"
)

// Loop is the life cycle of a device's own goroutine: started once, ended
// by Stop, which waits for it. The host (southbound/host) runs a subscribing
// driver's sessions in one; anything else with a goroutine of its own may
// embed one instead of keeping its own cancel function and done channel.
type Loop struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Go starts run in its own goroutine, once. Its context carries ctx's
// values but ends only at Stop (the Driver contract: a device runs until
// Stop). setup, if not nil, runs first with that context, before Go
// returns.
func (l *Loop) Go(ctx context.Context, name string, setup, run func(context.Context)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return fmt.Errorf("device %q: already started", name)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	if setup != nil {
		setup(ctx)
	}
	go func() {
		defer close(done)
		run(ctx)
	}()
	return nil
}

// Done is closed when the goroutine has ended; nil before Go.
func (l *Loop) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// Stop ends the goroutine's context and waits for it, or for ctx. Safe
// before Go and more than once.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
