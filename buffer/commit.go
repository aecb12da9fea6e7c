package buffer

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// freeBytes is the space available to an unprivileged writer in dir's
// file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// pageOutEvery is how many bytes are written to or read from the store
// between two pageOut calls: what Badger's mmaps may add to the RSS before
// it is dropped, times the write amplification of compactions.
const pageOutEvery = 4 << 20

// run is the one goroutine that writes: group commits of appends and
// deletes, syncs, cap enforcement and value-log GC. It wakes only when
// there is work: an append or an ack (kick), a staged batch falling due,
// a retry while work is left (every CommitInterval), and the once-a-
// second upkeep; an idle queue costs a wakeup a second.
func (q *Queue) run() {
	defer close(q.stopped)
	wake := time.NewTimer(time.Hour) // the next commit while work is left
	wake.Stop()
	defer wake.Stop()
	gather := time.NewTimer(time.Hour) // lets a batch gather after a kick
	gather.Stop()
	defer gather.Stop()
	syncTick := time.NewTicker(q.opts.SyncInterval)
	defer syncTick.Stop()
	maint := time.NewTicker(q.maintEvery())
	defer maint.Stop()
	started, lastGC := time.Now(), time.Now()
	var lastSynced uint64
	q.maintain()
	arm := func() {
		if d, ok := q.nextWake(); ok {
			wake.Reset(d)
		} else {
			wake.Stop()
		}
	}
	for {
		q.beat.Store(time.Now().UnixNano())
		if q.touched.Load() >= pageOutEvery {
			q.touched.Store(0)
			pageOut(q.opts.Dir)
		}
		select {
		case <-q.stop:
			q.mu.Lock()
			q.dirty = true // the state records the next sequence number
			q.mu.Unlock()
			q.commitOnce(true)
			q.ifOpen(func(db *badger.DB) { _ = db.Sync() })
			q.durable.Store(q.committed.Load())
			q.mu.Lock()
			q.starts = 0 // a clean stop
			q.clean = true
			q.flushLossLogLocked(true)
			q.mu.Unlock()
			q.writeMark()
			_ = q.mark.close()
			return
		case f := <-q.flushes:
			q.commitOnce(f.all)
			close(f.done)
			arm()
		case <-q.kick:
			// Let a batch gather (see gatherFor).
			gather.Reset(q.gatherFor())
			select {
			case <-gather.C:
			case <-q.stop:
			case f := <-q.flushes:
				q.commitOnce(f.all)
				close(f.done)
			}
			gather.Stop()
			q.commitOnce(false)
			arm()
		case <-wake.C:
			q.commitOnce(false)
			arm()
		case <-syncTick.C:
			if c := q.committed.Load(); c != lastSynced && q.opts.Sync == SyncInterval {
				var err error
				q.ifOpen(func(db *badger.DB) { err = db.Sync() }) // a closed store was synced by its Close
				if err == nil {
					q.durable.Store(c)
					lastSynced = c
				}
			}
			_ = q.mark.sync()
		case <-maint.C:
			q.maintain()
			q.writeMark()
			if q.disk.Load() == 0 || q.touched.Load() != 0 || q.diskFull || q.atCap {
				q.measureDisk() // unchanged while nothing is written
			}
			if q.starts > 0 && time.Since(started) >= surviveAfter {
				q.mu.Lock()
				q.starts = 0 // this start survived
				q.mu.Unlock()
			}
			if time.Since(lastGC) >= 5*time.Minute { // value-log GC
				lastGC = time.Now()
				q.ifOpen(func(db *badger.DB) {
					for db.RunValueLogGC(0.5) == nil {
					}
				})
			}
			q.closeIfIdle()
			arm()
		}
	}
}

// stagedGather is how long appends gather before a commit that stages
// them in memory (WriteDelay): such a commit writes nothing, so it is
// cheap, and what it makes readable is what the uplink sends live. One
// millisecond still takes a poll's burst of messages (every device's,
// or every tag's) in one commit.
const stagedGather = time.Millisecond

