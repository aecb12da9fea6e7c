package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// job is work for the goroutine that owns a device's connection: a write.
type job struct {
	fn  func() error
	res chan error // buffered: the runner never blocks on it
}

// errNotRunning is returned by Write on a device that is not started.
var errNotRunning = errors.New("device is not running: writes go through a started device")

// Start validates that Init ran and begins polling in the background. ctx
// only carries values: polling runs until Stop, as the Driver contract
// says.
func (t *TCP) Start(ctx context.Context, sink southbound.Sink) error {
	if !t.inited {
		return fmt.Errorf("modbus device %q: Start before a successful Init", t.Name)
	}
	return t.loop.Go(ctx, t.Name, func(ctx context.Context) { t.prepare(ctx, sink) }, t.run)
}

// prepare sets up what the poll goroutine owns.
func (t *TCP) prepare(ctx context.Context, sink southbound.Sink) {
	t.guard.Open(t.Name, sink)
	t.log = t.Logger
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("device", t.Name)
	t.cli = newTCPClient(ctx, t.Address, byte(t.UnitID), t.Timeout.D())
	t.dev.start(t.log, t.cli)
}

// Write writes v to the tag: the tag's write policy is applied first (a
// refusal wraps mapping.ErrWriteRefused and sends nothing), then the write
// is sent by the poll goroutine between two polls, so it never interleaves
// with a read. It returns when the device answered, or when ctx ends (the
// write may then still be sent).
func (t *TCP) Write(ctx context.Context, tag string, v mapping.Value) error {
	op, err := t.dev.prepareWrite(tag, v, time.Now())
	if err != nil {
		return err
	}
	return submit(ctx, t.jobs, t.loop.Done(), func() error { return t.dev.write(op) }, t.Name)
}

// submit hands fn to the goroutine reading jobs and waits for its result;
// done is the goroutine's (nil: never started).
func submit(ctx context.Context, jobs chan<- job, done <-chan struct{}, fn func() error, name string) error {
	if done == nil {
		return fmt.Errorf("device %q: %w", name, errNotRunning)
	}
	j := job{fn: fn, res: make(chan error, 1)}
	select {
	case jobs <- j:
	case <-done:
		return fmt.Errorf("device %q: %w", name, errNotRunning)
	case <-ctx.Done():
		return fmt.Errorf("device %q: write not sent: %w", name, ctx.Err())
	}
	select {
	case err := <-j.res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("device %q: write sent, no answer yet: %w", name, ctx.Err())
	}
}

// Stop ends polling, closes the connection (failing a request in flight)
// and waits for the poll goroutine, or for ctx. The sink is never called
// after Stop returns, even when ctx ran out first. Safe without Start and
// more than once.
func (t *TCP) Stop(ctx context.Context) error {
	err := t.loop.Stop(ctx)
	t.guard.Close()
	if err != nil {
		return fmt.Errorf("stop modbus device %q: %w", t.Name, err)
	}
	return nil
}

// run is the device's poll goroutine.
func (t *TCP) run(ctx context.Context) {
	defer t.cli.Close()
	t.setState(southbound.StateConnecting, nil)
	interval := t.PollInterval.D()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	attempt := 0 // failed cycles in a row, for the backoff
	for {
		retries := t.Retries
		if t.state == southbound.StateOffline {
			retries = 0 // a reconnect probe; the backoff paces them
		}
		err := t.dev.cycle(ctx, retries)
		if ctx.Err() != nil {
			break // an error now is Stop closing the connection
		}
		var wait <-chan time.Time
		if err == nil {
			attempt = 0
			if t.state != southbound.StateOnline {
				t.log.Info("device online", "address", t.Address)
				t.setState(southbound.StateOnline, nil)
			}
			t.deliver()
			select { // skip a tick missed while the cycle ran
			case <-tick.C:
			default:
			}
			wait = tick.C
		} else {
			if t.state != southbound.StateOffline {
				t.log.Warn("device offline", "address", t.Address, "err", err)
				t.dev.allBad(err)
				t.deliver()
				t.setState(southbound.StateOffline, err)
			} else {
				t.log.Debug("reconnect failed", "err", err)
			}
			t.cli.Close()
			timer := time.NewTimer(t.backoff(attempt))
			attempt++
			wait = timer.C
		}
		for waiting := true; waiting; {
			select {
			case <-wait:
				waiting = false
			case j := <-t.jobs:
				j.res <- j.fn()
			case <-ctx.Done():
				waiting = false
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	t.log.Info("device stopped")
	t.setState(southbound.StateStopped, nil)
}

// backoff is the wait before reconnect attempt n (0-based): the nth
// doubling of minBackoff, capped at maxBackoff, of which the second half is
// random.
func (t *TCP) backoff(n int) time.Duration { return backoff(t.minBackoff, t.maxBackoff, n) }

func backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 30 {
		d = min(hi, lo<<n)
	}
	return d/2 + rand.N(d/2+1)
}

func (t *TCP) deliver() { t.guard.Samples(t.dev.samples) }

func (t *TCP) setState(s southbound.State, err error) {
	t.state = s
	t.guard.State(s, err)
}

// cycle polls once and delivers the samples (the benchmark's entry).
func (t *TCP) cycle(ctx context.Context) error {
	if err := t.dev.cycle(ctx, t.Retries); err != nil {
		return err
	}
	t.deliver()
	return nil
}
