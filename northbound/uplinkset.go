package northbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/buffer"
)

// UplinkSubscriptionBase numbers the uplinks' in-process subscriptions on
// the local broker.
const UplinkSubscriptionBase = 1000

// UplinkSpec is what an UplinkSet knows of one configured upstream: enough
// to start it, to tell whether a reload changed it, and to make its uplink.
// What the uplink is made of (URL, TLS, protocol, commands) is the
// caller's: the set knows no config file.
type UplinkSpec struct {
	// Name identifies the upstream; unique within a set.
	Name string
	// Fingerprint changes whenever anything the uplink is made from
	// changes; on a reload an uplink with the same fingerprint keeps
	// running untouched.
	Fingerprint string
	// Buffer identifies how the upstream keeps its messages (folder, caps,
	// sync): a changed uplink with the same Buffer hands its open buffer
	// to its successor; otherwise the buffer is closed and reopened.
	Buffer string
	// Open opens the upstream's buffer.
	Open func() (*buffer.Queue, error)
	// New makes the uplink on the buffer that open returns; it calls open
	// last, once everything else is made, and returns open's error.
	New func(open func() (*buffer.Queue, error)) (*Uplink, error)
}

// uplinkSlot is one configured upstream and the uplink running it.
type uplinkSlot struct {
	spec  UplinkSpec
	subID int // the id of u's subscriptions on the local broker
	u     *Uplink
	err   error // why u is nil: it failed to start
}

// UplinkSet runs the uplinks of the configured upstreams on one local
// broker, and applies a new list of upstreams to them without losing what
// they buffered (Reload). Start, Reload and Stop must not run
// concurrently (the caller serialises them); Uplinks and NotRunning may be
// called at any time.
type UplinkSet struct {
	broker *Broker
	log    *slog.Logger
	// slots is replaced as a whole, so that Uplinks (the metrics
	// collector) reads it without locking.
	slots     atomic.Pointer[[]uplinkSlot]
	nextSubID int
}

// failedStartStop bounds stopping what StartUplinks had started when a
// later upstream fails.
const failedStartStop = 5 * time.Second

// StartUplinks opens each upstream's buffer, attaches it to the broker and
// starts connecting. Call it after the broker started and before anything
// publishes, so nothing published is missed. An upstream whose buffer
// cannot be opened (buffer.ErrCannotOpen: a read-only SD card) is logged,
// listed by NotRunning and retried on the next Reload; any other error
// stops the uplinks already started and is returned.
func StartUplinks(specs []UplinkSpec, broker *Broker, log *slog.Logger) (*UplinkSet, error) {
	s := &UplinkSet{broker: broker, log: log, nextSubID: UplinkSubscriptionBase + len(specs)}
	var slots []uplinkSlot
	fail := func(err error) (*UplinkSet, error) {
		ctx, cancel := context.WithTimeout(context.Background(), failedStartStop)
		defer cancel()
		_ = stopSlots(ctx, slots)
		return nil, err
	}
	for i, spec := range specs {
		u, err := spec.New(spec.Open)
		if errors.Is(err, buffer.ErrCannotOpen) {
			log.Error("upstream not started: its buffer cannot be opened", "upstream", spec.Name, "err", err)
			slots = append(slots, uplinkSlot{spec: spec, subID: UplinkSubscriptionBase + i, err: err})
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("upstream %q: %w", spec.Name, err))
		}
		slot := uplinkSlot{spec: spec, subID: UplinkSubscriptionBase + i, u: u}
		slots = append(slots, slot)
		if err := errors.Join(u.Attach(broker.Subscribe, slot.subID), u.AttachForward(broker.SubscribeClients, slot.subID)); err != nil {
			return fail(fmt.Errorf("upstream %q: subscribe to the local broker: %w", spec.Name, err))
		}
		u.Start()
	}
	s.slots.Store(&slots)
	return s, nil
}

// Uplinks returns the running uplinks, in config order.
func (s *UplinkSet) Uplinks() []*Uplink {
	slots := *s.slots.Load()
	out := make([]*Uplink, 0, len(slots))
	for _, sl := range slots {
		if sl.u != nil {
			out = append(out, sl.u)
		}
	}
	return out
}

// Each calls fn for every running uplink, in config order, without
// allocating (the gateway's per-poll Sparkplug tap calls it).
func (s *UplinkSet) Each(fn func(*Uplink)) {
	for _, sl := range *s.slots.Load() {
		if sl.u != nil {
			fn(sl.u)
		}
	}
}

// NotRunning lists the upstreams that failed to start, with why, for
// /readyz.
func (s *UplinkSet) NotRunning() []string {
	var out []string
	for _, sl := range *s.slots.Load() {
		if sl.u == nil {
			out = append(out, fmt.Sprintf("upstream %s: not running (%v)", sl.spec.Name, sl.err))
		}
	}
	return out
}

// Stop stops every uplink (announcing offline, closing buffers).
func (s *UplinkSet) Stop(ctx context.Context) error { return stopSlots(ctx, *s.slots.Load()) }

