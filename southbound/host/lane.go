package host

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// Host holds the lanes of one running gateway. The zero value is not
// ready; use New.
type Host struct {
	mu    sync.Mutex
	lanes map[string]*lane // by Config.Lane; lanes of one by a key of their own
	seq   uint64
}

// New returns a host with no lanes.
func New() *Host { return &Host{lanes: map[string]*lane{}} }

// lane is one goroutine that runs every poll and write of its members,
// strictly one at a time: a queued write before the next poll, but never
// two writes in a row while a poll is due; then the member whose poll is
// due earliest.
type lane struct {
	h      *Host
	id     string // key in h.lanes
	key    string // Config.Lane
	medium any

	mu      sync.Mutex // guards members and jobs
	members []*member
	jobs    []job
	wake    chan struct{} // buffered(1): members or jobs changed

	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time

	overruns atomic.Uint64
}

// job is a write waiting for its slot in the lane.
type job struct {
	m   *member
	ctx context.Context
	fn  func(context.Context) error
	res chan error // buffered: the lane never blocks on it
}

// member is one device in a lane and its schedule.
type member struct {
	r    *Runner
	cfg  Config
	p    Poller
	d    *device
	lane *lane

	ctx    context.Context // cancelled when the device leaves
	cancel context.CancelFunc
	runMu  sync.Mutex // held by the lane while it works for this device

	// Owned by the lane goroutine (under runMu).
	next      time.Time // when the next poll is due
	failures  int       // failed polls in a row, for the backoff
	connected bool

	offline atomic.Bool
}

