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
		select {
		case <-q.stop:
			q.commitOnce()
			_ = q.db.Sync()
			q.durable.Store(q.committed.Load())
			return
		case done := <-q.flushes:
			q.commitOnce()
			close(done)
		case <-q.kick:
			// Let a batch gather for at most one commit interval.
			select {
			case <-commitTick.C:
			case <-q.stop:
			case done := <-q.flushes:
				q.commitOnce()
				close(done)
			}
			q.commitOnce()
		case <-commitTick.C:
			q.commitOnce()
		case <-syncTick.C:
			if c := q.committed.Load(); c != lastSynced && q.opts.Sync == SyncInterval {
				if err := q.db.Sync(); err == nil {
					q.durable.Store(c)
					lastSynced = c
				}
			}
		case <-maint.C:
			q.maintain()
			if gcEvery++; gcEvery >= 300 { // value-log GC every 5 minutes
				gcEvery = 0
				for q.db.RunValueLogGC(0.5) == nil {
				}
			}
		}
	}
}

// commitOnce writes the pending appends and deletes in one batch.
func (q *Queue) commitOnce() {
	q.mu.Lock()
	if len(q.pending) == q.pendFrom && len(q.deletes) == 0 {
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
	q.mu.Unlock()

	err := q.write(pending, buf, dels)

	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		// Put everything back in front of what arrived meanwhile; retried
		// on the next tick.
		q.writeErrs.Add(1)
		if q.writeErrs.Load() == 1 || !q.diskFull {
			q.log.Error("buffer write failed; retrying", "dir", q.opts.Dir, "err", err)
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
	if len(pending) > 0 {
		b := &batch{first: pending[0].seq, buf: buf, size: int64(len(buf))}
		b.vals = make([][]byte, pending[len(pending)-1].seq-b.first+1)
		for _, p := range pending {
			b.vals[p.seq-b.first] = buf[p.off:p.end:p.end]
			q.depth++
			q.bytes += int64(keyLen + p.end - p.off)
		}
		q.commit = pending[len(pending)-1].seq + 1
		q.mem = append(q.mem, b)
		q.memBytes += b.size
		for len(q.mem) > 1 && q.memBytes > q.opts.MemoryBytes {
			q.memBytes -= q.mem[0].size
			q.mem = q.mem[1:]
		}
		q.committed.Add(uint64(len(pending)))
		if q.opts.Sync == SyncAlways {
			q.durable.Store(q.committed.Load())
		}
		close(q.notify)
		q.notify = make(chan struct{})
	}
	if q.bytes > q.opts.MaxBytes {
		q.evictLocked(0)
	}
}

// write stores one group commit.
func (q *Queue) write(pending []pendingEntry, buf []byte, dels []uint64) error {
	wb := q.db.NewWriteBatch()
	defer wb.Cancel()
	keys := make([]byte, 0, keyLen*(len(pending)+len(dels)))
	for _, p := range pending {
		keys = putKey(keys, p.seq)
		if err := wb.Set(keys[len(keys)-keyLen:], buf[p.off:p.end]); err != nil {
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
