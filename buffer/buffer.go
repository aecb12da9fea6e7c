// Package buffer owns the durable store-and-forward queue between the local
// broker and one cloud uplink: a FIFO of messages (topic, payload, the time
// they were appended) on Badger, written in group commits, read in order,
// deleted on acknowledgement, capped by bytes and age (the oldest are
// dropped and counted), and sized for a 512 MB ARM box with an SD card.
//
// It knows messages only as bytes plus metadata; it knows nothing about MQTT
// packets, connections or topics' meaning.
//
// # Contract
//
//   - Append never blocks on the disk and never fails: it copies the message
//     into the pending group commit and returns. Entries become visible to
//     Read only once written to the store (and, with SyncAlways, fsynced), so
//     whoever publishes what Read returns has always stored it first.
//   - Read returns committed, un-acknowledged, un-evicted entries in sequence
//     (append) order.
//   - Ack deletes an entry. An entry that is neither acknowledged nor evicted
//     survives Close/Open, a crash and kill -9 once committed; a power cut
//     may lose what was committed after the last sync (SyncInterval), nothing
//     with SyncAlways.
//   - When the stored bytes exceed MaxBytes or the oldest entry is older than
//     MaxAge, the oldest entries are deleted and counted in Stats.Dropped.
//   - A full disk does not crash or corrupt the store: writes stop before the
//     file system is full (Badger writes through mmap, where ENOSPC would be
//     a SIGBUS), new messages wait in a bounded memory queue whose oldest are
//     dropped and counted, and writing resumes by itself when space frees.
package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// SyncMode says when committed entries are fsynced.
type SyncMode int

const (
	// SyncInterval fsyncs every Options.SyncInterval: a power cut loses at
	// most that much; kill -9 loses nothing that was committed.
	SyncInterval SyncMode = iota
	// SyncAlways fsyncs every group commit before its entries are readable.
	SyncAlways
)

// Defaults for Options' zero values.
const (
	DefaultSyncInterval   = time.Second
	DefaultCommitInterval = 5 * time.Millisecond
	DefaultWriteDelay     = 500 * time.Millisecond
	DefaultMaxBytes       = 256 << 20
	DefaultMemoryBytes    = 4 << 20
	// DefaultMemTableSize: two memtables of 4 MiB. Each costs its skiplist
	// arena (MemTableSize + 30%) and, when flushed, a table builder that
	// grows to about 3× its size; with 8 MiB the Go heap peaked near
	// 100 MiB under a flood, with 4 MiB near 60 MiB at the same
	// throughput (bench/buffer).
	DefaultMemTableSize = 4 << 20
	// ValueLogFileSize is small enough that Badger's 2× mmap of a value-log
	// file fits the address space of 32-bit ARM many times over. Values are
	// stored in the LSM tree (they are far below the value threshold), so the
	// value log carries little.
	ValueLogFileSize = 16 << 20
)

