package buffer

import (
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// An open Badger costs CPU even when nothing is written: its two
// compactors wake every 50 ms, and those wakeups keep the Go runtime's
// monitor thread polling, about 120 thread wakeups a second in all. That
// was almost all of an idle gateway's CPU with one uplink (bench/bufidle:
// 0.58% of a core with the compactors, 0.03% without). A healthy uplink
// acknowledges within the write delay, so the store holds nothing and is
// not needed: the writer closes it once it has been empty and unused for
// idleClose, and whatever needs it next (a batch falling due unacked, a
// state to write, a read of stored entries, Close) opens it again. Nothing
// is kept only in a closed store: it closes only when no entry is stored,
// no segment waits for removal and the state on disk is current.
//
// While the store is closed, Badger's own directory lock is released; the
// queue's lock file (lockName, held from Open to Close) keeps a second
// process from opening the same store meanwhile.

// idleClose is how long the store must be empty and unused before the
// writer closes it: past the first compactions after an open (see
// surviveAfter), and long enough that a gateway polling every few seconds
// with a slow broker does not open and close it by turns.
const idleClose = 30 * time.Second

// errLocked: another process holds the store (its message names the
// directory lock, which movable takes as "busy, never move it aside").
var errLocked = errors.New("another process holds the buffer's directory lock")

func (q *Queue) idleCloseAfter() time.Duration {
	if q.opts.idleClose != 0 {
		return q.opts.idleClose
	}
	return idleClose
}

// store returns the open store, opening it again if the writer closed it
// while idle; release must be called when done with it.
func (q *Queue) store() (db *badger.DB, release func(), err error) {
	q.dbUsed.Store(time.Now().UnixNano())
	for {
		q.dbMu.RLock()
		if db := q.db; db != nil {
			return db, q.dbMu.RUnlock, nil
		}
		q.dbMu.RUnlock()
		if err := q.reopen(); err != nil {
			return nil, func() {}, err
		}
	}
}

func (q *Queue) reopen() error {
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	if q.db != nil {
		return nil
	}
	db, err := openChecked(q.opts, false)
	if err != nil {
		return fmt.Errorf("reopen the idle store: %w", err)
	}
	q.db = db
	q.reopens.Add(1)
	return nil
}

// ifOpen runs fn with the store if it is open, without opening it.
func (q *Queue) ifOpen(fn func(db *badger.DB)) bool {
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	if q.db == nil {
		return false
	}
	fn(q.db)
	return true
}

// closeIfIdle closes the store (the writer's, on its upkeep turn) when it
// holds nothing, nothing waits to be written to it, and it has not been
// used for idleCloseAfter.
func (q *Queue) closeIfIdle() {
	if q.lock == nil || q.idleCloseAfter() < 0 ||
		time.Duration(time.Now().UnixNano()-q.dbUsed.Load()) < q.idleCloseAfter() {
		return
	}
	q.mu.Lock()
	idle := len(q.segs) == 0 && len(q.drops) == 0 && len(q.pending) == q.pendFrom && !q.dirty &&
		!q.diskFull && !q.atCap && q.written == q.commit && q.storedEnd <= q.written
	for _, b := range q.mem {
		idle = idle && !b.staged
	}
	q.mu.Unlock()
	if !idle {
		return
	}
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	if q.db == nil {
		return
	}
	if err := q.db.Close(); err != nil {
		q.log.Warn("buffer: closing the idle store failed; it is opened again when needed", "dir", q.opts.Dir, "err", err)
	}
	q.db = nil
	q.durable.Store(q.committed.Load()) // Close synced it
	q.idleCloses.Add(1)
}
