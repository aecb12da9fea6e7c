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

// reqFailure remembers the last exception of one request, so that a
// request refused every poll does not allocate a new error every poll.
type reqFailure struct {
	code byte
	err  error
}

// Start validates that Init ran and begins polling in the background. ctx
// only carries values: polling runs until Stop, as the Driver contract
// says.
func (t *TCP) Start(ctx context.Context, sink southbound.Sink) error {
	if !t.inited {
		return fmt.Errorf("modbus device %q: Start before a successful Init", t.Name)
	}
	t.runMu.Lock()
	defer t.runMu.Unlock()
	if t.done != nil {
		return fmt.Errorf("modbus device %q: already started", t.Name)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel, t.done = cancel, make(chan struct{})
	t.prepare(ctx, sink)
	go t.run(ctx)
	return nil
}

// prepare sets up what the poll goroutine owns.
func (t *TCP) prepare(ctx context.Context, sink southbound.Sink) {
	t.sink = sink
	t.log = t.Logger
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("device", t.Name)
	t.cli = newTCPClient(ctx, t.Address, byte(t.UnitID), t.Timeout.D())
	t.samples = make([]mapping.Sample, len(t.tags))
	for i := range t.samples {
		t.samples[i].Tag = t.specs[i]
	}
	t.failed = make([]reqFailure, len(t.plan))
}

// Stop ends polling, closes the connection (failing a request in flight)
// and waits for the poll goroutine, or for ctx. The sink is never called
// after Stop returns, even when ctx ran out first. Safe without Start and
// more than once.
func (t *TCP) Stop(ctx context.Context) error {
	t.runMu.Lock()
	cancel, done := t.cancel, t.done
	t.runMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("stop modbus device %q: %w", t.Name, ctx.Err())
	}
	t.sinkMu.Lock()
	t.stopped = true
	t.sinkMu.Unlock()
	return err
}

// run is the device's poll goroutine.
func (t *TCP) run(ctx context.Context) {
	defer close(t.done)
	defer t.cli.Close()
	t.setState(southbound.StateConnecting, nil)
	interval := t.PollInterval.D()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	attempt := 0 // failed cycles in a row, for the backoff
	for {
		err := t.cycle(ctx)
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
			select { // skip a tick missed while the cycle ran
			case <-tick.C:
			default:
			}
			wait = tick.C
		} else {
			if t.state != southbound.StateOffline {
				t.log.Warn("device offline", "address", t.Address, "err", err)
				t.allBad(err)
				t.setState(southbound.StateOffline, err)
			} else {
				t.log.Debug("reconnect failed", "err", err)
			}
			t.cli.Close()
			timer := time.NewTimer(t.backoff(attempt))
			attempt++
			wait = timer.C
		}
		select {
		case <-wait:
		case <-ctx.Done():
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
func (t *TCP) backoff(n int) time.Duration {
	d := t.maxBackoff
	if n < 30 {
		d = min(t.maxBackoff, t.minBackoff<<n)
	}
	return d/2 + rand.N(d/2+1)
}

// cycle reads every request of the plan and hands the samples to the sink.
// An exception marks the request's tags bad; any other failure (after the
// retries) ends the cycle with an error and no samples delivered.
func (t *TCP) cycle(ctx context.Context) error {
	start := time.Now()
	for i := range t.plan {
		r := &t.plan[i]
		raw, err := t.read(ctx, r)
		now := time.Now().UnixMilli()
		if err != nil {
			var ex *Exception
			if !refused(err) || !errors.As(err, &ex) {
				return fmt.Errorf("read %s %d+%d: %w", r.Area.short(), r.Start, r.Count, err)
			}
			f := &t.failed[i]
			if f.err == nil || f.code != ex.Code {
				f.code = ex.Code
				f.err = fmt.Errorf("read %s %d+%d: %w", r.Area.short(), r.Start, r.Count, err)
			}
			for _, k := range r.Tags {
				t.samples[k] = mapping.Sample{Tag: t.specs[k], Quality: mapping.Bad, TimeMs: now, Err: f.err}
			}
			continue
		}
		t.decode(r, raw, now)
	}
	if t.log.Enabled(ctx, slog.LevelDebug) {
		t.log.Debug("poll done", "requests", len(t.plan), "tags", len(t.samples), "took", time.Since(start))
	}
	t.deliver()
	return nil
}

// read sends one request, trying again up to Retries times after a
// failure that is not an answer from the device.
func (t *TCP) read(ctx context.Context, r *Request) ([]byte, error) {
	var err error
	for range t.Retries + 1 {
		var raw []byte
		start, count := uint16(r.Start), uint16(r.Count)
		switch r.Area {
		case Coil:
			raw, err = t.cli.ReadCoils(start, count)
		case DiscreteInput:
			raw, err = t.cli.ReadDiscreteInputs(start, count)
		case InputRegister:
			raw, err = t.cli.ReadInputRegisters(start, count)
		default:
			raw, err = t.cli.ReadHoldingRegisters(start, count)
		}
		if err == nil || ctx.Err() != nil || refused(err) {
			return raw, err
		}
	}
	return nil, err
}

// refused reports whether err is the device refusing one request, as
// opposed to the device (or the gateway's path to it) not answering.
func refused(err error) bool {
	var ex *Exception
	return errors.As(err, &ex) && !ex.unreachable()
}

// decode fills the samples of r's tags from its response.
func (t *TCP) decode(r *Request, raw []byte, now int64) {
	bits := r.Area.Bits()
	for _, k := range r.Tags {
		tag := &t.tags[k]
		s := &t.samples[k]
		off := tag.Address - r.Start
		s.TimeMs = now
		if bits {
			s.Value, s.Quality, s.Err = tag.DecodeBit(raw[off/8]>>(off%8)&1 == 1), mapping.Good, nil
			continue
		}
		v, err := tag.Decode(raw[2*off:])
		if err != nil {
			s.Value, s.Quality, s.Err = mapping.Value{}, mapping.Bad, fmt.Errorf("decode %s: %w", tag.Name, err)
			continue
		}
		s.Value, s.Quality, s.Err = v, mapping.Good, nil
	}
}

// allBad marks every tag bad because of err and delivers that.
func (t *TCP) allBad(err error) {
	now := time.Now().UnixMilli()
	for i := range t.samples {
		t.samples[i] = mapping.Sample{Tag: t.specs[i], Quality: mapping.Bad, TimeMs: now, Err: err}
	}
	t.deliver()
}

func (t *TCP) deliver() {
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	if !t.stopped {
		t.sink.Samples(t.Name, t.samples)
	}
}

func (t *TCP) setState(s southbound.State, err error) {
	t.state = s
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	if !t.stopped {
		t.sink.State(t.Name, s, err)
	}
}