// Options configure a Queue. Dir is required; zero values take the defaults.
type Options struct {
	// Dir is the queue's own Badger directory (one per uplink).
	Dir string
	// MaxBytes caps the bytes of stored entries (key + value); the oldest
	// are dropped beyond it. The disk use is higher: Badger's write-ahead
	// files add about 2×MemTableSize (Overhead); a table holds an entry in
	// about 1.15× its size (100-byte messages); and dropped or delivered
	// entries take space until a compaction removes them: the queue
	// flattens the tree when most of it is dead (see checkDisk). Measured
	// under a flood far beyond the cap (bench/buffer -max-bytes 4194304,
	// 4 MiB memtables): 7–18 MiB on disk (before: 10–25 MiB); drained, a
	// 1M-message backlog leaves 13 MiB (before: 142 MiB). Size the
	// partition for 2×MaxBytes + Overhead, or 4×MaxBytes when MaxBytes is
	// a few memtables.
	MaxBytes int64
	// MaxAge drops entries older than this; 0 keeps them until MaxBytes.
	MaxAge time.Duration
	// Sync and SyncInterval: see SyncMode.
	Sync         SyncMode
	SyncInterval time.Duration
	// CommitInterval is the longest an appended entry waits for its group
	// commit. Larger batches write fewer, bigger blocks.
	CommitInterval time.Duration
	// WriteDelay (with Sync = SyncInterval only) makes a group commit
	// readable at once but writes it to the store only after this delay,
	// and then only the entries not acknowledged by then: a healthy uplink
	// acks in milliseconds, so in steady state almost nothing reaches the
	// disk (SD-card wear, CPU and memory), while an outage's backlog is on
	// disk after WriteDelay. What a kill -9 can lose grows from nothing
	// written to at most WriteDelay of unacknowledged messages, still
	// within the sync interval a power cut may lose. Capped at
	// SyncInterval; 0 means DefaultWriteDelay, negative writes at once;
	// SyncAlways always writes at once.
	WriteDelay time.Duration
	// MemoryBytes bounds what is held in memory: recently committed entries
	// kept so the sender need not read them back from disk, and, while the
	// disk is full, entries waiting to be written (the oldest of those are
	// dropped beyond it).
	MemoryBytes int64
	// MemTableSize is Badger's memtable size; tests make it small.
	MemTableSize int64
	// MinFreeBytes is the free space the file system must keep for the
	// store to write; default 4×MemTableSize (a memtable's write-ahead file
	// is mmapped at twice its size, and flushing it writes a table as big).
	MinFreeBytes int64
	// Logger gets state changes; nil discards.
	Logger *slog.Logger
}

// Overhead is the disk space Badger uses beyond the entries themselves
// (memtable write-ahead files, manifest, a value-log file), for sizing
// MaxBytes against a partition.
func (o Options) Overhead() int64 { return 2*o.MemTableSize + 1<<20 }

