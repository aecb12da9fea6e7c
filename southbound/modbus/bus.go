package modbus

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/serial"
)

// The serial buses in use, by cleaned port path. A bus lives while at
// least one started RTU device uses it.
var (
	busesMu sync.Mutex
	buses   = map[string]*bus{}
)

// portBackoffMax caps the pause between attempts to reopen a port that
// disappeared (a USB adapter unplugged).
const portBackoffMax = 5 * time.Second

// bus owns one serial port: one goroutine runs every transaction on it,
// polls of its devices and writes, strictly one at a time.
type bus struct {
	path string
	mode serial.Mode
	line *serial.Line

	mu      sync.Mutex // guards members and jobs
	members []*member
	jobs    []busJob
	wake    chan struct{} // buffered(1): members or jobs changed

	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time

	overruns atomic.Uint64
}

// member is one device on a bus and its schedule.
type member struct {
	r   *RTU
	bus *bus

	ctx    context.Context // cancelled when the device leaves
	cancel context.CancelFunc
	runMu  sync.Mutex // held by the bus while it works for this device

	// Owned by the bus goroutine (under runMu).
	next     time.Time // when the next poll is due
	failures int       // failed polls in a row, for the backoff

	overruns  atomic.Uint64
	lastCycle atomic.Int64 // duration of the last poll
	polls     atomic.Uint64
	offline   atomic.Bool
}

type busJob struct {
	m *member
	j job
}

