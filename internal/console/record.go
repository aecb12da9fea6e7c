package console

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// recorder keeps the plots (one sample every SampleEvery, bounded to
// History), the uplinks' connection history and each tag's last change,
// and, only while a browser is connected, makes a frame of live values
// every LiveEvery for the event streams. With nobody connected it does
// one small sample every SampleEvery and nothing per device sample.
type recorder struct {
	o    Options
	wake chan struct{}

	mu      sync.Mutex
	poll    map[string]*ring // device → last poll cycle, ms
	backlog map[string]*ring // uplink → buffered messages
	conns   map[string][]ConnEvent
	seen    map[string]uplinkSeen
	changes map[string]tagChange // device "\x00" tag
	plots   map[string]string    // data-k → text (path d, max label)
	clients map[*client]struct{}

	frame atomic.Pointer[frame]
	done  chan struct{}
	stop  sync.Once
}

// ConnEvent is one observed change of an uplink's connection.
type ConnEvent struct {
	At    time.Time
	State string
	Err   string
}

const maxConnEvents = 50

type uplinkSeen struct {
	state    string
	connects uint64
}

type tagChange struct {
	value     string
	changedMs int64 // 0: not seen changing yet
}

// frame is one moment's live values as data-k → text, by scope: "" is
// the gateway, devices and uplinks; a device name its tags.
type frame struct {
	base map[string]string
	tags map[string]map[string]string
}

type client struct {
	device string // "" or the device whose tags it shows
	wake   chan struct{}
}

// ring is a fixed-size series of (unix s, value).
type ring struct {
	t    []int64
	v    []float64
	next int
	n    int
}

func newRing(size int) *ring { return &ring{t: make([]int64, size), v: make([]float64, size)} }

func (r *ring) add(t int64, v float64) {
	r.t[r.next], r.v[r.next] = t, v
	r.next = (r.next + 1) % len(r.t)
	r.n = min(r.n+1, len(r.t))
}

// each calls f oldest first.
func (r *ring) each(f func(t int64, v float64)) {
	start := (r.next - r.n + len(r.t)) % len(r.t)
	for i := range r.n {
		j := (start + i) % len(r.t)
		f(r.t[j], r.v[j])
	}
}

// maxSeries bounds the plots however many devices a config has.
const maxSeries = 500

func newRecorder(o Options) *recorder {
	return &recorder{o: o, wake: make(chan struct{}, 1), poll: map[string]*ring{}, backlog: map[string]*ring{},
		conns: map[string][]ConnEvent{}, seen: map[string]uplinkSeen{}, changes: map[string]tagChange{},
		plots: map[string]string{}, clients: map[*client]struct{}{}, done: make(chan struct{})}
}

func (r *recorder) size() int { return max(2, int(r.o.History/r.o.SampleEvery)) }

func (r *recorder) run(ctx context.Context) {
	defer r.stop.Do(func() { close(r.done) })
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.wake:
		}
		now := time.Now()
		if !now.Before(next) {
			r.sample(now)
			next = now.Add(r.o.SampleEvery)
		}
		wait := time.Until(next)
		if r.connected() {
			r.live()
			wait = min(wait, r.o.LiveEvery)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

func (r *recorder) connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients) > 0
}

func (r *recorder) add(c *client) {
	r.mu.Lock()
	r.clients[c] = struct{}{}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) remove(c *client) {
	r.mu.Lock()
	delete(r.clients, c)
	r.mu.Unlock()
}