// gatherFor is how long a commit waits after the first append for more:
// CommitInterval when the batch goes to the store at once, so that a
// burst becomes one write, and stagedGather when it is staged in memory.
func (q *Queue) gatherFor() time.Duration {
	if q.opts.WriteDelay > 0 {
		return min(q.opts.CommitInterval, stagedGather)
	}
	return q.opts.CommitInterval
}

// nextWake says when the writer must commit again on its own, if at all:
// soon while something waits (appends, a state to write, segments to
// remove, a paused write to retry), when the first staged batch falls due,
// else not until something happens.
func (q *Queue) nextWake() (time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) > q.pendFrom || q.dirty || q.atCap || len(q.drops) > 0 {
		return q.opts.CommitInterval, true
	}
	var due time.Time
	for _, b := range q.mem {
		if b.staged && (due.IsZero() || b.due.Before(due)) {
			due = b.due
		}
	}
	if due.IsZero() {
		return 0, false
	}
	return max(time.Until(due), q.opts.CommitInterval), true
}

// maintEvery is the upkeep's period: a second, or less when the stuck
// writer is to be noticed sooner (tests): each turn takes the queue's
// lock, which is what Alive watches.
func (q *Queue) maintEvery() time.Duration { return min(time.Second, q.stuckAfter()/4) }

// surviveAfter is how long a start must run before it counts as survived
// (see mark.starts): longer than it takes a damage to crash Badger in its
// first compactions.
const surviveAfter = 30 * time.Second

// commitOnce runs one group commit (see commitBatches) and then removes
// the segments that are wholly delivered or dropped.
func (q *Queue) commitOnce(all bool) {
	q.commitBatches(all)
	if err := q.dropSegments(all); err != nil {
		q.log.Warn("buffer: removing delivered segments failed; retried", "dir", q.opts.Dir, "err", err)
	}
	q.mu.Lock()
	if q.roomDisk > 0 {
		if disk := q.measureDisk(); disk >= q.roomDisk {
			q.roomStuck = true
			q.log.Warn("buffer disk full and dropping the oldest stored messages freed no space: the newest waiting are dropped instead",
				"dir", q.opts.Dir, "disk_bytes", disk)
		}
		q.roomDisk = 0
	}
	q.mu.Unlock()
	q.writeMark()
}

