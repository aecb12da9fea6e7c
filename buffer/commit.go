package buffer

import (
	"encoding/binary"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"syscall"
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
// deletes, syncs, cap enforcement and value-log GC.
func (q *Queue) run() {
	defer close(q.stopped)
	commitTick := time.NewTicker(q.opts.CommitInterval)
	defer commitTick.Stop()
	syncTick := time.NewTicker(q.opts.SyncInterval)
	defer syncTick.Stop()
	maint := time.NewTicker(time.Second)
	defer maint.Stop()
	gcEvery := 0
	var lastSynced uint64
	q.maintain()
	for {
		if q.touched.Load() >= pageOutEvery {
			q.touched.Store(0)
			pageOut(q.opts.Dir)
		}
		if q.sinceDisk.Load() >= q.opts.MemTableSize/2 {
			q.checkDisk()
		}
		select {
		case <-q.stop:
			q.compacting.Wait()
			q.commitOnce(true)
			_ = q.db.Sync()
			q.durable.Store(q.committed.Load())
			return
		case f := <-q.flushes:
			q.commitOnce(f.all)
			close(f.done)
		case <-q.kick:
			// Let a batch gather for at most one commit interval.
			select {
			case <-commitTick.C:
			case <-q.stop:
			case f := <-q.flushes:
				q.commitOnce(f.all)
				close(f.done)
			}
			q.commitOnce(false)
		case <-commitTick.C:
			q.commitOnce(false)
		case <-syncTick.C:
			if c := q.committed.Load(); c != lastSynced && q.opts.Sync == SyncInterval {
				if err := q.db.Sync(); err == nil {
					q.durable.Store(c)
					lastSynced = c
				}
			}
		case <-maint.C:
			q.maintain()
			q.checkDisk()
			if gcEvery++; gcEvery >= 300 { // value-log GC every 5 minutes
				gcEvery = 0
				for q.db.RunValueLogGC(0.5) == nil {
				}
			}
		}
	}
}

// commitOnce runs one group commit: the pending appends become readable
// (written now, or staged in memory for Options.WriteDelay), staged batches
// that are due are written without what was acknowledged meanwhile, and
// the pending deletes are written. all writes staged batches even when
// they are not due (Flush, Close).
func (q *Queue) commitOnce(all bool) {
	now := time.Now()
	q.mu.Lock()
	if len(q.pending) == q.pendFrom && len(q.deletes) == 0 && !q.stagedDueLocked(now, all) {
		q.mu.Unlock()
		return
	}
	if !q.spaceOKLocked() {
		q.trimPendingLocked()
		q.mu.Unlock()
		return
	}
	pending := q.pending[q.pendFrom:]
	buf := q.pendBuf
	dels := q.deletes
	q.pending, q.pendBuf, q.pendFrom, q.deletes = nil, nil, 0, nil
	stage := q.opts.WriteDelay > 0 && !all && len(pending) > 0
	if stage {
		q.addBatchLocked(pending, buf, true, now.Add(q.opts.WriteDelay))
		pending, buf = nil, nil
	}
	// Due staged batches, oldest first: their entries not acked yet. Acks
	// that arrive while they are written see written ≥ their seq and
	// queue a delete, which the next commit writes after this one.
	var sets []kv
	var settled uint64
	var due []*batch
	for _, b := range q.mem {
		if !b.staged || (!all && now.Before(b.due)) {
			continue
		}
		for i, v := range b.vals {
			seq := b.first + uint64(i)
			if v != nil && seq >= q.oldest && !q.acked.contains(seq) {
				sets = append(sets, kv{seq, v})
			}
		}
		b.staged = false
		settled += uint64(len(b.vals))
		q.written = b.first + uint64(len(b.vals))
		due = append(due, b)
	}
	writtenBefore := q.written - settled
	q.mu.Unlock()

	for _, p := range pending {
		sets = append(sets, kv{p.seq, buf[p.off:p.end]})
	}
	var err error
	if len(sets) > 0 || len(dels) > 0 {
		err = q.write(sets, dels)
	}
	n := int64(len(buf) + keyLen*(len(sets)+len(dels)))
	for _, s := range sets[:len(sets)-len(pending)] {
		n += int64(len(s.val))
	}
	q.touched.Add(n)
	q.sinceDisk.Add(n)

	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		// Put everything back in front of what arrived meanwhile; retried
		// on the next tick.
		q.writeErrs.Add(1)
		if q.writeErrs.Load() == 1 || !q.diskFull {
			q.log.Error("buffer write failed; retrying", "dir", q.opts.Dir, "err", err)
		}
		for _, b := range due {
			b.staged = true
		}
		if len(due) > 0 {
			q.written = writtenBefore
		}
		shift := len(buf)
		for i := range q.pending {
			q.pending[i].off += shift
			q.pending[i].end += shift
		}
		q.pendBuf = append(buf, q.pendBuf...)
		q.pending = append(pending, q.pending...)
		q.deletes = append(dels, q.deletes...)
		return
	}
	q.writtenN.Add(uint64(len(sets)))
	if settled > 0 {
		q.committed.Add(settled)
	}
	if len(pending) > 0 {
		q.addBatchLocked(pending, buf, false, time.Time{})
		q.written = q.commit
		q.committed.Add(uint64(len(pending)))
	}
	if q.opts.Sync == SyncAlways {
		q.durable.Store(q.committed.Load())
	}
	if q.bytes > q.opts.MaxBytes {
		q.evictLocked(0)
	}
}

