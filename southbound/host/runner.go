package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// ErrNotRunning is returned by Write on a device that is not started.
var ErrNotRunning = errors.New("device is not running: writes go through a started device")

// Runner runs one device for the driver that embeds it: it gives the
// driver Start, Stop, Write (southbound.Writer), Stats
// (southbound.StatsReporter) and Provision. The driver's constructor binds
// it with Bind.
type Runner struct {
	drv Driver

	mu  sync.Mutex // guards env, dev, m, sub
	env Env
	dev *device
	m   *member // a Poller's place in its lane, while started
	sub *southbound.Loop

	counter Counter

	wmu       sync.Mutex // guards lastWrite and serialises a Subscriber's writes
	lastWrite map[int]time.Time
}

// Bind names the driver the Runner runs (the driver embedding it).
func (r *Runner) Bind(drv Driver) { r.drv = drv }

// Provision implements Provisioner.
func (r *Runner) Provision(env Env) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if env.Log != nil {
		r.env.Log = env.Log
	}
	if env.DataDir != "" {
		r.env.DataDir = env.DataDir
	}
	if env.Host != nil {
		r.env.Host = env.Host
	}
}

// Env is what the driver was provisioned with.
func (r *Runner) Env() Env {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.env
}

// Counter is where the driver counts its requests.
func (r *Runner) Counter() *Counter { return &r.counter }

// Stats implements southbound.StatsReporter.
func (r *Runner) Stats() southbound.Stats { return r.counter.Stats() }

// Log is the device's logger (with device=name) while started; before
// Start, the provisioned one.
func (r *Runner) Log() *slog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dev != nil {
		return r.dev.log
	}
	if r.env.Log != nil {
		return r.env.Log
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)

// Start runs the device in the background until Stop: a Poller in its
// lane, a Subscriber in a goroutine of its own. Samples and state changes
// go to sink. ctx only carries values.
func (r *Runner) Start(ctx context.Context, sink southbound.Sink) error {
	if r.drv == nil {
		return errors.New("host: Start of a driver whose Runner was not bound (call Bind in its constructor)")
	}
	cfg, err := r.drv.HostConfig()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dev != nil {
		return fmt.Errorf("device %q: already started", cfg.Name)
	}
	log := cfg.Log
	if log == nil {
		log = r.env.Log
	}
	if log == nil {
		log = discard
	}
	cfg.Log = log.With("device", cfg.Name)
	d := &device{name: cfg.Name, log: cfg.Log, attrs: cfg.Attrs, specs: r.drv.Tags(), counter: &r.counter}
	d.guard.Open(cfg.Name, sink)
	work := cfg.Work
	if work == nil {
		work = r.drv
	}
	switch p := work.(type) {
	case Poller:
		h := r.env.Host
		if h == nil {
			h = New() // a lane of its own, on a host of its own
		}
		d.setState(southbound.StateConnecting, nil)
		m, err := h.join(ctx, r, cfg, p, d)
		if err != nil {
			d.guard.Close()
			return fmt.Errorf("device %q: %w", cfg.Name, err)
		}
		r.m = m
	case Subscriber:
		r.sub = &southbound.Loop{}
		if err := r.sub.Go(ctx, cfg.Name, nil, func(ctx context.Context) { d.subscribe(ctx, p, cfg.Backoff) }); err != nil {
			return err
		}
	default:
		d.guard.Close()
		return fmt.Errorf("device %q: the driver is neither a host.Poller nor a host.Subscriber", cfg.Name)
	}
	r.dev = d
	return nil
}

// Stop ends the device's I/O and waits for work in flight for it (or for
// ctx). The sink is never called after Stop returns, even when ctx ran out
// first. Safe without Start and more than once.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	d, m, sub := r.dev, r.m, r.sub
	r.dev, r.m, r.sub = nil, nil, nil
	r.mu.Unlock()
	if d == nil {
		return nil
	}
	var err error
	if m != nil {
		err = m.leave(ctx)
	} else if sub != nil {
		err = sub.Stop(ctx)
	}
	if err != nil {
		d.guard.Close()
		return fmt.Errorf("stop device %q: %w", d.name, err)
	}
	if !d.guard.Final(southbound.StateStopped, nil) {
		d.log.Info("device stopped")
	}
	return nil
}