// commitBatches runs one group commit: the pending appends become readable
// (written now, or staged in memory for Options.WriteDelay), staged batches
// that are due are written without what was acknowledged meanwhile, and
// the state (the oldest entry and the delivered ranges) is written if it
// changed. all writes staged batches even when they are not due (Flush,
// Close).
func (q *Queue) commitBatches(all bool) {
	now := time.Now()
	q.mu.Lock()
	if len(q.pending) == q.pendFrom && !q.dirty && !q.stagedDueLocked(now, all) {
		q.mu.Unlock()
		return
	}
	if !q.spaceOKLocked() {
		state := q.roomLocked()
		q.trimPendingLocked()
		q.mu.Unlock()
		q.writeState(state)
		return
	}
	if q.atCap && !q.capClearedLocked() {
		q.trimPendingLocked()
		state := q.takeStateLocked()
		q.mu.Unlock()
		q.writeState(state)
		return
	}
	pending := q.pending[q.pendFrom:]
	buf := q.pendBuf
	q.pending, q.pendBuf, q.pendFrom = nil, nil, 0
	fresh := q.cutBatches(pending, buf)
	if q.opts.WriteDelay > 0 && !all && len(fresh) > 0 {
		for _, b := range fresh {
			b.staged, b.due = true, now.Add(q.opts.WriteDelay)
			q.addBatchLocked(b)
		}
		fresh = nil
	}
	// Due staged batches, oldest first, without their entries acked by
	// now (empty slots). An ack that arrives while they are written finds
	// them stored (written ≥ its seq) and marks the state dirty for the
	// next commit.
	vals := q.wbuf[:0]
	var puts []put
	var settled uint64
	var due []*batch
	pl := q.placerLocked()
	excess := q.stagedBytesLocked() - q.maxStaged() // written early, oldest first
	for _, b := range q.mem {
		if !b.staged || (!all && now.Before(b.due) && excess <= 0) {
			continue
		}
		excess -= b.size
		var p put
		vals, p = q.encodeLocked(vals, b, &pl)
		if p.key.n > 0 {
			puts = append(puts, p)
		}
		b.staged = false
		settled += uint64(len(b.vals))
		q.written = b.last() + 1
		due = append(due, b)
	}
	writtenBefore := q.written - settled
	for _, b := range fresh {
		var p put
		vals, p = q.encodeLocked(vals, b, &pl)
		puts = append(puts, p)
	}
	if len(puts) > 0 && hasEmptySlots(puts) {
		q.dirty = true // the state records the empty slots
	}
	storedEnd := q.storedEnd
	for _, p := range puts {
		if p.key.first > storedEnd {
			// The entries between were delivered or dropped before they
			// were stored: the state says so, or a restart would take
			// the gap for a damage.
			q.dirty = true
		}
		storedEnd = p.key.last + 1
	}
	state := q.takeStateLocked()
	q.mu.Unlock()

	// The disk budget: the batches wait (in memory) while writing them
	// could take the store past MaxBytes, with room for what Badger does
	// with them (a memtable's flush writes its table before it deletes its
	// write-ahead file, a level-0 compaction its output before its input).
	capped := len(puts) > 0 && q.measureDisk()+int64(len(vals))+q.capMargin() > q.opts.MaxBytes
	var err error
	if capped {
		q.writeState(state)
	} else if len(puts) > 0 || state != nil {
		err = q.write(state, puts, vals)
		n := int64(len(vals) + len(state) + batchKeyLen*(len(vals)/pageBytes+len(puts)))
		q.touched.Add(n)
	}
	q.wbuf = vals[:0]

	q.mu.Lock()
	defer q.mu.Unlock()
	if capped || err != nil {
		// Put the batches back in front of what arrived meanwhile: retried
		// on the next tick, or held while the store is at its cap.
		if err != nil {
			q.writeFailedLocked(err, state)
		} else {
			q.setAtCapLocked(true)
		}
		for _, b := range due {
			b.staged = true
		}
		if len(due) > 0 {
			q.written = writtenBefore
		}
		if len(fresh) > 0 { // not staged: they were not made readable
			// What arrived meanwhile (less what was dropped meanwhile) goes
			// after them, its offsets moved past their bytes.
			shift := len(buf)
			later := q.pending[q.pendFrom:]
			for i := range later {
				later[i].off += shift
				later[i].end += shift
			}
			q.pendBuf = append(buf, q.pendBuf...)
			q.pending, q.pendFrom = append(pending[:len(pending):len(pending)], later...), 0
			if capped {
				q.trimPendingLocked()
			}
		}
		return
	}
	for _, p := range puts {
		q.writtenN.Add(uint64(p.key.n))
		q.storedLocked(p)
	}
	if !capped {
		q.storedEnd = storedEnd
		q.savedLocked(state)
	}
	if settled > 0 {
		q.committed.Add(settled)
	}
	for _, b := range fresh {
		q.addBatchLocked(b)
		q.written = q.commit
		q.committed.Add(uint64(len(b.vals)))
	}
	if q.opts.Sync == SyncAlways {
		q.durable.Store(q.committed.Load())
	}
	if q.bytes > q.opts.LiveBytes() {
		q.evictLocked(0)
	}
}

// placer assigns the batches of one group commit to segments: the last
// stored segment while it has room, then new ones.
type placer struct {
	seg   uint32
	bytes int64 // in seg
	open  bool  // seg may take more
	max   int64
}

