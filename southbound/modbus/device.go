package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound/host"
)

// defaultHoleRetry is how many polls pass between re-reads of tags the
// device refused, in case the device learned them (firmware update, a
// module plugged in).
const defaultHoleRetry = 100

// Learned is what a device's adaptive planner found out by talking to the
// device, as shown by `edged plan --live` and in logs.
type Learned struct {
	// Plan is the read plan in use: the configured one, split where the
	// device refused merged reads.
	Plan []Request
	// Unreadable lists the tags the device refuses to read even alone;
	// they are reported bad and re-read every so many polls.
	Unreadable []Hole
	// Cuts are boundaries no read crosses any more.
	Cuts []Cut
	// MaxRegisters and MaxBits are the read limits in use (lowered when the
	// device refused long reads with exception 03).
	MaxRegisters, MaxBits int
	// Changes counts what was learned by talking to the device (a loaded
	// plan counts none): each split, hole and limit.
	Changes uint64
	// Loaded is the saved learned plan Start began with ("" if none).
	Loaded string
	// Pending counts the reads of the plan the device refused in a recent
	// poll, split for that poll but not learned until later polls refuse
	// them the same way (see learn.go).
	Pending int
}

// Hole is a tag the device refuses to read.
type Hole struct {
	Tag     string
	Area    Area
	Address int
	Reason  string
}

// Cut is a learned boundary: no read contains both Address-1 and Address.
type Cut struct {
	Area    Area
	Address int
}

// core is the protocol work of one Modbus device, whatever its transport:
// the tags, the read plan and what was learned about it, one poll cycle,
// and writes. cycle and write run on one goroutine at a time (a TCP
// device's poll goroutine, or the serial bus); prepareWrite and learned may
// be called from any goroutine.
type core struct {
	name      string
	tags      []Tag
	specs     []*mapping.Spec
	byName    map[string]int
	retries   int
	holeRetry int

	// Owned by the goroutine running cycle and write.
	log     *slog.Logger
	cli     client
	samples []mapping.Sample
	failed  []reqFailure // per request of plan: the last exception
	lim     Limits
	cut     cuts
	holes   map[int]error // tag index → why it cannot be read
	plan    []Request
	polls   int
	changes uint64

	store      *planStore // where learned plans are saved (nil: nowhere); see persist.go
	loadedFrom string     // the saved plan start began with

	// Confirmation of refusals; see learn.go.
	base     []Request           // the configured plan, before anything was learned
	baseLim  Limits              // the configured limits
	suspect  map[reqKey]*finding // refused reads of the plan, not confirmed yet
	pollOK   int                 // reads the device answered in this poll
	planWhy  string              // why the plan last changed, for the log
	reported int                 // requests of the plan last logged

	lmu  sync.Mutex // guards snap
	snap Learned

	// counter counts requests for the metrics (the host's, from any goroutine).
	counter *host.Counter
}

// count records the outcome of one request for the metrics.
func (c *core) count(err error) {
	if c.counter != nil {
		c.counter.Count(err)
	}
}

// reqFailure remembers the last exception of one request, so that a
// request refused every poll does not allocate a new error every poll.
type reqFailure struct {
	code byte
	err  error
}

// init sets up a core for checked tags; no I/O.
func (c *core) init(name string, tags []Tag, lim Limits, retries int) {
	c.name, c.tags, c.lim, c.retries = name, tags, lim, retries
	c.specs = make([]*mapping.Spec, len(tags))
	c.byName = make(map[string]int, len(tags))
	for i := range tags {
		c.specs[i] = &tags[i].Spec
		c.byName[tags[i].Name] = i
	}
	c.holes = map[int]error{}
	c.cut = cuts{}
	c.suspect = map[reqKey]*finding{}
	c.baseLim = lim
	c.replan()
	c.base, c.reported = c.plan, len(c.plan)
	if c.holeRetry == 0 {
		c.holeRetry = defaultHoleRetry
	}
}