// stagedDueLocked reports whether a staged batch must be written now.
func (q *Queue) stagedDueLocked(now time.Time, all bool) bool {
	for _, b := range q.mem {
		if b.staged && (all || !now.Before(b.due)) {
			return true
		}
	}
	return false
}

// addBatchLocked makes pending entries readable as one memory batch and
// trims older memory batches beyond MemoryBytes (never a staged one: it
// is not on disk yet).
func (q *Queue) addBatchLocked(pending []pendingEntry, buf []byte, staged bool, due time.Time) {
	b := &batch{first: pending[0].seq, buf: buf, size: int64(len(buf)), staged: staged, due: due}
	b.vals = make([][]byte, pending[len(pending)-1].seq-b.first+1)
	for _, p := range pending {
		b.vals[p.seq-b.first] = buf[p.off:p.end:p.end]
		q.depth++
		q.bytes += int64(keyLen + p.end - p.off)
	}
	q.commit = pending[len(pending)-1].seq + 1
	q.mem = append(q.mem, b)
	q.memBytes += b.size
	for len(q.mem) > 1 && q.memBytes > q.opts.MemoryBytes && !q.mem[0].staged {
		q.memBytes -= q.mem[0].size
		q.mem = q.mem[1:]
	}
	close(q.notify)
	q.notify = make(chan struct{})
}

// kv is one entry to write.
type kv struct {
	seq uint64
	val []byte
}