func (q *Queue) placerLocked() placer {
	p := placer{seg: q.segNext, max: q.opts.segmentBytes()}
	if n := len(q.segs); n > 0 && q.segs[n-1].bytes < p.max {
		p.seg, p.bytes, p.open = q.segs[n-1].id, q.segs[n-1].bytes, true
	}
	return p
}

func (p *placer) place(size int64) uint32 {
	if !p.open || p.bytes >= p.max {
		if p.open {
			p.seg++
		}
		p.bytes, p.open = 0, true
	}
	p.bytes += size
	return p.seg
}

// storedLocked records a written batch in its segment.
func (q *Queue) storedLocked(p put) {
	size := int64(p.end - p.off)
	if n := len(q.segs); n > 0 && q.segs[n-1].id == p.key.seg {
		q.segs[n-1].last = p.key.last
		q.segs[n-1].bytes += size
		return
	}
	q.segs = append(q.segs, segment{id: p.key.seg, first: p.key.first, last: p.key.last, bytes: size})
	q.segNext = p.key.seg + 1
}

// stuckAfter is how long the writer may go without a turn of its loop
// (it takes one at least every CommitInterval) before Alive reports it
// stuck: longer than any compaction or segment removal it waits for.
const stuckAfter = 2 * time.Minute

// Alive reports an error when the writer has been stuck for stuckAfter:
// no group commit, no fsync, nothing written. The daemon then withholds
// systemd's watchdog keep-alive, which restarts it.
func (q *Queue) Alive() error {
	select {
	case <-q.stopped: // closed: nothing to watch
		return nil
	default:
	}
	if age := time.Duration(time.Now().UnixNano() - q.beat.Load()); age > q.stuckAfter() {
		return fmt.Errorf("buffer %s: writer stuck for %v", q.opts.Dir, age.Round(time.Second))
	}
	return nil
}

func (q *Queue) stuckAfter() time.Duration {
	if q.opts.stuckAfter > 0 {
		return q.opts.stuckAfter
	}
	return stuckAfter
}

// dropEvery spaces the removals of delivered segments: each one flushes
// Badger's memtable (a small level-0 table) and compacts level 0. Removed
// segments wait at most this long, or until they hold two segments' worth
// of bytes (a flood evicting as fast as it writes).
const dropEvery = 200 * time.Millisecond

// dropSegments removes the segments whose entries are all delivered or
// dropped: Badger deletes their tables. now skips the spacing (Flush,
// Close, at the cap).
func (q *Queue) dropSegments(now bool) error {
	q.mu.Lock()
	for i := 0; i < len(q.segs); {
		if sg := q.segs[i]; sg.last < q.savedOldest || q.savedAcked.containsRange(sg.first, sg.last) {
			q.drops = append(q.drops, sg)
			q.segs = append(q.segs[:i], q.segs[i+1:]...)
			continue
		}
		i++
	}
	drops := append([]segment(nil), q.drops...)
	now = now || q.atCap || q.diskFull
	full := q.diskFull
	q.mu.Unlock()
	if full && len(drops) > 0 && !q.roomToFlush() {
		return nil // removing flushes a memtable: not without room for it
	}
	var dead int64
	for _, sg := range drops {
		dead += sg.bytes
	}
	if len(drops) == 0 || (!now && dead < 2*q.opts.segmentBytes() && time.Since(q.lastDrop) < dropEvery) {
		return nil
	}
	prefixes := make([][]byte, len(drops))
	for i, sg := range drops {
		prefixes[i] = segPrefix(nil, sg.id)
	}
	db, release, err := q.store()
	if err == nil {
		err = db.DropPrefix(prefixes...)
		release()
	}
	q.lastDrop = time.Now()
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.drops = q.drops[len(drops):]
	q.mu.Unlock()
	q.touched.Add(q.opts.MemTableSize) // the flush and level-0 compaction it forces
	return nil
}