func (o *Options) defaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	switch {
	case o.WriteDelay < 0 || o.Sync == SyncAlways:
		o.WriteDelay = 0
	case o.WriteDelay == 0:
		o.WriteDelay = DefaultWriteDelay
	}
	if o.WriteDelay > o.SyncInterval {
		o.WriteDelay = o.SyncInterval
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = DefaultMemoryBytes
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MinFreeBytes <= 0 {
		o.MinFreeBytes = 4 * o.MemTableSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Entry is one queued message. Its slices are valid until the next Read
// into the same destination slice; copy what you keep.
type Entry struct {
	Seq        uint64
	AppendedMs int64 // unix ms when Append was called
	Topic      []byte
	Payload    []byte
	// Size is what the entry counts against MaxBytes; pass it to Ack.
	Size int
}

// Stats are a queue's running figures.
type Stats struct {
	Depth       int64   // entries stored and not yet acknowledged or dropped
	Bytes       int64   // their size (key + value)
	Pending     int64   // appended, not yet written to the store
	Appended    uint64  // since Open
	Committed   uint64  // entries settled since Open: written to the store, or delivered before they had to be (WriteDelay)
	Written     uint64  // entries actually written to the store since Open (SD-card wear)
	Durable     uint64  // of those, fsynced (all of Committed with SyncAlways)
	Acked       uint64  // since Open
	Dropped     uint64  // dropped by the caps or a full disk, since Open
	OldestAge   float64 // seconds since the oldest stored entry was appended; 0 when empty
	DiskFull    bool    // writes paused: the file system is (nearly) full
	WriteErrors uint64  // failed group commits (retried)
	// Recovered is set when the store could not be opened and was moved
	// aside (to RecoveredFrom) and a fresh one created: an alarm.
	Recovered     bool
	RecoveredFrom string
}

const keyPrefix = 'q'
const keyLen = 9
const headerLen = 8 + 1 + 2 // appended ms, flags, topic length

func putKey(dst []byte, seq uint64) []byte {
	dst = append(dst, keyPrefix)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// Queue is a durable FIFO. Its methods are safe for concurrent use.
type Queue struct {
	opts Options
	db   *badger.DB
	log  *slog.Logger

	mu       sync.Mutex
	pending  []pendingEntry // appended, not yet written
	pendBuf  []byte         // their encoded values, back to back
	pendFrom int            // pending[:pendFrom] were dropped while the disk was full
	deletes  []uint64       // acked, delete not yet written
	nextSeq  uint64         // next sequence number to assign
	commit   uint64         // entries < commit are readable (written, or staged in memory)
	written  uint64         // entries < written are on disk or were acked before they had to be
	oldest   uint64         // no live entry below this
	acked    intervals      // acked or evicted seqs ≥ oldest
	mem      []*batch       // committed entries kept in memory, oldest first
	memBytes int64
	depth    int64
	bytes    int64
	oldestMs int64 // AppendedMs of the oldest live entry, 0 unknown
	closed   bool
	diskFull bool

	appended, committed, durable, ackedN, dropped, writeErrs, writtenN atomic.Uint64
	touched                                                            atomic.Int64 // bytes written or read from disk since the last pageOut
	sinceDisk                                                          atomic.Int64 // bytes written since the last checkDisk
	flattening                                                         atomic.Bool
	compacting                                                         sync.WaitGroup
	recoveredFrom                                                      string

	kick    chan struct{} // wakes the committer
	flushes chan flushReq
	notify  chan struct{} // closed and replaced when entries are committed
	stop    chan struct{}
	stopped chan struct{}

	freeSpace func(dir string) (int64, error) // injectable for tests
}

type pendingEntry struct {
	seq      uint64
	off, end int // value in pendBuf
}

// batch is one group commit kept in memory for the sender.
type batch struct {
	first uint64
	vals  [][]byte // value of seq first+i
	buf   []byte
	size  int64
	// staged: readable but not yet written (Options.WriteDelay); written
	// at due without the entries acknowledged by then.
	staged bool
	due    time.Time
}

// Open opens (or creates) the queue in opts.Dir. A store that Badger cannot
// open is moved aside to Dir.broken-<time>, a fresh one is created, and the
// alarm is raised (an error log and Stats.Recovered): a damaged SD card must
// not keep the gateway in a crash loop. Open fails only if a fresh store
// cannot be created either (a permission problem, a read-only disk).
func Open(opts Options) (*Queue, error) {
	opts.defaults()
	if opts.Dir == "" {
		return nil, errors.New("buffer: no directory given")
	}
	q := &Queue{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1), flushes: make(chan flushReq), notify: make(chan struct{}),
		stop: make(chan struct{}), stopped: make(chan struct{}), freeSpace: freeBytes}
	db, err := openDB(opts)
	if err != nil && !movable(opts.Dir, err) {
		return nil, fmt.Errorf("buffer %s: open: %w", opts.Dir, err)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.broken-%s", filepath.Clean(opts.Dir), time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(opts.Dir, aside); rerr != nil {
			return nil, fmt.Errorf("buffer %s: open: %w; moving it aside failed too: %v", opts.Dir, err, rerr)
		}
		q.log.Error("buffer store could not be opened: moved aside, starting empty; messages in it are not sent",
			"dir", opts.Dir, "moved_to", aside, "err", err)
		q.recoveredFrom = aside
		db, err = openDB(opts)
		if err != nil {
			return nil, fmt.Errorf("buffer %s: create a fresh store: %w (is the data_dir writable?)", opts.Dir, err)
		}
	}
	q.db = db
	if err := q.scan(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("buffer %s: read the stored entries: %w", opts.Dir, err)
	}
	go q.run()
	return q, nil
}

// movable tells whether a store that failed to open with err is damaged
// (move it aside) rather than busy or unreachable (report it).
func movable(dir string, err error) bool {
	if strings.Contains(err.Error(), "directory lock") || errors.Is(err, fs.ErrPermission) {
		return false // another edged runs on it, or a permission problem: never destroy it
	}
	entries, rerr := os.ReadDir(dir)
	return rerr == nil && len(entries) > 0
}

func openDB(o Options) (*badger.DB, error) {
	bo := badger.DefaultOptions(o.Dir).
		WithLogger(badgerLogger{o.Logger}).
		WithSyncWrites(false). // we fsync per policy, per group commit
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		// A table as big as a memtable: with smaller tables the L0 table
		// builder outgrows its first allocation, and Badger then corrupts
		// tables on 32-bit ARM (TestARMv7 panics in compaction with
		// MemTableSize/2; measured, cause not found).
		WithBaseTableSize(o.MemTableSize).
		WithBaseLevelSize(8 << 20).
		WithBlockCacheSize(0).
		WithCompression(options.None). // required with a zero block cache
		// No index cache: without encryption a table's index is read
		// in place from its mmap, and a cache would only copy it.
		WithIndexCacheSize(0).
		WithValueLogFileSize(ValueLogFileSize).
		WithNumCompactors(2).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumGoroutines(1).
		// Values (a topic and a payload) stay in the LSM tree; the
		// threshold must be below Badger's batch limit (15% of a memtable).
		WithValueThreshold(min(1<<20, o.MemTableSize*15/100/2))
	// Every table the size of a base table: Badger's default doubles
	// the table size per level, and a compaction keeps up to 8+ table
	// builders in flight (each about 2–3× a table), so a deep tree (a big
	// backlog) made the Go heap grow with the backlog.
	bo.TableSizeMultiplier = 1
	return badger.Open(bo)
}

// scan finds the sequence range and totals of what is stored.
func (q *Queue) scan() error {
	return q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{keyPrefix}})
		defer it.Close()
		first := true
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != keyLen {
				continue
			}
			seq := binary.BigEndian.Uint64(k[1:])
			if first {
				q.oldest = seq
				first = false
			} else if seq > q.nextSeq {
				q.acked.addRange(q.nextSeq, seq-1) // deleted out of order before the restart
			}
			q.nextSeq = seq + 1
			q.depth++
			q.bytes += int64(keyLen) + int64(item.ValueSize())
		}
		q.commit = q.nextSeq
		q.written = q.nextSeq
		return nil
	})
}