// write stores one group commit.
func (q *Queue) write(sets []kv, dels []uint64) error {
	wb := q.db.NewWriteBatch()
	defer wb.Cancel()
	keys := make([]byte, 0, keyLen*(len(sets)+len(dels)))
	for _, e := range sets {
		keys = putKey(keys, e.seq)
		if err := wb.Set(keys[len(keys)-keyLen:], e.val); err != nil {
			return err
		}
	}
	for _, seq := range dels {
		keys = putKey(keys, seq)
		if err := wb.Delete(keys[len(keys)-keyLen:]); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	if q.opts.Sync == SyncAlways {
		return q.db.Sync()
	}
	return nil
}

// spaceOKLocked checks the free space before a write: Badger writes
// through mmap, where a full file system is a SIGBUS rather than an error.
func (q *Queue) spaceOKLocked() bool {
	free, err := q.freeSpace(q.opts.Dir)
	ok := err != nil || free >= q.opts.MinFreeBytes
	if !ok && !q.diskFull {
		q.log.Error("buffer disk nearly full: writes paused, new messages held in memory (oldest dropped beyond memory_bytes)",
			"dir", q.opts.Dir, "free_bytes", free, "needed_bytes", q.opts.MinFreeBytes)
	}
	if ok && q.diskFull {
		q.log.Info("buffer disk has space again: writes resumed", "dir", q.opts.Dir, "free_bytes", free)
	}
	q.diskFull = !ok
	return ok
}

// evictLocked drops the oldest stored entries while the stored bytes are
// over MaxBytes or the oldest was appended before cutoffMs (0: no age
// limit). The deletes go out with the next group commit.
func (q *Queue) evictLocked(cutoffMs int64) {
	type victim struct {
		seq  uint64
		size int64
	}
	var victims []victim
	bytes := q.bytes
	_ = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{keyPrefix}})
		defer it.Close()
		var k [keyLen]byte
		for it.Seek(putKey(k[:0], q.oldest)); it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()
			if len(key) != keyLen {
				continue
			}
			seq := binary.BigEndian.Uint64(key[1:])
			if seq >= q.commit {
				break
			}
			if q.acked.contains(seq) {
				continue
			}
			evict := bytes > q.opts.MaxBytes
			if !evict && cutoffMs > 0 {
				_ = item.Value(func(v []byte) error {
					evict = len(v) >= 8 && int64(binary.BigEndian.Uint64(v[:8])) < cutoffMs
					return nil
				})
			}
			if !evict {
				break
			}
			sz := int64(keyLen) + item.ValueSize()
			victims = append(victims, victim{seq, sz})
			bytes -= sz
		}
		return nil
	})
	for _, v := range victims {
		q.acked.add(v.seq)
		q.deletes = append(q.deletes, v.seq)
		q.depth--
		q.bytes -= v.size
		q.dropped.Add(1)
	}
	if len(victims) > 0 {
		q.advanceOldestLocked()
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// maintain enforces MaxAge, refreshes the oldest entry's age, and retries
// writes paused by a full disk.
func (q *Queue) maintain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.opts.MaxAge > 0 {
		q.evictLocked(time.Now().Add(-q.opts.MaxAge).UnixMilli())
	}
	if ms, ok := q.oldestAppendedLocked(); ok {
		q.oldestMs = ms
	} else {
		q.oldestMs = 0
	}
	if q.diskFull {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// oldestAppendedLocked returns when the oldest live stored entry was
// appended.
func (q *Queue) oldestAppendedLocked() (int64, bool) {
	var ms int64
	found := false
	_ = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{keyPrefix}})
		defer it.Close()
		var k [keyLen]byte
		for it.Seek(putKey(k[:0], q.oldest)); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) != keyLen {
				continue
			}
			seq := binary.BigEndian.Uint64(key[1:])
			if seq >= q.commit {
				return nil
			}
			if q.acked.contains(seq) {
				continue
			}
			return it.Item().Value(func(v []byte) error {
				if len(v) >= 8 {
					ms, found = int64(binary.BigEndian.Uint64(v[:8])), true
				}
				return nil
			})
		}
		return nil
	})
	return ms, found
}

// checkDisk keeps the store's disk use near what it holds. Badger drops a
// deleted entry only when a compaction writes its key range into the
// lowest level that holds it; with a FIFO's keys, acknowledged and evicted
// entries and their tombstones pile up in the tables above for long (a
// 4 MiB cap measured 10–25 MiB of tables under a steady overflow). When
// most keys in the tables are dead, or the tables exceed MaxBytes by a
// quarter and a third of their keys are dead, it flattens the tree in the
// background: one compaction into a single level, which rewrites the live
// entries and drops every dead one. Each flatten rewrites at most as much
// as it reclaims (or 4× under a continuous overflow at the cap).
func (q *Queue) checkDisk() {
	q.sinceDisk.Store(0)
	if q.flattening.Load() {
		return
	}
	var sst, keys int64
	for _, t := range q.db.Tables() {
		sst += int64(t.OnDiskSize)
		keys += int64(t.KeyCount)
	}
	q.mu.Lock()
	depth := q.depth
	q.mu.Unlock()
	dead := keys - depth // tombstones and deleted entries, roughly (the memtables hold some live ones)
	if sst < 2*q.opts.MemTableSize || dead <= 0 {
		return
	}
	over := sst > q.opts.MaxBytes+q.opts.MaxBytes/4 && 3*dead > keys
	if !over && 2*dead <= keys {
		return
	}
	// The flatten writes the live entries anew before it deletes the old
	// tables, through mmap, where a full disk is a SIGBUS.
	if free, err := q.freeSpace(q.opts.Dir); err != nil || free < sst+q.opts.MinFreeBytes {
		return
	}
	q.flattening.Store(true)
	q.compacting.Add(1)
	go func() {
		defer q.compacting.Done()
		defer q.flattening.Store(false)
		if err := q.db.Flatten(1); err != nil {
			q.log.Warn("buffer compaction failed", "dir", q.opts.Dir, "err", err)
		}
		q.touched.Add(sst) // the flatten read and wrote the tables through mmap
	}()
}