// join adds a Poller to its lane, starting the lane if it is the first.
func (h *Host) join(ctx context.Context, r *Runner, cfg Config, p Poller, d *device) (*member, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := "lane:" + cfg.Lane
	if cfg.Lane == "" {
		h.seq++
		id = fmt.Sprintf("own:%d", h.seq)
	}
	l := h.lanes[id]
	if l != nil && cfg.Share != nil {
		l.mu.Lock()
		names := make([]string, 0, len(l.members))
		for _, m := range l.members {
			names = append(names, m.cfg.Name)
		}
		l.mu.Unlock()
		if _, err := cfg.Share(l.medium, names); err != nil {
			return nil, err
		}
	}
	if l == nil {
		var medium any
		if cfg.Share != nil {
			var err error
			if medium, err = cfg.Share(nil, nil); err != nil {
				return nil, err
			}
		}
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		l = &lane{h: h, id: id, key: cfg.Lane, medium: medium, wake: make(chan struct{}, 1),
			cancel: cancel, done: make(chan struct{}), started: time.Now()}
		h.lanes[id] = l
		go l.run(lctx)
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := &member{r: r, cfg: cfg, p: p, d: d, lane: l, ctx: mctx, cancel: cancel, next: time.Now()}
	l.mu.Lock()
	l.members = append(l.members, m)
	l.mu.Unlock()
	l.poke()
	return m, nil
}

// leave removes the member from its lane and closes its connection,
// waiting for work in flight for it (or ctx); the last member ends the
// lane and closes the medium.
func (m *member) leave(ctx context.Context) error {
	m.cancel()
	l := m.lane
	l.h.mu.Lock()
	l.mu.Lock()
	l.members = slices.DeleteFunc(l.members, func(x *member) bool { return x == m })
	last := len(l.members) == 0
	l.mu.Unlock()
	if last {
		delete(l.h.lanes, l.id)
		l.cancel()
		if c, ok := l.medium.(io.Closer); ok {
			c.Close() // fails a transaction in flight at once
		}
	}
	l.h.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		m.runMu.Lock()
		m.p.Close()
		m.connected = false
		m.runMu.Unlock()
		if last {
			<-l.done
		}
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// submit queues fn to run in the lane for m and waits for its result.
func (l *lane) submit(ctx context.Context, m *member, fn func(context.Context) error) error {
	j := job{m: m, ctx: ctx, fn: fn, res: make(chan error, 1)}
	l.mu.Lock()
	l.jobs = append(l.jobs, j)
	l.mu.Unlock()
	l.poke()
	select {
	case err := <-j.res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("device %q: write queued, no answer yet: %w", m.cfg.Name, ctx.Err())
	}
}

// run is the lane goroutine.
func (l *lane) run(ctx context.Context) {
	defer close(l.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wrote := false // the last slot was a write
	for ctx.Err() == nil {
		l.mu.Lock()
		var due *member
		for _, m := range l.members {
			if due == nil || m.next.Before(due.next) {
				due = m
			}
		}
		// A write waits for at most one poll, and a poll that is due for at
		// most one write: a stream of writes cannot starve the polls.
		if len(l.jobs) > 0 && !(wrote && due != nil && !time.Now().Before(due.next)) {
			j := l.jobs[0]
			l.jobs = slices.Delete(l.jobs, 0, 1)
			l.mu.Unlock()
			j.res <- l.runJob(j)
			wrote = true
			continue
		}
		l.mu.Unlock()
		wrote = false
		wait := time.Hour
		if due != nil {
			wait = time.Until(due.next)
			if wait <= 0 {
				l.poll(due)
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-l.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-ctx.Done():
		}
	}
	l.mu.Lock()
	jobs := l.jobs
	l.jobs = nil
	l.mu.Unlock()
	for _, j := range jobs {
		j.res <- fmt.Errorf("device %q: %w", j.m.cfg.Name, ErrNotRunning)
	}
}

func (l *lane) runJob(j job) error {
	m := j.m
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.ctx.Err() != nil {
		return fmt.Errorf("device %q: %w", m.cfg.Name, ErrNotRunning)
	}
	if err := j.ctx.Err(); err != nil {
		return fmt.Errorf("device %q: write not sent: %w", m.cfg.Name, err)
	}
	if !m.connected {
		if err := m.p.Connect(m.ctx); err != nil {
			return fmt.Errorf("device %q: write not sent: %w", m.cfg.Name, err)
		}
		m.connected = true
	}
	ctx, stop := context.WithCancel(j.ctx)
	defer stop()
	defer context.AfterFunc(m.ctx, stop)()
	return j.fn(ctx)
}

// poll runs one poll of m and schedules its next one: at its interval when
// it answered (an overrun is counted when a whole interval was missed),
// after the backoff when it did not, so that a silent device costs the
// lane one timeout per probe instead of one per interval.
func (l *lane) poll(m *member) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.ctx.Err() != nil {
		return
	}
	d := m.d
	start := time.Now()
	var err error
	if !m.connected {
		if err = m.p.Connect(m.ctx); err == nil {
			m.connected = true
		}
	}
	if err == nil {
		var samples []mapping.Sample
		samples, err = m.p.Poll(m.ctx, d.state == southbound.StateOffline)
		now := time.Now()
		d.counter.Polled(now.Sub(start))
		if m.ctx.Err() != nil {
			return // an error now is Stop closing the connection
		}
		if err == nil {
			m.failures = 0
			d.counter.polls.Add(1)
			d.online()
			d.deliver(samples)
			m.offline.Store(false)
			// Fixed rate: the next poll is due one interval after this one
			// was. One missed slot is caught up at once; more are dropped,
			// as an overrun: the lane cannot carry the configured intervals.
			interval := m.cfg.Interval
			next := m.next.Add(interval)
			if now.Sub(next) >= interval {
				d.counter.overruns.Add(1)
				l.overruns.Add(1)
				next = now
			}
			m.next = next
			return
		}
	}
	if m.ctx.Err() != nil {
		return
	}
	d.failed(err)
	m.offline.Store(true)
	m.p.Close()
	m.connected = false
	m.next = time.Now().Add(m.cfg.Backoff.waitAfter(err, m.failures))
	m.failures++
}