// join adds r to the bus of its port, starting the bus if r is its first
// device.
func join(r *RTU) (*member, error) {
	key := filepath.Clean(r.Port)
	busesMu.Lock()
	defer busesMu.Unlock()
	b := buses[key]
	if b != nil && b.mode != r.mode {
		var names []string
		b.mu.Lock()
		for _, m := range b.members {
			names = append(names, m.r.Name)
		}
		b.mu.Unlock()
		return nil, fmt.Errorf("port %s is in use at %s by device(s) %s, this device says %s: "+
			"all devices on one port must have the same baud, data_bits, parity and stop_bits", key, b.mode, strings.Join(names, ", "), r.mode)
	}
	if b == nil {
		ctx, cancel := context.WithCancel(context.Background())
		b = &bus{path: key, mode: r.mode, line: serial.NewLine(r.Port, r.mode), wake: make(chan struct{}, 1),
			cancel: cancel, done: make(chan struct{}), started: time.Now()}
		buses[key] = b
		go b.run(ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{r: r, bus: b, ctx: ctx, cancel: cancel, next: time.Now()}
	m.r.dev.start(r.log, newRTUClient(b.line, byte(r.UnitID), r.Timeout.D(), r.Turnaround.D()))
	m.r.setState(southbound.StateConnecting, nil)
	b.mu.Lock()
	b.members = append(b.members, m)
	b.mu.Unlock()
	b.poke()
	return m, nil
}

// leave removes the member from its bus, waiting for work in flight for it
// (or ctx); the last member closes the bus and its port.
func (m *member) leave(ctx context.Context) error {
	m.cancel()
	b := m.bus
	busesMu.Lock()
	b.mu.Lock()
	b.members = slices.DeleteFunc(b.members, func(x *member) bool { return x == m })
	last := len(b.members) == 0
	b.mu.Unlock()
	if last {
		delete(buses, b.path)
		b.cancel()
		b.line.Close() // fails a transaction in flight at once
	}
	busesMu.Unlock()
	idle := make(chan struct{})
	go func() {
		m.runMu.Lock()
		//lint:ignore SA2001 the lock is taken only to wait for the member's transaction in progress
		m.runMu.Unlock()
		if last {
			<-b.done
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

func (b *bus) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// submit queues fn to run on the bus for m and waits for its result.
func (b *bus) submit(ctx context.Context, m *member, fn func() error) error {
	j := busJob{m: m, j: job{fn: fn, res: make(chan error, 1)}}
	b.mu.Lock()
	b.jobs = append(b.jobs, j)
	b.mu.Unlock()
	b.poke()
	select {
	case err := <-j.j.res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("device %q: write queued on %s, no answer yet: %w", m.r.Name, b.path, ctx.Err())
	}
}

// run is the bus goroutine: writes first, then the device whose poll is
// due earliest.
func (b *bus) run(ctx context.Context) {
	defer close(b.done)
	defer b.line.Close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		b.mu.Lock()
		if len(b.jobs) > 0 {
			j := b.jobs[0]
			b.jobs = slices.Delete(b.jobs, 0, 1)
			b.mu.Unlock()
			j.m.runMu.Lock()
			if j.m.ctx.Err() != nil {
				j.j.res <- fmt.Errorf("device %q: %w", j.m.r.Name, errNotRunning)
			} else {
				j.j.res <- j.j.fn()
			}
			j.m.runMu.Unlock()
			continue
		}
		var due *member
		for _, m := range b.members {
			if due == nil || m.next.Before(due.next) {
				due = m
			}
		}
		b.mu.Unlock()
		var wait time.Duration = time.Hour
		if due != nil {
			wait = time.Until(due.next)
			if wait <= 0 {
				b.poll(due)
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-b.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-ctx.Done():
		}
	}
	for _, j := range b.jobs {
		j.j.res <- fmt.Errorf("device %q: %w", j.m.r.Name, errNotRunning)
	}
}

// poll runs one poll of m and schedules its next one: at its interval when
// it answered (an overrun is counted when a whole interval was missed),
// after an exponential backoff when it did not, so that a silent slave
// costs the bus one timeout per probe instead of one per interval.
func (b *bus) poll(m *member) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.ctx.Err() != nil {
		return
	}
	r := m.r
	retries := r.Retries
	if r.state == southbound.StateOffline {
		retries = 0 // a probe
	}
	start := time.Now()
	err := r.dev.cycle(m.ctx, retries)
	now := time.Now()
	m.lastCycle.Store(int64(now.Sub(start)))
	if m.ctx.Err() != nil {
		return
	}
	interval := r.PollInterval.D()
	if err == nil {
		m.failures = 0
		m.polls.Add(1)
		if r.state != southbound.StateOnline {
			r.log.Info("device online", "port", b.path, "unit_id", r.UnitID)
			r.setState(southbound.StateOnline, nil)
		}
		r.deliver()
		m.offline.Store(false)
		// Fixed rate: the next poll is due one interval after this one was.
		// One missed slot is caught up at once; more are dropped, as an
		// overrun: the bus cannot carry the configured intervals.
		next := m.next.Add(interval)
		if now.Sub(next) >= interval {
			m.overruns.Add(1)
			b.overruns.Add(1)
			next = now
		}
		m.next = next
		return
	}
	if r.state != southbound.StateOffline {
		r.log.Warn("device offline", "port", b.path, "unit_id", r.UnitID, "err", err)
		r.dev.allBad(err)
		r.deliver()
		r.setState(southbound.StateOffline, err)
	} else {
		r.log.Debug("probe failed", "err", err)
	}
	m.offline.Store(true)
	hi := r.maxBackoff
	if errors.Is(err, serial.ErrPort) {
		hi = min(hi, portBackoffMax)
	}
	m.next = now.Add(backoff(r.minBackoff, hi, m.failures))
	m.failures++
}

// BusStat is the state of one serial bus, for the host's metrics.
type BusStat struct {
	Port string
	Mode string // e.g. "9600 8E1"
	serial.Stats
	// Uptime is how long the bus has run; Utilisation is Busy/Uptime, the
	// share of wall time the line carried frames.
	Uptime      time.Duration
	Utilisation float64
	// Overruns counts polls that started a whole interval late because the
	// bus was busy: the configured intervals do not fit the line.
	Overruns uint64
	Devices  []BusDevice
}

// BusDevice is one device's schedule on a bus.
type BusDevice struct {
	Name      string
	UnitID    int
	Interval  time.Duration
	LastCycle time.Duration // wall time of the last poll
	Polls     uint64        // successful polls
	Overruns  uint64
	Offline   bool
}

// BusStats returns the state of every serial bus in use, by port.
func BusStats() []BusStat {
	busesMu.Lock()
	all := make([]*bus, 0, len(buses))
	for _, b := range buses {
		all = append(all, b)
	}
	busesMu.Unlock()
	out := make([]BusStat, 0, len(all))
	for _, b := range all {
		st := BusStat{Port: b.path, Mode: b.mode.String(), Stats: b.line.Stats(), Uptime: time.Since(b.started), Overruns: b.overruns.Load()}
		if st.Uptime > 0 {
			st.Utilisation = float64(st.Busy) / float64(st.Uptime)
		}
		b.mu.Lock()
		for _, m := range b.members {
			st.Devices = append(st.Devices, BusDevice{Name: m.r.Name, UnitID: m.r.UnitID, Interval: m.r.PollInterval.D(),
				LastCycle: time.Duration(m.lastCycle.Load()), Polls: m.polls.Load(), Overruns: m.overruns.Load(),
				Offline: m.offline.Load()})
		}
		b.mu.Unlock()
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// CheckBuses checks that the RTU devices among drivers that share a port
// agree on its line settings, and that no two of them share a unit ID on
// one port. Call it after loading a config (edged validate, plan); Start
// refuses a mismatch too.
func CheckBuses(drivers []southbound.Driver) error {
	type seen struct {
		mode  serial.Mode
		first string
		units map[int]string
	}
	ports := map[string]*seen{}
	var errs []error
	for _, d := range drivers {
		r, ok := d.(*RTU)
		if !ok || !r.inited {
			continue
		}
		key := filepath.Clean(r.Port)
		s := ports[key]
		if s == nil {
			ports[key] = &seen{mode: r.mode, first: r.Name, units: map[int]string{r.UnitID: r.Name}}
			continue
		}
		if s.mode != r.mode {
			errs = append(errs, fmt.Errorf("device %q: port %s is %s for device %q but %s here: "+
				"all devices on one port must have the same baud, data_bits, parity and stop_bits", r.Name, key, s.mode, s.first, r.mode))
		}
		if other, dup := s.units[r.UnitID]; dup {
			errs = append(errs, fmt.Errorf("device %q: unit_id %d on port %s is already device %q: "+
				"each slave on a bus needs its own unit_id", r.Name, r.UnitID, key, other))
		} else {
			s.units[r.UnitID] = r.Name
		}
	}
	return errors.Join(errs...)
}