// start prepares what the running goroutine owns.
func (c *core) start(log *slog.Logger, cli client, counter *host.Counter) {
	c.log, c.cli, c.counter = log, cli, counter
	c.samples = make([]mapping.Sample, len(c.tags))
	for i := range c.samples {
		c.samples[i].Tag = c.specs[i]
	}
	c.restore()
}

func (c *core) replan() {
	c.plan = plan(c.tags, c.lim, func(i int) bool { _, hole := c.holes[i]; return hole }, &c.cut)
	c.failed = make([]reqFailure, len(c.plan))
	if len(c.suspect) > 0 { // suspicions about reads no longer made
		keep := make(map[reqKey]bool, len(c.plan))
		for i := range c.plan {
			keep[keyOf(&c.plan[i])] = true
		}
		maps.DeleteFunc(c.suspect, func(k reqKey, _ *finding) bool { return !keep[k] })
	}
	l := Learned{Plan: c.plan, MaxRegisters: c.lim.MaxRegisters, MaxBits: c.lim.MaxBits, Changes: c.changes, Loaded: c.loadedFrom,
		Pending: len(c.suspect)}
	for a := Coil; a <= HoldingRegister; a++ {
		for _, at := range c.cut[a] {
			l.Cuts = append(l.Cuts, Cut{a, at})
		}
	}
	for k, err := range c.holes {
		t := &c.tags[k]
		l.Unreadable = append(l.Unreadable, Hole{t.Name, t.Area, t.Address, err.Error()})
	}
	slices.SortFunc(l.Unreadable, func(a, b Hole) int {
		if a.Area != b.Area {
			return int(a.Area) - int(b.Area)
		}
		return a.Address - b.Address
	})
	c.lmu.Lock()
	c.snap = l
	c.lmu.Unlock()
}

// learned returns a copy of what was learned.
func (c *core) learned() Learned {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	l := c.snap
	l.Plan = slices.Clone(l.Plan)
	l.Unreadable = slices.Clone(l.Unreadable)
	l.Cuts = slices.Clone(l.Cuts)
	return l
}

// cycle reads every request of the plan into samples. A refused merged
// read is split until the refused registers are found (see learn); an
// exception marks only the affected tags bad; any other failure (after
// the retries) ends the cycle with an error. retries is how many more
// attempts a request gets after a failure that is not an answer.
func (c *core) cycle(ctx context.Context, retries int) error {
	c.polls++
	c.pollOK = 0
	// What a poll learned counts even when a later read of the same poll
	// fails: refusals confirmed and reads answered again are committed at
	// the end of the poll whatever ended it, and a plan not rebuilt from
	// them would repeat the refused reads on every poll.
	changed := false
	defer func() {
		if c.commit() {
			changed = true
		}
		if changed {
			c.replan()
			c.save()
			c.reportPlan()
		}
		c.lmu.Lock()
		c.snap.Pending = len(c.suspect)
		c.lmu.Unlock()
	}()
	if c.degraded() && c.polls%c.holeRetry == 0 {
		ch, err := c.unlearn(ctx, retries)
		changed = changed || ch
		if err != nil {
			return err
		}
		ch, err = c.reprobe(ctx, retries)
		changed = changed || ch
		if err != nil {
			return err
		}
	}
	for i := range c.plan {
		r := &c.plan[i]
		raw, err := c.read(ctx, r.Area, r.Start, r.Count, retries)
		now := time.Now().UnixMilli()
		if err != nil {
			var ex *Exception
			var fm *FunctionMismatch
			if errors.As(err, &fm) { // no answer to the request: its tags are bad this poll
				c.markBad(r, fmt.Errorf("read %s %d+%d: %w", r.Area.short(), r.Start, r.Count, err), now)
				continue
			}
			if !refused(err) || !errors.As(err, &ex) {
				return fmt.Errorf("read %s %d+%d: %w", r.Area.short(), r.Start, r.Count, err)
			}
			if ex.Code == 2 || ex.Code == 3 {
				if err := c.learn(ctx, r, err, retries); err != nil {
					if errors.As(err, &fm) {
						c.markBad(r, err, time.Now().UnixMilli())
						continue
					}
					return err
				}
				continue
			}
			f := &c.failed[i]
			if f.err == nil || f.code != ex.Code {
				f.code = ex.Code
				f.err = fmt.Errorf("read %s %d+%d: %w", r.Area.short(), r.Start, r.Count, err)
			}
			for _, k := range r.Tags {
				c.samples[k] = mapping.Sample{Tag: c.specs[k], Quality: mapping.Bad, TimeMs: now, Err: f.err}
			}
			continue
		}
		c.answered(r)
		c.decode(r, raw, now)
	}
	if len(c.holes) > 0 {
		now := time.Now().UnixMilli()
		for k, err := range c.holes {
			c.samples[k] = mapping.Sample{Tag: c.specs[k], Quality: mapping.Bad, TimeMs: now, Err: err}
		}
	}
	return nil
}

