package buffer

import (
	"time"
)

// lossLogEvery spaces the log lines about damage found while reading: a
// damaged table can hold many batches, and each is found on its own.
const lossLogEvery = 10 * time.Second

// lossLog gathers the damaged batches found while reading into one log
// line per lossLogEvery.
type lossLog struct {
	last    time.Time
	n       uint64 // lost since the last line
	batches int
	lo, hi  uint64 // the sequence numbers they spanned
	err     error
}

// loseLocked records the stored entries lo..hi that cannot be read (a
// damaged batch, or batches that vanished from a damaged table) as lost:
// those not delivered or dropped already are counted in LostDamaged and
// skipped from now on, so that a damage never stops delivery of what
// follows it. It returns how many it counted.
func (q *Queue) loseLocked(lo, hi uint64, err error) uint64 {
	lo = max64(lo, q.oldest)
	hi = min(hi, q.written-1)
	if q.written == 0 || lo > hi {
		return 0
	}
	n := hi - lo + 1 - q.acked.countIn(lo, hi)
	if n == 0 {
		return 0
	}
	// The sizes of unreadable entries are not known: they take their
	// share of the average.
	if q.depth > 0 {
		q.bytes -= q.bytes / q.depth * int64(min(n, uint64(q.depth)))
		q.depth -= int64(min(n, uint64(q.depth)))
	}
	if q.depth == 0 {
		q.bytes = 0
	}
	q.acked.addRange(lo, hi)
	q.lostDamaged.Add(n)
	q.dirty = true
	q.advanceOldestLocked()
	q.kickLocked()
	l := &q.lossLog
	if l.n == 0 {
		l.lo = lo
	}
	l.n += n
	l.batches++
	l.hi = hi
	l.err = err
	q.flushLossLogLocked(false)
	return n
}

// flushLossLogLocked logs the damage gathered, at most every
// lossLogEvery unless force.
func (q *Queue) flushLossLogLocked(force bool) {
	l := &q.lossLog
	if l.n == 0 || (!force && time.Since(l.last) < lossLogEvery) {
		return
	}
	q.log.Error("buffer: damaged stored messages skipped and counted as lost", "dir", q.opts.Dir,
		"lost", l.n, "batches", l.batches, "first", l.lo, "last", l.hi, "err", l.err)
	*l = lossLog{last: time.Now()}
}

// dropQuiet is how long no message must be dropped before dropping is
// reported as stopped.
const dropQuiet = 10 * time.Second

// dropLog reports when the caps or a full disk start dropping messages,
// and when they stop, each once per episode (the counter says how many).
type dropLog struct {
	on     bool
	since  time.Time
	last   time.Time
	base   uint64 // Dropped when the episode started
	reason string
}

// droppingLocked notes that n entries were just dropped for reason.
func (q *Queue) droppingLocked(reason string, n uint64) {
	d := &q.dropping
	now := time.Now()
	d.last = now
	if d.on {
		return
	}
	d.on, d.since, d.reason = true, now, reason
	d.base = q.dropped.Load() - n
	q.log.Warn("buffer: dropping messages, the oldest first (counted in edged_uplink_buffer_dropped_total)",
		"dir", q.opts.Dir, "reason", reason)
}

// dropQuietLocked ends the episode once nothing was dropped for
// dropQuiet.
func (q *Queue) dropQuietLocked() {
	d := &q.dropping
	quiet := dropQuiet
	if q.opts.dropQuiet > 0 {
		quiet = q.opts.dropQuiet
	}
	if !d.on || time.Since(d.last) < quiet {
		return
	}
	q.log.Warn("buffer: stopped dropping messages", "dir", q.opts.Dir, "reason", d.reason,
		"dropped", q.dropped.Load()-d.base, "for", d.last.Sub(d.since).Round(time.Second).String())
	d.on = false
}

// markLocked is the mark to write now: what was accepted, and how many
// of those are live (stored, staged or waiting: neither delivered nor
// dropped).
func (q *Queue) markLocked() mark {
	live := uint64(max(q.depth, 0)) + uint64(len(q.pending)-q.pendFrom)
	return mark{accepted: q.nextSeq, live: live, starts: q.starts, clean: q.clean}
}

// writeMark writes the mark if it changed (the writer's).
func (q *Queue) writeMark() {
	if q.mark == nil {
		return
	}
	q.mu.Lock()
	m := q.markLocked()
	q.mu.Unlock()
	if err := q.mark.write(m); err != nil {
		q.log.Warn("buffer: cannot write its mark file; a crash's losses will not be counted", "dir", q.opts.Dir, "err", err)
		_ = q.mark.close()
		q.mark = nil
	}
}