// takeStateLocked returns the state to write if it changed, else nil.
func (q *Queue) takeStateLocked() []byte {
	if !q.dirty {
		return nil
	}
	q.dirty = false
	return encodeState(nil, q.oldest, q.nextSeq, q.acked)
}

// writeState writes the state alone (while the store is at its cap).
func (q *Queue) writeState(state []byte) {
	if state == nil {
		return
	}
	err := q.write(state, nil, nil)
	q.mu.Lock()
	if err != nil {
		q.writeFailedLocked(err, state)
	} else {
		q.savedLocked(state)
	}
	q.mu.Unlock()
}

// savedLocked records what a written state says: segments are removed
// only once a state that has them delivered is written (else a crash in
// between would leave a state expecting them, and the restart would count
// them as lost to a damage).
func (q *Queue) savedLocked(state []byte) {
	if state == nil {
		return
	}
	if oldest, _, acked, err := decodeState(state); err == nil {
		q.savedOldest, q.savedAcked = oldest, acked
	}
}

// writeFailedLocked counts a failed write and has its state written again.
func (q *Queue) writeFailedLocked(err error, state []byte) {
	q.writeErrs.Add(1)
	if q.writeErrs.Load() == 1 || !q.diskFull {
		q.log.Error("buffer write failed; retrying", "dir", q.opts.Dir, "err", err)
	}
	q.dirty = q.dirty || state != nil
}

// capMargin is the room kept below MaxBytes for Badger's flushes and
// level-0 compactions.
func (q *Queue) capMargin() int64 { return 4 * q.opts.MemTableSize }

// capClearedLocked tells whether a store at its cap has room again (an
// eighth of MaxBytes, so that writing does not stop and start by turns).
func (q *Queue) capClearedLocked() bool {
	pend := int64(len(q.pendBuf))
	if len(q.pending) > q.pendFrom {
		pend -= int64(q.pending[q.pendFrom].off)
	}
	if q.measureDisk()+pend+q.capMargin()+q.opts.MaxBytes/8 > q.opts.MaxBytes {
		return false
	}
	q.setAtCapLocked(false)
	return true
}

func (q *Queue) setAtCapLocked(at bool) {
	if at == q.atCap {
		return
	}
	q.atCap = at
	if at {
		q.log.Warn("buffer reached max_bytes on disk: writes wait for a compaction, new messages are held in memory (oldest dropped beyond memory_bytes)",
			"dir", q.opts.Dir, "max_bytes", q.opts.MaxBytes, "disk_bytes", q.disk.Load(), "messages_bytes", q.bytes)
	} else {
		q.log.Info("buffer back under max_bytes on disk: writes resumed", "dir", q.opts.Dir, "disk_bytes", q.disk.Load())
	}
}

// cutBatches cuts committed appends into batches of at most batchBytes.
func (q *Queue) cutBatches(pending []pendingEntry, buf []byte) []*batch {
	var out []*batch
	limit := q.opts.batchBytes()
	for len(pending) > 0 {
		n, size := 0, 0
		for n < len(pending) && (n == 0 || size+pending[n].end-pending[n].off <= limit) {
			size += pending[n].end - pending[n].off
			n++
		}
		b := &batch{first: pending[0].seq, vals: make([][]byte, n), size: int64(size)}
		for i, p := range pending[:n] {
			b.vals[i] = buf[p.off:p.end:p.end]
		}
		out = append(out, b)
		pending = pending[n:]
	}
	return out
}

// put is one batch to store: its key and its value, vals[off:end].
type put struct {
	key      batchKey
	b        *batch
	off, end int
}