// sample records the plots' points and every tag's last change.
func (r *recorder) sample(now time.Time) {
	devs := r.o.Source.Devices()
	ups := r.o.Source.Uplinks()
	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = d.Name
	}
	tags := r.o.Source.Tags(names...)
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := now.Unix()
	keep := map[string]bool{}
	for _, d := range devs {
		keep[d.Name] = true
		if d.PollSeconds < 0 {
			continue
		}
		rg := r.poll[d.Name]
		if rg == nil {
			if len(r.poll) >= maxSeries {
				continue
			}
			rg = newRing(r.size())
			r.poll[d.Name] = rg
		}
		rg.add(ts, d.PollSeconds*1000)
	}
	for n := range r.poll {
		if !keep[n] {
			delete(r.poll, n)
		}
	}
	clear(keep)
	for _, u := range ups {
		keep[u.Name] = true
		rg := r.backlog[u.Name]
		if rg == nil {
			if len(r.backlog) >= maxSeries {
				continue
			}
			rg = newRing(r.size())
			r.backlog[u.Name] = rg
		}
		rg.add(ts, float64(u.Depth))
	}
	for n := range r.backlog {
		if !keep[n] {
			delete(r.backlog, n)
		}
	}
	r.observe(tags, ups, now)
	clear(r.plots)
	for n, rg := range r.poll {
		d, top, span := plotPath(rg, now, r.o.History)
		r.plots["p:poll:"+n], r.plots["pm:poll:"+n], r.plots["ps:poll:"+n] = d, fmtNum(top)+" ms", span.String()
	}
	for n, rg := range r.backlog {
		d, top, span := plotPath(rg, now, r.o.History)
		r.plots["p:backlog:"+n], r.plots["pm:backlog:"+n], r.plots["ps:backlog:"+n] = d, fmtNum(top)+" messages", span.String()
	}
}

// observe updates the connection history and the tags' last change. The
// caller holds r.mu.
func (r *recorder) observe(tags map[string][]Tag, ups []Uplink, now time.Time) {
	for _, u := range ups {
		prev, had := r.seen[u.Name]
		if !had || prev.state != u.State || prev.connects != u.Connects {
			if had && prev.connects != u.Connects && prev.state == u.State {
				// A whole outage passed between two looks.
				r.conns[u.Name] = appendConn(r.conns[u.Name], ConnEvent{At: now, State: "reconnected"})
			} else {
				r.conns[u.Name] = appendConn(r.conns[u.Name], ConnEvent{At: now, State: u.State, Err: u.LastErr})
			}
		}
		r.seen[u.Name] = uplinkSeen{state: u.State, connects: u.Connects}
	}
	for dev, ts := range tags {
		for _, t := range ts {
			k := dev + "\x00" + t.Name
			c, had := r.changes[k]
			if had && c.value != t.Value {
				c.changedMs = t.TimeMs
			}
			c.value = t.Value
			r.changes[k] = c
		}
	}
	if len(r.changes) > 200000 {
		clear(r.changes) // a runaway config; start over rather than grow
	}
}

// observeUplinks adds what changed since the last look to the uplinks'
// connection history.
func (r *recorder) observeUplinks(ups []Uplink, now time.Time) {
	r.mu.Lock()
	r.observe(nil, ups, now)
	r.mu.Unlock()
}

func appendConn(ev []ConnEvent, e ConnEvent) []ConnEvent {
	if len(ev) >= maxConnEvents {
		ev = append(ev[:0], ev[1:]...)
	}
	return append(ev, e)
}

// connHistory is the uplink's observed changes, newest first.
func (r *recorder) connHistory(name string) []ConnEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.conns[name]
	out := make([]ConnEvent, len(ev))
	for i, e := range ev {
		out[len(ev)-1-i] = e
	}
	return out
}

// lastChange is when the tag's value last changed (unix ms, 0 unknown).
func (r *recorder) lastChange(device, tag string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changes[device+"\x00"+tag].changedMs
}

// plot returns the plot of a series key ("poll:NAME", "backlog:NAME").
func (r *recorder) plot(key string) Plot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Plot{Key: key, D: r.plots["p:"+key], Max: r.plots["pm:"+key], Span: r.plots["ps:"+key]}
}

// Plot is one inline SVG plot: its series key, path, top value and span.
type Plot struct{ Key, D, Max, Span string }