// Append queues a message. It copies topic and payload, never blocks on
// the disk and never fails; after Close it drops the message and counts it.
func (q *Queue) Append(topic string, payload []byte) { q.AppendPrefixed("", topic, payload) }

// AppendPrefixed is Append of the topic prefix+topic, without building
// that string (the uplink's prefix rewrite).
func (q *Queue) AppendPrefixed(prefix, topic string, payload []byte) {
	now := time.Now().UnixMilli()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	off := len(q.pendBuf)
	q.pendBuf = binary.BigEndian.AppendUint64(q.pendBuf, uint64(now))
	q.pendBuf = append(q.pendBuf, 0)
	if len(prefix)+len(topic) > 0xffff { // MQTT's limit; cannot come from the local broker
		prefix, topic = "", topic[:0xffff]
	}
	q.pendBuf = binary.BigEndian.AppendUint16(q.pendBuf, uint16(len(prefix)+len(topic)))
	q.pendBuf = append(q.pendBuf, prefix...)
	q.pendBuf = append(q.pendBuf, topic...)
	q.pendBuf = append(q.pendBuf, payload...)
	q.pending = append(q.pending, pendingEntry{seq: q.nextSeq, off: off, end: len(q.pendBuf)})
	q.nextSeq++
	kick := len(q.pending)-q.pendFrom == 1 || len(q.pendBuf) >= 256<<10
	if q.diskFull {
		q.trimPendingLocked()
	}
	q.mu.Unlock()
	q.appended.Add(1)
	if kick {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// trimPendingLocked drops the oldest pending entries beyond MemoryBytes.
func (q *Queue) trimPendingLocked() {
	for q.pendFrom < len(q.pending) && int64(len(q.pendBuf)-q.pending[q.pendFrom].off) > q.opts.MemoryBytes {
		q.acked.add(q.pending[q.pendFrom].seq)
		q.pendFrom++
		q.dropped.Add(1)
	}
}

// NextSeq is the sequence number the next Append gets: entries below it
// were appended before the call.
func (q *Queue) NextSeq() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.nextSeq
}

// Oldest is the lowest sequence number that may still be stored: where a
// sender that starts over (after a reconnect) begins reading.
func (q *Queue) Oldest() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.oldest
}