// encodeLocked appends the stored value of b to vals: its entries not
// acknowledged or dropped by now.
func (q *Queue) encodeLocked(vals []byte, b *batch, pl *placer) ([]byte, put) {
	p := put{key: batchKey{first: b.first, last: b.last()}, b: b, off: len(vals)}
	for i, v := range b.vals {
		seq := b.first + uint64(i)
		if v == nil || seq < q.oldest || q.acked.contains(seq) {
			vals = appendRecord(vals, nil)
			continue
		}
		vals = appendRecord(vals, v)
		p.key.n++
		p.key.bytes += uint32(entryOverhead + len(v))
	}
	p.end = len(vals)
	p.key.pages = uint16(pagesFor(p.end - p.off))
	if p.key.n > 0 {
		p.key.seg = pl.place(int64(p.end - p.off))
	}
	return vals, p
}

func hasEmptySlots(puts []put) bool {
	for _, p := range puts {
		if uint64(p.key.n) != p.key.last-p.key.first+1 {
			return true
		}
	}
	return false
}

// stagedDueLocked reports whether a staged batch must be written now: it
// is due, or the staged batches not yet delivered hold more than
// maxStaged (an uplink that is down or far behind a flood: what it has
// not acknowledged goes to disk sooner rather than the memory growing
// with WriteDelay × the message rate).
func (q *Queue) stagedDueLocked(now time.Time, all bool) bool {
	for _, b := range q.mem {
		if b.staged && (all || !now.Before(b.due)) {
			return true
		}
	}
	return q.stagedBytesLocked() > q.maxStaged()
}

// maxStaged bounds the undelivered staged bytes: twice MemoryBytes, above
// what an uplink that keeps up has in flight (at 50,000 messages/s of 110
// bytes a 500 ms delay stages ~3 MB), and small next to the daemon's soft
// memory limit, near which the Go collector would take the CPU the uplink
// needs to catch up.
func (q *Queue) maxStaged() int64 { return 2 * q.opts.MemoryBytes }

// stagedBytesLocked is what the staged batches not wholly delivered hold.
func (q *Queue) stagedBytesLocked() int64 {
	var n int64
	for _, b := range q.mem {
		if b.staged && !q.acked.containsRange(b.first, b.last()) {
			n += b.size
		}
	}
	return n
}

// addBatchLocked makes a batch readable and trims older memory batches
// beyond MemoryBytes (never a staged one: it is not on disk yet).
func (q *Queue) addBatchLocked(b *batch) {
	for i, v := range b.vals {
		if v != nil {
			q.depth++
			q.bytes += int64(entryOverhead + len(v))
		} else {
			q.acked.add(b.first + uint64(i))
		}
	}
	q.commit = b.last() + 1
	q.mem = append(q.mem, b)
	q.memBytes += b.size
	for len(q.mem) > 1 && q.memBytes > q.opts.MemoryBytes && !q.mem[0].staged {
		q.memBytes -= q.mem[0].size
		q.mem[0] = nil
		q.mem = q.mem[1:]
	}
	close(q.notify)
	q.notify = make(chan struct{})
}