func stopSlots(ctx context.Context, slots []uplinkSlot) error {
	var errs []error
	for _, sl := range slots {
		if sl.u != nil {
			errs = append(errs, sl.u.Stop(ctx))
		}
	}
	return errors.Join(errs...)
}

// UplinkReloadReport says what a reload did to the uplinks, by upstream
// name.
type UplinkReloadReport struct {
	Started, Restarted, Unchanged, Stopped []string
	// Failed are upstreams that could not start; they are retried on the
	// next reload and listed by NotRunning meanwhile.
	Failed []string
}

// Plan checks, before anything changes, that every new or changed upstream
// of specs can be made: check makes everything of one uplink except its
// buffer and says what fails.
func (s *UplinkSet) Plan(specs []UplinkSpec, check func(UplinkSpec) error) error {
	old := map[string]uplinkSlot{}
	for _, sl := range *s.slots.Load() {
		old[sl.spec.Name] = sl
	}
	var errs []error
	for _, spec := range specs {
		if sl, ok := old[spec.Name]; ok && sl.u != nil && sl.spec.Fingerprint == spec.Fingerprint {
			continue
		}
		if err := check(spec); err != nil {
			errs = append(errs, fmt.Errorf("upstream %q: %w", spec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Reload applies specs: unchanged uplinks keep running untouched; a
// changed one hands its open buffer to its successor, which subscribes
// before the old one unsubscribes, so every message published during the
// switch is buffered and what was not acknowledged is sent again (a
// message published in that instant may be buffered twice). When the
// buffer's own settings (folder, caps, sync) change, the buffer is closed
// and reopened instead; messages published while it reopens are dropped
// and counted. A removed uplink stops and its buffer stays on disk; an
// added one starts.
func (s *UplinkSet) Reload(ctx context.Context, specs []UplinkSpec) UplinkReloadReport {
	var rep UplinkReloadReport
	old := map[string]uplinkSlot{}
	for _, sl := range *s.slots.Load() {
		old[sl.spec.Name] = sl
	}
	next := make([]uplinkSlot, 0, len(specs))
	kept := map[string]bool{}
	for _, spec := range specs {
		kept[spec.Name] = true
	}
	// Removed uplinks go first: a renamed upstream may take over their
	// buffer folder.
	for _, sl := range *s.slots.Load() {
		if !kept[sl.spec.Name] {
			s.detach(sl)
			if sl.u != nil {
				if err := sl.u.Stop(ctx); err != nil {
					s.log.Warn("stop upstream", "upstream", sl.spec.Name, "err", err)
				}
			}
			rep.Stopped = append(rep.Stopped, sl.spec.Name)
		}
	}
	for _, spec := range specs {
		sl, had := old[spec.Name]
		if had && sl.u != nil && sl.spec.Fingerprint == spec.Fingerprint {
			sl.spec = spec
			next = append(next, sl)
			rep.Unchanged = append(rep.Unchanged, spec.Name)
			continue
		}
		ns := uplinkSlot{spec: spec, subID: s.nextSubID}
		s.nextSubID++
		open := spec.Open
		var handed *buffer.Queue
		if had && sl.u != nil {
			if sl.spec.Buffer == spec.Buffer {
				q, err := sl.u.Handover(ctx)
				if err != nil {
					s.log.Warn("disconnect upstream", "upstream", spec.Name, "err", err)
				}
				handed = q
				open = func() (*buffer.Queue, error) { return q, nil }
			} else {
				s.detach(sl)
				if err := sl.u.Stop(ctx); err != nil {
					s.log.Warn("stop upstream", "upstream", spec.Name, "err", err)
				}
			}
		}
		ns.u, ns.err = spec.New(open)
		if ns.err != nil && handed != nil {
			s.detach(sl)
			_ = handed.Close() // not taken: un-acknowledged messages stay on disk
		}
		if ns.err == nil {
			ns.err = errors.Join(ns.u.Attach(s.broker.Subscribe, ns.subID), ns.u.AttachForward(s.broker.SubscribeClients, ns.subID))
			if ns.err != nil {
				ns.err = fmt.Errorf("subscribe to the local broker: %w", ns.err)
				s.detach(ns)
				s.detach(sl)
				_ = ns.u.Stop(ctx) // closes the buffer; un-acknowledged messages stay on disk
				ns.u = nil
			}
		}
		if had && sl.u != nil {
			s.detach(sl) // the successor is subscribed (or the buffer is closed)
		}
		switch {
		case ns.err != nil:
			s.log.Error("upstream not started", "upstream", spec.Name, "err", ns.err)
			rep.Failed = append(rep.Failed, spec.Name)
		case had:
			ns.u.Start()
			rep.Restarted = append(rep.Restarted, spec.Name)
		default:
			ns.u.Start()
			rep.Started = append(rep.Started, spec.Name)
		}
		next = append(next, ns)
	}
	s.slots.Store(&next)
	return rep
}

// detach removes sl's subscriptions from the local broker.
func (s *UplinkSet) detach(sl uplinkSlot) {
	if sl.u == nil {
		return
	}
	for _, f := range sl.u.Filters() {
		_ = s.broker.Unsubscribe(f, sl.subID)
	}
}