// Write writes v to the tag: the tag's write policy (writable, min, max,
// write_interval; mapping.Spec.CheckWrite) first — a refusal wraps
// mapping.ErrWriteRefused and sends nothing — then the driver's
// PrepareWrite, then the write runs as a job in the device's lane before
// the next poll of any of its devices. It returns when the device
// answered, or when ctx ends (the write may then still be sent).
func (r *Runner) Write(ctx context.Context, tag string, v mapping.Value) error {
	wp, ok := r.drv.(WritePreparer)
	if !ok {
		return errors.New("the driver cannot write")
	}
	cfg, err := r.drv.HostConfig()
	if err != nil {
		return err
	}
	k := -1
	specs := r.drv.Tags()
	for i, s := range specs {
		if s.Name == tag {
			k = i
			break
		}
	}
	if k < 0 {
		return fmt.Errorf("device %q: write %q: no such tag", cfg.Name, tag)
	}
	now := time.Now()
	r.wmu.Lock()
	if err := specs[k].CheckWrite(v, r.lastWrite[k], now); err != nil {
		r.wmu.Unlock()
		return fmt.Errorf("device %q: %w", cfg.Name, err)
	}
	job, err := wp.PrepareWrite(k, v)
	if err != nil {
		r.wmu.Unlock()
		return err
	}
	if r.lastWrite == nil {
		r.lastWrite = map[int]time.Time{}
	}
	r.lastWrite[k] = now
	r.wmu.Unlock()

	r.mu.Lock()
	m, sub := r.m, r.sub
	r.mu.Unlock()
	switch {
	case m != nil:
		return m.lane.submit(ctx, m, job)
	case sub != nil:
		// A session multiplexes requests: the write needs no slot between
		// polls, only one write at a time.
		r.wmu.Lock()
		defer r.wmu.Unlock()
		return job(ctx)
	}
	return fmt.Errorf("device %q: %w", cfg.Name, ErrNotRunning)
}

// device is one started device: its state, its logger and its sink.
type device struct {
	name    string
	log     *slog.Logger
	attrs   []any
	specs   []*mapping.Spec
	counter *Counter
	guard   southbound.SinkGuard

	// Owned by the goroutine running the device (its lane, or its
	// subscriber goroutine).
	state southbound.State
	bad   []mapping.Sample
	// why is the reason of the last failure with its numbers blanked
	// (errReason): while offline, a failure for another reason is
	// reported again, one for the same reason only at debug.
	why string
}

func (d *device) setState(s southbound.State, err error) {
	d.state = s
	d.guard.State(s, err)
}

func (d *device) deliver(samples []mapping.Sample) { d.guard.Samples(samples) }

// online is the transition to online, once.
func (d *device) online() {
	if d.state == southbound.StateOnline {
		return
	}
	d.log.Info("device online", d.attrs...)
	d.setState(southbound.StateOnline, nil)
}

// failed is a failed poll or session: the transition to offline (every
// tag bad) the first time, a debug line after while the reason stays the
// same. A new reason while offline (the operator trusted the server's
// certificate and now the server refuses edged's) is shown like the
// first: a warn line, the tags and the status with the new error, so no
// one is left reading advice that no longer applies.
func (d *device) failed(err error) {
	why := errReason(err)
	if d.state == southbound.StateOffline && why == d.why {
		d.log.Debug("reconnect failed", "err", err)
		return
	}
	msg := "device offline"
	if d.state == southbound.StateOffline {
		msg = "device still offline, for another reason"
	}
	d.why = why
	d.log.Warn(msg, append(d.attrs[:len(d.attrs):len(d.attrs)], "err", err)...)
	now := time.Now().UnixMilli()
	if len(d.bad) != len(d.specs) {
		d.bad = make([]mapping.Sample, len(d.specs))
	}
	for i, s := range d.specs {
		d.bad[i] = mapping.Sample{Tag: s, Quality: mapping.Bad, TimeMs: now, Err: err}
	}
	d.deliver(d.bad)
	d.setState(southbound.StateOffline, err)
}

// subscribe runs a Subscriber's sessions until ctx ends, with backoff.
func (d *device) subscribe(ctx context.Context, s Subscriber, b Backoff) {
	d.setState(southbound.StateConnecting, nil)
	attempt := 0
	for ctx.Err() == nil {
		sess := &Session{d: d}
		err := s.Run(ctx, sess)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("session ended")
		}
		if sess.wasOnline {
			attempt = 0
		}
		d.failed(err)
		timer := time.NewTimer(b.waitAfter(err, attempt))
		attempt++
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
	}
}

// Session is what a Subscriber's Run reports to: values, the moment it is
// online, and its requests. Its methods are called from Run's goroutine.
type Session struct {
	d         *device
	wasOnline bool
}

// Online marks the device online (values flow); the backoff starts over
// when this session ends.
func (s *Session) Online() {
	s.wasOnline = true
	s.d.online()
}

// Samples delivers values (valid during the call only).
func (s *Session) Samples(samples []mapping.Sample) { s.d.deliver(samples) }

// Counter is where the session counts its requests.
func (s *Session) Counter() *Counter { return s.d.counter }

// Log is the device's logger.
func (s *Session) Log() *slog.Logger { return s.d.log }

// errReason is err's text with every run of digits blanked, so that the
// same failure with another local port, address or count compares equal.
func errReason(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	b := make([]byte, 0, len(msg))
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c >= '0' && c <= '9' {
			if len(b) == 0 || b[len(b)-1] != '#' {
				b = append(b, '#')
			}
			continue
		}
		b = append(b, msg[i])
	}
	return string(b)
}