// live makes a frame for the connected browsers and wakes them.
func (r *recorder) live() {
	r.mu.Lock()
	var want []string
	seen := map[string]bool{}
	for c := range r.clients {
		if c.device != "" && !seen[c.device] {
			want, seen[c.device] = append(want, c.device), true
		}
	}
	r.mu.Unlock()
	devs := r.o.Source.Devices()
	ups := r.o.Source.Uplinks()
	var tags map[string][]Tag
	if len(want) > 0 {
		tags = r.o.Source.Tags(want...)
	}
	g := r.o.Source.Gateway()
	now := time.Now()
	r.mu.Lock()
	r.observe(tags, ups, now)
	f := &frame{base: baseValues(g, devs, ups, now), tags: map[string]map[string]string{}}
	for k, v := range r.plots {
		f.base[k] = v
	}
	for dev, ts := range tags {
		m := make(map[string]string, len(ts)*5)
		for _, t := range ts {
			p := "t:" + dev + ":" + t.Name + ":"
			m[p+"v"], m[p+"q"], m[p+"ts"] = t.Value, t.Quality, fmtTime(t.TimeMs)
			m[p+"err"] = t.Err
			m[p+"ch"] = fmtTime(r.changes[dev+"\x00"+t.Name].changedMs)
		}
		f.tags[dev] = m
	}
	clients := make([]*client, 0, len(r.clients))
	for c := range r.clients {
		clients = append(clients, c)
	}
	r.mu.Unlock()
	r.frame.Store(f)
	for _, c := range clients {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// baseValues are the live figures every page may show.
func baseValues(g GatewayInfo, devs []Device, ups []Uplink, now time.Time) map[string]string {
	m := map[string]string{"g:uptime": fmtDur(now.Sub(g.Started).Seconds()), "g:samples": strconv.FormatUint(g.Samples, 10),
		"g:published": strconv.FormatUint(g.Published, 10)}
	for _, d := range devs {
		p := "d:" + d.Name + ":"
		m[p+"state"], m[p+"err"], m[p+"polls"] = d.State, d.Err, strconv.FormatUint(d.Polls, 10)
		m[p+"poll"] = fmtPoll(d.PollSeconds)
		m[p+"lastgood"] = fmtTime(d.LastGoodMs)
	}
	for _, u := range ups {
		p := "u:" + u.Name + ":"
		m[p+"state"], m[p+"err"] = u.State, u.LastErr
		m[p+"depth"], m[p+"bytes"] = strconv.FormatInt(u.Depth, 10), fmtBytes(u.Bytes)
		m[p+"oldest"] = fmtDur(u.OldestAge)
		m[p+"dropped"] = strconv.FormatUint(u.Dropped, 10)
		m[p+"lost"], m[p+"lostwhy"] = strconv.FormatUint(u.Lost, 10), u.LostWhy
		m[p+"backlog"] = strconv.FormatInt(u.ReplayBacklog, 10)
		m[p+"sent"], m[p+"acked"], m[p+"replayed"] = strconv.FormatUint(u.Sent, 10), strconv.FormatUint(u.Acked, 10), strconv.FormatUint(u.Replayed, 10)
		m[p+"disk"] = fmtBytes(u.DiskBytes)
		m[p+"connects"] = strconv.FormatUint(u.Connects, 10)
		m[p+"inflight"] = strconv.Itoa(u.InFlight)
	}
	return m
}

// plotPath renders a series as an SVG path over a 600×100 box, the right
// edge now, the left edge the oldest point (at most window ago); it returns
// the value at the top and the time spanned.
func plotPath(rg *ring, now time.Time, window time.Duration) (string, float64, time.Duration) {
	top := 0.0
	oldest := now.Unix()
	rg.each(func(t int64, v float64) { top, oldest = max(top, v), min(oldest, t) })
	if top <= 0 {
		top = 1
	}
	end := now.Unix()
	span := min(max(float64(end-oldest), 1), window.Seconds())
	var sb strings.Builder
	first := true
	rg.each(func(t int64, v float64) {
		x := 600 - float64(end-t)/span*600
		y := 100 - v/top*96
		if first {
			sb.WriteByte('M')
			first = false
		} else {
			sb.WriteByte('L')
		}
		fmt.Fprintf(&sb, "%.1f %.1f", max(x, 0), y)
	})
	return sb.String(), top, time.Duration(span) * time.Second
}