// poll runs one cycle and returns the samples; a probe (the device is
// offline) gets no retries: the host's backoff paces them.
func (c *core) poll(ctx context.Context, retries int, probe bool) ([]mapping.Sample, error) {
	if probe {
		retries = 0
	}
	if err := c.cycle(ctx, retries); err != nil {
		return nil, err
	}
	return c.samples, nil
}

// read sends one read, trying again up to retries times after a failure
// that is not an answer from the device.
func (c *core) read(ctx context.Context, area Area, first, n, retries int) ([]byte, error) {
	var raw []byte
	var err error
	for range retries + 1 {
		start, count := uint16(first), uint16(n)
		switch area {
		case Coil:
			raw, err = c.cli.ReadCoils(start, count)
		case DiscreteInput:
			raw, err = c.cli.ReadDiscreteInputs(start, count)
		case InputRegister:
			raw, err = c.cli.ReadInputRegisters(start, count)
		default:
			raw, err = c.cli.ReadHoldingRegisters(start, count)
		}
		c.count(err)
		if err == nil {
			c.pollOK++
		}
		if err == nil || ctx.Err() != nil || refused(err) {
			return raw, err
		}
	}
	return nil, err
}

// unit is a run of tags of a request that share registers (a register and
// the bit tags inside it, or two views of the same registers): a read
// cannot separate them.
type unit struct {
	tags       []int
	start, end int
}

func (c *core) units(r *Request) []unit {
	var us []unit
	for _, k := range r.Tags {
		t := &c.tags[k]
		if n := len(us); n > 0 && t.Address <= us[n-1].end {
			us[n-1].tags = append(us[n-1].tags, k)
			us[n-1].end = max(us[n-1].end, t.end())
			continue
		}
		us = append(us, unit{tags: []int{k}, start: t.Address, end: t.end()})
	}
	return us
}

// request is the read that covers the units.
func request(area Area, us []unit) Request {
	r := Request{Area: area, Start: us[0].start, Count: us[len(us)-1].end - us[0].start + 1}
	for _, u := range us {
		r.Tags = append(r.Tags, u.tags...)
	}
	return r
}

