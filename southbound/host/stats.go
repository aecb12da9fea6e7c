package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edged-gw/edged/southbound"
)

// Counter counts a device's requests by outcome. Drivers call Count once
// per request sent (retries and the requests of a write included); the host
// times the polls. Safe from any goroutine.
type Counter struct {
	req, errs, timeouts, exceptions atomic.Uint64
	lastPoll                        atomic.Int64
	polls, overruns                 atomic.Uint64
	// The poll-duration histogram: one count per bucket of
	// southbound.PollBuckets plus one beyond the last, and the sum in ns.
	pollBuckets [len(southbound.PollBuckets) + 1]atomic.Uint64
	pollSumNs   atomic.Int64
}

// Refusal is implemented by errors that are the device answering with a
// protocol error (a Modbus exception, a bad OPC UA status): counted as
// exceptions. Refused reports whether it is one.
type Refusal interface{ Refused() bool }

// Count records one request and its outcome: nil, a timeout (an error
// that says Timeout(), os.ErrDeadlineExceeded, context.DeadlineExceeded),
// a refusal (see Refusal), or any other error.
func (c *Counter) Count(err error) {
	c.req.Add(1)
	if err == nil {
		return
	}
	c.errs.Add(1)
	var rf Refusal
	var to interface{ Timeout() bool }
	switch {
	case errors.As(err, &rf) && rf.Refused():
		c.exceptions.Add(1)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &to) && to.Timeout():
		c.timeouts.Add(1)
	}
}

// Polled records the duration of one complete poll (or, for a subscribing
// driver, of the request that checks the session is alive).
func (c *Counter) Polled(took time.Duration) {
	c.lastPoll.Store(int64(took))
	secs := took.Seconds()
	i := 0
	for i < len(southbound.PollBuckets) && secs > southbound.PollBuckets[i] {
		i++
	}
	c.pollBuckets[i].Add(1)
	c.pollSumNs.Add(int64(took))
}

// pollTimes is the histogram so far, cumulative per bucket.
func (c *Counter) pollTimes() southbound.PollHistogram {
	h := southbound.PollHistogram{Counts: make([]uint64, len(southbound.PollBuckets))}
	var run uint64
	for i := range c.pollBuckets {
		run += c.pollBuckets[i].Load()
		if i < len(h.Counts) {
			h.Counts[i] = run
		}
	}
	h.Count = run
	h.Sum = time.Duration(c.pollSumNs.Load()).Seconds()
	return h
}

// Stats are the totals so far.
func (c *Counter) Stats() southbound.Stats {
	return southbound.Stats{
		Requests: c.req.Load(), Errors: c.errs.Load(), Timeouts: c.timeouts.Load(), Exceptions: c.exceptions.Load(),
		LastPoll: time.Duration(c.lastPoll.Load()).Seconds(), Polls: c.polls.Load(), Overruns: c.overruns.Load(),
		PollTimes: c.pollTimes(),
	}
}

// LaneStat is the state of one lane, for a driver's own metrics (a serial
// bus's line counters live in its medium).
type LaneStat struct {
	Key      string // Config.Lane; "" for a lane of one
	Medium   any
	Uptime   time.Duration
	Overruns uint64 // polls of any member that started a whole interval late
	Members  []MemberStat
}

// MemberStat is one device's schedule in its lane.
type MemberStat struct {
	Name      string
	Driver    Driver
	Interval  time.Duration
	LastCycle time.Duration // wall time of the last poll
	Polls     uint64        // successful polls
	Overruns  uint64
	Offline   bool
}

// Lanes returns every lane in use, lanes of one included.
func (h *Host) Lanes() []LaneStat {
	h.mu.Lock()
	all := make([]*lane, 0, len(h.lanes))
	for _, l := range h.lanes {
		all = append(all, l)
	}
	h.mu.Unlock()
	out := make([]LaneStat, 0, len(all))
	for _, l := range all {
		st := LaneStat{Key: l.key, Medium: l.medium, Uptime: time.Since(l.started), Overruns: l.overruns.Load()}
		l.mu.Lock()
		for _, m := range l.members {
			c := &m.r.counter
			st.Members = append(st.Members, MemberStat{Name: m.cfg.Name, Driver: m.r.drv, Interval: m.cfg.Interval,
				LastCycle: time.Duration(c.lastPoll.Load()), Polls: c.polls.Load(), Overruns: c.overruns.Load(),
				Offline: m.offline.Load()})
		}
		l.mu.Unlock()
		out = append(out, st)
	}
	return out
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

// A driver package's own Prometheus collectors, made for the host of the
// running gateway: registered at init, next to the driver.
var (
	collectorsMu sync.Mutex
	collectors   []func(*Host) prometheus.Collector
)

// RegisterCollector adds a collector the metrics endpoint serves for every
// gateway (e.g. a serial bus's line counters, read from h.Lanes()).
func RegisterCollector(f func(h *Host) prometheus.Collector) {
	collectorsMu.Lock()
	defer collectorsMu.Unlock()
	collectors = append(collectors, f)
}

// Collectors returns the registered collectors for h.
func Collectors(h *Host) []prometheus.Collector {
	collectorsMu.Lock()
	defer collectorsMu.Unlock()
	out := make([]prometheus.Collector, 0, len(collectors))
	for _, f := range collectors {
		out = append(out, f(h))
	}
	return out
}

// MediumInfo is implemented by a shared medium that can say what it is
// (a serial port and its line settings) and how long it has carried
// frames, for the operator's view of a lane.
type MediumInfo interface {
	MediumInfo() (name, settings string, busy time.Duration)
}