// Committed returns a channel that is closed when entries at or above seq
// are readable (or the queue is closing).
func (q *Queue) Committed(seq uint64) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.commit > seq || q.closed {
		c := make(chan struct{})
		close(c)
		return c
	}
	return q.notify
}

// Reader reads a queue in order for one sender. Its entries are valid
// until its next Read. A Reader is not safe for concurrent use.
type Reader struct {
	q       *Queue
	entries []Entry
	arena   []byte
}

// NewReader returns a reader of q.
func (q *Queue) NewReader() *Reader { return &Reader{q: q} }

// Read returns up to max committed entries with from ≤ seq < to (to = 0:
// no upper bound), skipping acknowledged and dropped ones, in order, and
// the sequence number to continue from.
func (r *Reader) Read(from, to uint64, max int) ([]Entry, uint64, error) {
	q := r.q
	dst := r.entries[:0]
	r.arena = r.arena[:0]
	q.mu.Lock()
	if from < q.oldest {
		from = q.oldest
	}
	end := q.commit
	if to != 0 && to < end {
		end = to
	}
	memFrom := end
	if len(q.mem) > 0 {
		memFrom = max64(q.mem[0].first, from)
	}
	if from >= end {
		q.mu.Unlock()
		return dst, from, nil
	}
	if from >= memFrom {
		next := q.readMemLocked(&dst, from, end, max)
		q.mu.Unlock()
		r.entries = dst
		return dst, next, nil
	}
	acked := q.acked.clone()
	q.mu.Unlock()

	// From disk, up to where memory starts.
	n := 0
	next := from
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(max, 100), Prefix: []byte{keyPrefix}})
		defer it.Close()
		var k [keyLen]byte
		for it.Seek(putKey(k[:0], from)); it.Valid() && n < max; it.Next() {
			item := it.Item()
			key := item.Key()
			if len(key) != keyLen {
				continue
			}
			seq := binary.BigEndian.Uint64(key[1:])
			if seq >= memFrom {
				break
			}
			next = seq + 1
			if acked.contains(seq) {
				continue
			}
			off := len(r.arena)
			q.touched.Add(int64(len(key)) + item.ValueSize())
			if err := item.Value(func(v []byte) error { r.arena = append(r.arena, v...); return nil }); err != nil {
				return err
			}
			var e Entry
			if decode(&e, seq, r.arena[off:len(r.arena):len(r.arena)]) {
				dst = append(dst, e)
				n++
			}
		}
		if n < max {
			next = memFrom
		}
		return nil
	})
	if err != nil {
		r.entries = dst
		return dst, from, fmt.Errorf("buffer: read from %d: %w", from, err)
	}
	if n < max && next < end {
		q.mu.Lock()
		next = q.readMemLocked(&dst, next, end, max-n)
		q.mu.Unlock()
	}
	r.entries = dst
	return dst, next, nil
}

// readMemLocked reads from the memory batches; it stops at a gap before
// the first batch (entries that were moved out of memory are on disk).
func (q *Queue) readMemLocked(dst *[]Entry, from, end uint64, max int) uint64 {
	if len(q.mem) == 0 || q.mem[0].first > from {
		return from
	}
	next := from
	n := 0
	for _, b := range q.mem {
		last := b.first + uint64(len(b.vals))
		if last <= from {
			continue
		}
		for i := from - min(from, b.first); i < uint64(len(b.vals)); i++ {
			seq := b.first + i
			if seq >= end || n >= max {
				return next
			}
			next = seq + 1
			if q.acked.contains(seq) || seq < q.oldest {
				continue
			}
			var e Entry
			if decode(&e, seq, b.vals[i]) {
				*dst = append(*dst, e)
				n++
			}
		}
	}
	if next < end && n < max {
		next = end
	}
	return next
}

// decode fills e from a stored value; the slices alias raw.
func decode(e *Entry, seq uint64, raw []byte) bool {
	if len(raw) < headerLen {
		return false
	}
	tl := int(binary.BigEndian.Uint16(raw[9:11]))
	if len(raw) < headerLen+tl {
		return false
	}
	*e = Entry{
		Seq:        seq,
		AppendedMs: int64(binary.BigEndian.Uint64(raw[:8])),
		Topic:      raw[headerLen : headerLen+tl],
		Payload:    raw[headerLen+tl:],
		Size:       keyLen + len(raw),
	}
	return true
}