// learn handles a read refused with exception 02 or 03 (refusal): it
// covers the request's tags with the fewest reads the device accepts,
// taking each time the longest readable run of tags (found by bisection),
// and fills the samples of the request's tags from the reads that worked.
// What it found (boundaries no read may cross, tags refused even alone,
// and with exception 03 and no such tag the longest accepted read as the
// read limit) is only a suspicion: it is learned when a later poll finds
// the same (see learn.go). A tag refused alone is read once
// more before it counts as refused; answered then, nothing of this
// request is suspected (the device is unsteady, not refusing addresses).
func (c *core) learn(ctx context.Context, r *Request, refusal error, retries int) error {
	us := c.units(r)
	area := r.Area
	var ex *Exception
	errors.As(refusal, &ex)
	f := &finding{refusal: refusal, holeErr: map[int]error{}}
	longest := 0
	for i := 0; i < len(us); {
		rest := us[i:]
		hi, hiErr := len(rest), refusal
		if i > 0 {
			q := request(area, rest)
			raw, err := c.read(ctx, area, q.Start, q.Count, retries)
			if err == nil {
				c.decode(&q, raw, time.Now().UnixMilli())
				longest, f.read = max(longest, q.Count), true
				break
			}
			if !refused(err) {
				return fmt.Errorf("read %s %d+%d: %w", area.short(), q.Start, q.Count, err)
			}
			hiErr = err
		}
		lo, loRaw := 0, []byte(nil)
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			q := request(area, rest[:mid])
			raw, err := c.read(ctx, area, q.Start, q.Count, retries)
			switch {
			case err == nil:
				lo, loRaw = mid, append(loRaw[:0], raw...)
			case refused(err):
				hi, hiErr = mid, err
			default:
				return fmt.Errorf("read %s %d+%d: %w", area.short(), q.Start, q.Count, err)
			}
		}
		if lo == 0 { // rest[0] was refused on its own: ask once more
			q := request(area, rest[:1])
			raw, err := c.read(ctx, area, q.Start, q.Count, retries)
			switch {
			case err == nil:
				lo, loRaw, f.unsteady = 1, append(loRaw[:0], raw...), true
			case refused(err):
				hiErr = err
			default:
				return fmt.Errorf("read %s %d+%d: %w", area.short(), q.Start, q.Count, err)
			}
		}
		now := time.Now().UnixMilli()
		if lo == 0 { // rest[0] is refused on its own, twice
			u := rest[0]
			serr := fmt.Errorf("read %s %d+%d: %w", area.short(), u.start, u.end-u.start+1, hiErr)
			herr := fmt.Errorf("%w (the device refuses this address; re-read every %d polls)", serr, c.holeRetry)
			for _, k := range u.tags {
				f.holes = append(f.holes, k)
				f.holeErr[k] = herr
				c.samples[k] = mapping.Sample{Tag: c.specs[k], Quality: mapping.Bad, TimeMs: now, Err: serr}
			}
			if u.start > 0 { // nothing is below address 0 to cut from
				f.cuts = append(f.cuts, u.start)
			}
			if u.end < 65535 {
				f.cuts = append(f.cuts, u.end+1)
			}
			i++
			continue
		}
		q := request(area, rest[:lo])
		c.decode(&q, loRaw, now)
		longest, f.read = max(longest, q.Count), true
		if lo < len(rest) {
			f.cuts = append(f.cuts, rest[lo].start)
		}
		i += lo
	}
	slices.Sort(f.cuts)
	f.cuts = slices.Compact(f.cuts)
	if ex != nil && ex.Code == 3 && len(f.holes) == 0 && longest > 0 {
		if (area.Bits() && longest < c.lim.MaxBits) || (!area.Bits() && longest < c.lim.MaxRegisters) {
			f.limit = longest
		}
	}
	c.suspectRefusal(r, f)
	return nil
}

// reprobe reads each unreadable tag alone and forgets the holes that read.
func (c *core) reprobe(ctx context.Context, retries int) (bool, error) {
	changed := false
	for k := range c.holes {
		t := &c.tags[k]
		raw, err := c.read(ctx, t.Area, t.Address, t.width(), retries)
		if err != nil {
			if refused(err) {
				continue
			}
			return changed, fmt.Errorf("read %s %d+%d: %w", t.Area.short(), t.Address, t.width(), err)
		}
		q := Request{Area: t.Area, Start: t.Address, Count: t.width(), Tags: []int{k}}
		c.decode(&q, raw, time.Now().UnixMilli())
		delete(c.holes, k)
		c.changes++
		changed = true
		c.log.Info("tag readable again", "tag", t.Name)
	}
	return changed, nil
}

// refused reports whether err is the device refusing one request, as
// opposed to the device (or the gateway's path to it) not answering.
func refused(err error) bool {
	var ex *Exception
	return errors.As(err, &ex) && !ex.unreachable()
}

// decode fills the samples of r's tags from its response.
func (c *core) decode(r *Request, raw []byte, now int64) {
	bits := r.Area.Bits()
	for _, k := range r.Tags {
		tag := &c.tags[k]
		s := &c.samples[k]
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
