package modbus

// When a refusal is learned, and when it is forgotten.
//
// A device refuses a read (exception 02 or 03) for two kinds of reasons:
// the read touches registers the device does not have, which it refuses
// every time, or the device is unsteady (busy, in STOP, a gateway
// confused), which passes. Learning the first kind saves the refused
// reads on every poll; learning the second leaves tags unread for
// hundreds of polls and the plan split into many small reads. So a
// refused read is split for the poll that saw it (its samples are filled
// from the parts that read) but what the split found is learned only when:
//
//   - the same read is refused again on a later poll and splitting it
//     finds exactly the same boundaries, tags refused alone and limit, and
//   - something of that later poll read: a device refusing everything
//     says nothing about its addresses.
//
// A read of which nothing could be read at all (every tag refused alone)
// is weaker evidence, as a device refusing one block for a while looks
// the same: it is learned only once found on four polls in a row.
//
// A read of the plan that is answered forgets the suspicion about it, and
// every holeRetry polls a device whose plan differs from the configured
// one is asked each configured read the learned plan splits: answered
// whole, what split it is forgotten (cuts inside it, its tags' holes, a
// lowered limit), so a device that answers a read it refused before
// un-learns it. Every change that leaves the plan with more requests than
// the configuration needs is logged at warn with the reason; the return
// to the configured plan at info.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/edged-gw/edged/mapping"
)

// How many polls in a row must find the same refusal before it is
// learned: when part of the read was answered, and when none was.
const (
	confirmPolls       = 2
	confirmPollsUnread = 4
)

// reqKey identifies a read of the plan.
type reqKey struct {
	area         Area
	start, count int
}

func keyOf(r *Request) reqKey { return reqKey{r.Area, r.Start, r.Count} }

// finding is what splitting one refused read found.
type finding struct {
	poll    int           // the poll it was first found in
	last    int           // the poll it was last found in
	seen    int           // polls in a row that found it
	read    bool          // some part of the read was answered
	cuts    []int         // boundaries in the read's area, sorted
	holes   []int         // tags refused alone, in address order
	holeErr map[int]error // per hole: the error it is reported with once learned
	limit   int           // the longest accepted read, when exception 03 lowers the limit; 0 if not
	refusal error         // the refusal of the whole read
	// unsteady: a read the device refused was answered when asked again.
	unsteady bool
	// confirmed: found again on a later poll; learned at the end of the
	// poll if the poll read something.
	confirmed bool
}

func (f *finding) same(g *finding) bool {
	return f.limit == g.limit && slices.Equal(f.cuts, g.cuts) && slices.Equal(f.holes, g.holes)
}

// suspectRefusal records what splitting r found in this poll.
func (c *core) suspectRefusal(r *Request, f *finding) {
	key := keyOf(r)
	read := fmt.Sprintf("%s %d+%d", r.Area.short(), r.Start, r.Count)
	if f.unsteady {
		delete(c.suspect, key)
		c.log.Debug("refused read answered when asked again; nothing learned", "read", read, "err", f.refusal)
		return
	}
	p := c.suspect[key]
	f.poll, f.last, f.seen = c.polls, c.polls, 1
	if p != nil && p.last < c.polls && p.same(f) {
		f.poll, f.seen = p.poll, p.seen+1
	}
	need := confirmPolls
	if !f.read {
		need = confirmPollsUnread
	}
	f.confirmed = f.seen >= need
	c.suspect[key] = f
	if !f.confirmed {
		c.log.Debug("read refused; split for this poll, learned if refused the same way again",
			"read", read, "err", f.refusal, "cuts", len(f.cuts), "refused_tags", len(f.holes))
	}
}

// answered forgets a suspicion about r, which the device just answered.
func (c *core) answered(r *Request) {
	if len(c.suspect) == 0 {
		return
	}
	key := keyOf(r)
	if _, ok := c.suspect[key]; ok {
		delete(c.suspect, key)
		c.log.Debug("refused read answered on a later poll; nothing learned", "read", fmt.Sprintf("%s %d+%d", r.Area.short(), r.Start, r.Count))
	}
}