// write stores one group commit: the state first (it records the empty
// slots of the batches that follow), then the batches. A crash between
// them leaves a state that is behind, never ahead.
func (q *Queue) write(state []byte, puts []put, vals []byte) error {
	db, release, err := q.store()
	if err != nil {
		return err
	}
	defer release()
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	if state != nil {
		if err := wb.Set(stateKey, state); err != nil {
			return err
		}
	}
	for _, p := range puts {
		k := p.key
		for k.page = 0; k.page < k.pages; k.page++ {
			off := p.off + int(k.page)*pageBytes
			if err := wb.Set(k.append(nil), vals[off:min(off+pageBytes, p.end)]); err != nil {
				return err
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	if q.opts.Sync == SyncAlways {
		return db.Sync()
	}
	return nil
}

// spaceOKLocked checks the free space before a write: Badger writes
// through mmap, where a full file system is a SIGBUS rather than an error.
func (q *Queue) spaceOKLocked() bool {
	free, err := q.freeSpace(q.opts.Dir)
	ok := err != nil || free >= q.opts.MinFreeBytes
	if !ok && !q.diskFull && !q.fullLogged {
		// Logged once until the disk has room again: while the buffer
		// makes room by dropping its oldest, writes pause and resume by
		// turns.
		q.fullLogged = true
		q.log.Error("buffer disk nearly full: writes paused until the oldest stored messages are dropped to make room (or space frees); new messages held in memory meanwhile",
			"dir", q.opts.Dir, "free_bytes", free, "needed_bytes", q.opts.MinFreeBytes)
	}
	if ok && q.diskFull && free >= 2*q.opts.MinFreeBytes {
		q.roomDisk, q.roomStuck = 0, false
	}
	if ok && q.fullLogged && free >= 2*q.opts.MinFreeBytes {
		q.fullLogged = false
		q.log.Info("buffer disk has space again", "dir", q.opts.Dir, "free_bytes", free)
	}
	q.diskFull = !ok
	return ok
}

// roomLocked applies the max_bytes policy to a full disk: the oldest
// stored segment is dropped (and counted), so that its tables are deleted
// and the newest messages, waiting in memory, can be written. It returns
// the state to write (before the segment is removed). It does nothing
// while what waits is small (the disk may free by itself), when there is
// only the segment being written, when there is too little room even to
// flush a memtable (Badger writes through mmap, where a full disk is a
// SIGBUS), or when the last drop freed nothing: then the oldest of the
// waiting messages are dropped instead (trimPendingLocked).
func (q *Queue) roomLocked() []byte {
	if q.pendFrom == len(q.pending) || len(q.segs) < 2 || q.roomStuck {
		return nil
	}
	waiting := int64(len(q.pendBuf) - q.pending[q.pendFrom].off)
	free, err := q.freeSpace(q.opts.Dir)
	if waiting < q.opts.MemoryBytes/4 || err != nil || free < 2*q.opts.MemTableSize {
		return nil
	}
	q.roomDisk = q.measureDisk() // compared once the segments are removed (commitOnce)
	// As many of the oldest segments as give the room writing needs
	// (MinFreeBytes) and what waits; never the one being written.
	need := q.opts.MinFreeBytes - free + waiting
	last := q.segs[0].last
	for i, got := 0, int64(0); i < len(q.segs)-1 && got < need; i++ {
		got += q.segs[i].bytes
		last = q.segs[i].last
	}
	n := 0
	q.walkStoredLocked(func(seq uint64, raw []byte) bool {
		if seq > last {
			return false
		}
		q.acked.add(seq)
		q.depth--
		q.bytes -= int64(entryOverhead + len(raw))
		q.dropped.Add(1)
		n++
		return true
	})
	if n == 0 {
		return nil
	}
	q.dirty = true
	q.advanceOldestLocked()
	q.droppingLocked("disk full", uint64(n))
	return q.takeStateLocked()
}

// roomToFlush reports whether the file system has room for Badger to
// flush a memtable (what removing a segment does first).
func (q *Queue) roomToFlush() bool {
	free, err := q.freeSpace(q.opts.Dir)
	return err == nil && free >= 2*q.opts.MemTableSize
}

// walkStoredLocked calls fn for the live stored entries from the oldest
// on, in order, until fn returns false. It reads the stored batches
// through q.head, which keeps the oldest one between calls.
func (q *Queue) walkStoredLocked(fn func(seq uint64, raw []byte) bool) {
	from := q.oldest
	for from < q.written {
		if !q.head.holds(from) {
			if n := q.acked.skip(from); n != from {
				from = n
				continue
			}
			seg, ok := segFor(q.segs, from)
			found := false
			var bad *batchKey
			var err error
			var db *badger.DB
			release := func() {}
			if ok { // a closed store holds no segment: not opened for nothing
				db, release, err = q.store()
			}
			if ok && err == nil {
				err = db.View(func(txn *badger.Txn) error {
					var err error
					found, bad, err = loadAt(txn, seg, from, q.written-1, &q.head)
					return err
				})
				release()
			}
			if bad != nil {
				// Damaged: skipped and counted (see loseLocked).
				q.loseLocked(bad.first, bad.last, err)
				from = max64(bad.last+1, q.oldest)
				continue
			}
			if err != nil {
				q.log.Error("buffer: reading the oldest stored batch failed", "dir", q.opts.Dir, "from", from, "err", err)
				q.head.val = nil
				return
			}
			stop := q.written
			if found {
				stop = min(q.head.key.first, q.written)
			}
			if stop > from {
				// Stored entries that are not where they must be.
				q.loseLocked(from, stop-1, errVanished)
				from = max64(stop, q.oldest)
			}
			if !found {
				q.head.val = nil
				return
			}
			q.touched.Add(int64(len(q.head.val)))
			from = max64(from, q.head.key.first)
		}
		for ; from <= q.head.key.last; from++ {
			raw := q.head.raw(from)
			if raw == nil || q.acked.contains(from) {
				continue
			}
			if !fn(from, raw) {
				return
			}
		}
	}
}

// evictLocked drops the oldest stored entries while the stored bytes are
// over MaxBytes or the oldest was appended before cutoffMs (0: no age
// limit). Stored batches left wholly dropped are deleted by the next
// group commit.
func (q *Queue) evictLocked(cutoffMs int64) {
	n := 0
	reason := "max_age"
	if q.bytes > q.opts.LiveBytes() {
		reason = "max_bytes"
	}
	q.walkStoredLocked(func(seq uint64, raw []byte) bool {
		if q.bytes <= q.opts.LiveBytes() && (cutoffMs <= 0 || int64(binary.BigEndian.Uint64(raw[:8])) >= cutoffMs) {
			return false
		}
		q.acked.add(seq)
		q.depth--
		q.bytes -= int64(entryOverhead + len(raw))
		q.dropped.Add(1)
		n++
		return true
	})
	if n > 0 {
		q.dirty = true
		q.advanceOldestLocked()
		q.kickLocked()
		q.droppingLocked(reason, uint64(n))
	}
}

// maintain enforces MaxAge, refreshes the oldest entry's age, and retries
// writes paused by a full disk.
func (q *Queue) maintain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.opts.MaxAge > 0 {
		q.evictLocked(q.clock().Add(-q.opts.MaxAge).UnixMilli())
	}
	q.flushLossLogLocked(false)
	q.dropQuietLocked()
	if q.fullLogged && !q.diskFull {
		q.spaceOKLocked() // logs when the disk has room again
	}
	q.oldestMs = q.oldestAppendedLocked()
	if q.diskFull {
		q.kickLocked()
	}
}

// oldestAppendedLocked returns when the oldest live entry was appended,
// 0 when there is none.
func (q *Queue) oldestAppendedLocked() int64 {
	var ms int64
	q.walkStoredLocked(func(_ uint64, raw []byte) bool {
		ms = int64(binary.BigEndian.Uint64(raw[:8]))
		return false
	})
	if ms != 0 {
		return ms
	}
	for _, b := range q.mem {
		for i, v := range b.vals {
			if seq := b.first + uint64(i); v != nil && seq >= q.oldest && !q.acked.contains(seq) {
				return int64(binary.BigEndian.Uint64(v[:8]))
			}
		}
	}
	return 0
}

// measureDisk returns (and keeps for Stats) the store's disk use: the
// blocks its files take.
func (q *Queue) measureDisk() int64 {
	ents, err := os.ReadDir(q.opts.Dir)
	if err != nil {
		return q.disk.Load()
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += int64(st.Blocks) * 512
			} else {
				n += fi.Size()
			}
		}
	}
	q.disk.Store(n)
	return n
}