// Ack deletes the entry seq (of the given Size) after it was delivered.
// Acknowledging an entry twice, or one already dropped, is harmless.
func (q *Queue) Ack(seq uint64, size int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if seq < q.oldest || seq >= q.commit || q.acked.contains(seq) {
		return
	}
	q.acked.add(seq)
	if seq < q.written { // a staged entry acked in time never reaches the disk
		q.deletes = append(q.deletes, seq)
	}
	q.depth--
	q.bytes -= int64(size)
	q.ackedN.Add(1)
	q.advanceOldestLocked()
	if len(q.deletes) == 1 {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// advanceOldestLocked moves oldest past acked entries and drops memory
// batches that are wholly behind it.
func (q *Queue) advanceOldestLocked() {
	if lo, hi, ok := q.acked.first(); ok && lo <= q.oldest && hi >= q.oldest {
		q.oldest = hi + 1
		q.oldestMs = 0
	}
	q.acked.trimBelow(q.oldest)
	for len(q.mem) > 0 && q.mem[0].first+uint64(len(q.mem[0].vals)) <= q.oldest {
		q.dropMemLocked()
	}
	for len(q.mem) > 0 && q.acked.containsRange(q.mem[0].first, q.mem[0].first+uint64(len(q.mem[0].vals))-1) {
		q.dropMemLocked()
	}
}

// dropMemLocked drops the oldest memory batch once all of it is delivered.
// A staged batch dropped this way was never written and never will be: it
// is settled (counted in Committed) without touching the disk.
func (q *Queue) dropMemLocked() {
	b := q.mem[0]
	q.memBytes -= b.size
	q.mem = q.mem[1:]
	if b.staged {
		b.staged = false
		end := b.first + uint64(len(b.vals))
		q.written = max64(q.written, end)
		q.committed.Add(uint64(len(b.vals)))
	}
}

// Stats returns the current figures.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	s := Stats{Depth: q.depth, Bytes: q.bytes, Pending: int64(len(q.pending) - q.pendFrom), DiskFull: q.diskFull,
		Recovered: q.recoveredFrom != "", RecoveredFrom: q.recoveredFrom}
	oldestMs := q.oldestMs
	q.mu.Unlock()
	s.Appended, s.Committed, s.Durable, s.Written = q.appended.Load(), q.committed.Load(), q.durable.Load(), q.writtenN.Load()
	s.Acked, s.Dropped, s.WriteErrors = q.ackedN.Load(), q.dropped.Load(), q.writeErrs.Load()
	if oldestMs > 0 && s.Depth > 0 {
		s.OldestAge = float64(time.Now().UnixMilli()-oldestMs) / 1000
	}
	return s
}

// Flush writes what was appended and acknowledged before the call (unless
// the disk is full) and returns when it is written.
func (q *Queue) Flush() {
	done := make(chan struct{})
	select {
	case q.flushes <- flushReq{all: true, done: done}:
		<-done
	case <-q.stopped:
	}
}

// flushReq asks the writer for a group commit now; all also writes staged
// batches that are not due yet.
type flushReq struct {
	all  bool
	done chan struct{}
}

// commitNow runs one group commit now without writing staged batches
// before they are due (what the writer does on its own; for tests).
func (q *Queue) commitNow() {
	done := make(chan struct{})
	select {
	case q.flushes <- flushReq{done: done}:
		<-done
	case <-q.stopped:
	}
}

// Close writes what is pending (if the disk allows), fsyncs and closes the
// store. Appends after Close are dropped and counted.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.stopped
		return nil
	}
	q.closed = true
	close(q.notify)
	q.notify = make(chan struct{})
	q.mu.Unlock()
	close(q.stop)
	<-q.stopped
	return q.db.Close()
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// badgerLogger passes Badger's warnings and errors to slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: "+fmt.Sprintf(f, a...), "component", "buffer")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger: "+fmt.Sprintf(f, a...), "component", "buffer")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