// commit learns the refusals confirmed in this poll, if the poll read
// something; called at the end of every poll. It reports whether anything
// was learned.
func (c *core) commit() bool {
	if len(c.suspect) == 0 {
		return false
	}
	keys := slices.SortedFunc(maps.Keys(c.suspect), func(a, b reqKey) int {
		if a.area != b.area {
			return int(a.area) - int(b.area)
		}
		return a.start - b.start
	})
	changed := false
	for _, key := range keys {
		f := c.suspect[key]
		if !f.confirmed {
			continue
		}
		if c.pollOK == 0 {
			f.confirmed = false // the device refused everything: wait for a poll that reads
			continue
		}
		delete(c.suspect, key)
		read := fmt.Sprintf("%s %d+%d", key.area.short(), key.start, key.count)
		newCuts := 0
		for _, at := range f.cuts {
			if c.cut.add(key.area, at) {
				newCuts++
			}
		}
		for _, k := range f.holes {
			c.holes[k] = f.holeErr[k]
			c.log.Warn("tag unreadable", "tag", c.tags[k].Name, "area", key.area.String(), "address", c.tags[k].Address,
				"err", errors.Unwrap(f.holeErr[k]))
		}
		if f.limit > 0 {
			if key.area.Bits() && f.limit < c.lim.MaxBits {
				c.lim.MaxBits = f.limit
				c.log.Info("learned max read size", "area", key.area.String(), "max_bits", f.limit)
			} else if !key.area.Bits() && f.limit < c.lim.MaxRegisters {
				c.lim.MaxRegisters = f.limit
				c.log.Info("learned max read size", "area", key.area.String(), "max_registers", f.limit)
			}
		}
		c.changes++
		changed = true
		c.planWhy = fmt.Sprintf("the device refused %s on polls %d and %d the same way (%v)", read, f.poll, c.polls, f.refusal)
		c.log.Info("request split", "read", read, "err", f.refusal, "new_cuts", newCuts, "unreadable_tags", len(f.holes),
			"first_refused_poll", f.poll)
	}
	return changed
}

// degraded reports whether the plan differs from the configured one.
func (c *core) degraded() bool {
	if len(c.holes) > 0 || c.lim != c.baseLim || len(c.plan) != len(c.base) {
		return true
	}
	for i := range c.plan {
		if keyOf(&c.plan[i]) != keyOf(&c.base[i]) {
			return true
		}
	}
	return false
}

// unlearn asks the device each configured read that the plan splits;
// one answered whole forgets the cuts inside it, the holes among its tags
// and a read limit below its length. It reports whether anything was
// forgotten; an error is a read that got no answer.
func (c *core) unlearn(ctx context.Context, retries int) (bool, error) {
	inPlan := make(map[reqKey]bool, len(c.plan))
	for i := range c.plan {
		inPlan[keyOf(&c.plan[i])] = true
	}
	changed := false
	for i := range c.base {
		r := &c.base[i]
		if inPlan[keyOf(r)] {
			continue
		}
		raw, err := c.read(ctx, r.Area, r.Start, r.Count, retries)
		if err != nil {
			var fm *FunctionMismatch
			if refused(err) || errors.As(err, &fm) {
				continue
			}
			return changed, fmt.Errorf("read %s %d+%d: %w", r.Area.short(), r.Start, r.Count, err)
		}
		c.decode(r, raw, time.Now().UnixMilli())
		end := r.Start + r.Count - 1
		c.cut[r.Area] = slices.DeleteFunc(c.cut[r.Area], func(at int) bool { return at > r.Start && at <= end })
		for _, k := range r.Tags {
			delete(c.holes, k)
		}
		if r.Area.Bits() {
			c.lim.MaxBits = max(c.lim.MaxBits, min(r.Count, c.baseLim.MaxBits))
		} else {
			c.lim.MaxRegisters = max(c.lim.MaxRegisters, min(r.Count, c.baseLim.MaxRegisters))
		}
		c.changes++
		changed = true
		read := fmt.Sprintf("%s %d+%d", r.Area.short(), r.Start, r.Count)
		c.planWhy = "the device answered " + read + " whole again"
		c.log.Info("refused read answered whole; what split it is forgotten", "read", read)
	}
	return changed, nil
}

// reportPlan logs a change of the plan's size against the configured
// plan's, after a replan: at warn with the reason when the plan needs more
// requests than the configuration's ranges, at info when it is back.
func (c *core) reportPlan() {
	n := len(c.plan)
	if n == c.reported {
		return
	}
	switch {
	case n > len(c.base):
		c.log.Warn("read plan degraded", "requests", n, "configured_requests", len(c.base), "unreadable_tags", len(c.holes),
			"why", c.planWhy)
	case c.reported > len(c.base):
		c.log.Info("read plan restored", "requests", n, "configured_requests", len(c.base), "why", c.planWhy)
	}
	c.reported = n
}

// markBad reports the tags of r bad because of err.
func (c *core) markBad(r *Request, err error, now int64) {
	for _, k := range r.Tags {
		c.samples[k] = mapping.Sample{Tag: c.specs[k], Quality: mapping.Bad, TimeMs: now, Err: err}
	}
}
