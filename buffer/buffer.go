// Package buffer owns the durable store-and-forward queue between the local
// broker and one cloud uplink: a FIFO of messages (topic, payload, the time
// they were appended) on Badger, written in group commits, read in order,
// removed on acknowledgement, capped by bytes and age (the oldest are
// dropped and counted), and sized for a 512 MB ARM box with an SD card.
// How it is laid out in Badger, and why, is in store.go.
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
//   - Ack removes an entry for good. An entry that is neither acknowledged
//     nor evicted survives Close/Open, a crash and kill -9 once committed; a
//     power cut may lose what was committed after the last sync
//     (SyncInterval), nothing with SyncAlways. After a crash, entries
//     acknowledged in the last group commit may be read again.
//   - When the stored bytes exceed LiveBytes (69–75% of MaxBytes) or the oldest entry is older than MaxAge, the oldest entries
//     are dropped and counted in Stats.Dropped.
//   - The store's disk use stays within MaxBytes: should it get there
//     anyway (compactions behind a flood), writes pause as for a full disk
//     (below) until space frees.
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
	"sort"
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
	// DefaultMemTableSize: two memtables of 4 MiB (a 64th of MaxBytes
	// below 256 MiB, at least 256 KiB). Each costs its skiplist
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
	// MaxBytes is the disk space the store may take, all of it: the
	// messages, Badger's write-ahead files (Overhead), and the space of
	// delivered or dropped messages until their segment is removed. The
	// messages themselves are kept to LiveBytes (69–75% of it); beyond
	// that the oldest are dropped and counted. Should the store still
	// reach MaxBytes (compactions falling behind a flood of messages
	// faster than the disk), writes pause until a compaction frees space:
	// new messages wait in memory (MemoryBytes), the oldest of those
	// dropped and counted.
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

	liveBytes  int64         // overrides LiveBytes (tests)
	segBytes   int64         // overrides segmentBytes (tests)
	stuckAfter time.Duration // overrides stuckAfter (tests)
	dropQuiet  time.Duration // overrides dropQuiet (tests)
	idleClose  time.Duration // overrides idleClose (tests); negative never closes
}

// Overhead is the disk space Badger needs beyond the stored messages: the
// write-ahead files of its memtables, level-0 tables awaiting compaction
// (up to the stall, 4), and the tables a compaction writes before it
// deletes its inputs (as much again); about ten memtables, measured in
// TestCapDropsOldestExactly.
func (o Options) Overhead() int64 { return 10*o.MemTableSize + 1<<20 }

// LiveBytes is what the stored messages may take (entry bytes, as in
// Stats.Bytes) within MaxBytes: MaxBytes less the Overhead and three
// segments (the oldest one while it is partly delivered, and up to two
// wholly delivered ones waiting to be removed, see dropSegments): 11 MiB
// of 16, 23 of 32, 191 of 256.
func (o Options) LiveBytes() int64 {
	if o.liveBytes > 0 {
		return o.liveBytes
	}
	return max(o.MaxBytes-o.Overhead()-3*o.segmentBytes(), 1<<20)
}

// MinMaxBytes is the smallest MaxBytes: enough for the overhead of the
// smallest memtables and a few MiB of messages.
const MinMaxBytes = 16 << 20

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
		// Smaller memtables for a small cap: they are most of its overhead.
		o.MemTableSize = min(max(o.MaxBytes/64, 256<<10), DefaultMemTableSize)
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
	AtCap       bool    // writes paused: the store reached MaxBytes and waits for a compaction
	DiskBytes   int64   // the store's disk use when last measured
	WriteErrors uint64  // failed group commits (retried)
	// LostDamaged counts messages lost because the store's files were
	// damaged: unreadable batches skipped, or a store moved aside (as many
	// as it last held). LostUnstored counts messages a previous run
	// accepted but had not yet written when it died (kill -9, a crash, a
	// power cut), found at Open from its mark. Neither is in Dropped.
	LostDamaged  uint64
	LostUnstored uint64
	// Recovered is set when the store could not be opened and was moved
	// aside (to RecoveredFrom) and a fresh one created: an alarm.
	Recovered     bool
	RecoveredFrom string
}

// entryOverhead is what an entry counts against MaxBytes beyond its
// encoded value (its share of keys and record framing).
const entryOverhead = 9
const headerLen = 8 + 1 + 2 // appended ms, flags, topic length

// maxEntryBytes bounds one message's payload: a batch has at most 65535
// pages. MQTT allows 256 MB, but no device or broker of ours sends that.
const maxEntryBytes = 64 << 20

// Queue is a durable FIFO. Its methods are safe for concurrent use.
type Queue struct {
	opts Options
	db   *badger.DB   // nil while closed for idleness (see idle.go); under dbMu
	dbMu sync.RWMutex // held (read) while the store is used, (write) to open or close it
	lock *os.File     // the queue's lock file; nil if it could not be taken (never closed idle then)
	log  *slog.Logger

	dbUsed              atomic.Int64 // unix ns the store was last asked for
	reopens, idleCloses atomic.Uint64

	mu       sync.Mutex
	pending  []pendingEntry // appended, not yet written
	pendBuf  []byte         // their encoded values, back to back
	pendFrom int            // pending[:pendFrom] were dropped while the disk was full
	nextSeq  uint64         // next sequence number to assign
	commit   uint64         // entries < commit are readable (written, or staged in memory)
	written  uint64         // entries < written are on disk or were acked before they had to be
	oldest   uint64         // no live entry below this
	acked    intervals      // acked or dropped seqs ≥ oldest
	dirty    bool           // acked or oldest changed for stored entries: write the state
	segs     []segment      // the stored segments, oldest first
	segNext  uint32         // the id of the next segment
	drops    []segment      // segments wholly delivered or dropped, to be removed from the store
	head     loadedBatch    // the stored batch at oldest, for eviction and ages
	mem      []*batch       // committed entries kept in memory, oldest first
	memBytes int64
	depth    int64
	bytes    int64
	oldestMs int64 // AppendedMs of the oldest live entry, 0 unknown
	closed   bool
	diskFull bool
	atCap    bool
	behind   bool // maxPending was reached (logged once)

	appended, committed, durable, ackedN, dropped, writeErrs, writtenN atomic.Uint64
	lostDamaged, lostUnstored                                          atomic.Uint64
	touched                                                            atomic.Int64 // bytes written or read from disk since the last pageOut
	disk                                                               atomic.Int64 // the store's disk use when last measured
	beat                                                               atomic.Int64 // unix ns of the writer's last turn
	recoveredFrom                                                      string

	wbuf     []byte    // the writer's scratch for batch values
	lastDrop time.Time // when segments were last removed (the writer's)

	mark   *markFile // the writer's; nil when it could not be written
	starts uint32    // starts in a row not known to have survived, this one included
	clean  bool      // closed: the mark says so

	storedEnd   uint64    // one past the last stored batch
	savedOldest uint64    // the oldest, as the last written state says
	savedAcked  intervals // the delivered ranges, as the last written state says

	roomDisk   int64 // disk use when roomLocked last dropped a segment
	roomStuck  bool  // dropping segments freed no space (until the disk has room)
	fullLogged bool  // the disk-full line was logged, the one for its end not yet

	lossLog  lossLog // damage found while reading, logged at most every lossLogEvery
	dropping dropLog // drops by the caps and the disk, logged when they start and stop

	now func() time.Time // the clock of appends and max_age (tests move it)

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

// batch is one group commit (or a part of one, at most batchBytes) kept
// in memory for the sender; once written it is one stored batch.
type batch struct {
	first uint64
	vals  [][]byte // value of seq first+i; nil when dropped before it was committed
	size  int64
	// staged: readable but not yet written (Options.WriteDelay); written
	// at due without the entries acknowledged by then.
	staged bool
	due    time.Time
}

func (b *batch) last() uint64 { return b.first + uint64(len(b.vals)) - 1 }

// batchBytes is the most entry bytes one stored batch holds (a single
// larger entry is a batch of its own): large enough that the work per
// batch (a state update, the deletion of its pages) is a small share,
// small enough that the oldest batch is a small share of MaxBytes.
func (o Options) batchBytes() int { return int(max(min(256<<10, o.segmentBytes()/4), 4<<10)) }

// segmentBytes is the most batch bytes one segment holds (a 32nd of
// MaxBytes): the space a partly delivered oldest segment can keep on disk,
// and the granularity at which space is returned.
func (o Options) segmentBytes() int64 {
	if o.segBytes > 0 {
		return o.segBytes
	}
	return min(max(o.MaxBytes/32, 512<<10), 32<<20)
}

// valueThreshold keeps every page in the LSM tree rather than in Badger's
// value log, whose space only a garbage collection returns; it is below
// Badger's batch limit (15% of a memtable).
func (o Options) valueThreshold() int64 { return min(1<<20, o.MemTableSize*15/100/2) }

// ErrCannotOpen is wrapped by Open's errors when the store can neither be
// opened nor replaced by a fresh one (a read-only or unwritable disk, or
// another edged holding it): the uplink cannot run, the rest of the
// gateway can.
var ErrCannotOpen = errors.New("the buffer cannot be opened")

// Open opens (or creates) the queue in opts.Dir. A store that Badger cannot
// open, or that holds another format, is moved aside to
// Dir.broken-<time>, a fresh one is created, and the alarm is raised (an
// error log and Stats.Recovered): a damaged SD card must not keep the
// gateway in a crash loop. Open fails only if a fresh store cannot be
// created either (a permission problem, a read-only disk).
func Open(opts Options) (*Queue, error) {
	opts.defaults()
	if opts.Dir == "" {
		return nil, errors.New("buffer: no directory given")
	}
	if opts.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("buffer %s: max_bytes %d is below the minimum %d (the store's own overhead)", opts.Dir, opts.MaxBytes, int64(MinMaxBytes))
	}
	q := &Queue{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1), flushes: make(chan flushReq), notify: make(chan struct{}),
		stop: make(chan struct{}), stopped: make(chan struct{}), freeSpace: freeBytes, now: time.Now}
	// The mark says what the last run accepted, and how many starts in a
	// row did not survive: after two, every block of the store is
	// verified before Badger sees it (a damage that crashes Badger later
	// than its open, in a compaction, must not loop either).
	var lock *os.File
	if fi, err := os.Stat(opts.Dir); err == nil && fi.IsDir() {
		var lerr error
		if lock, lerr = lockDir(opts.Dir); errors.Is(lerr, errLocked) {
			return nil, fmt.Errorf("buffer %s: open: %w (%w)", opts.Dir, lerr, ErrCannotOpen)
		}
	}
	prev, havePrev := readMark(opts.Dir)
	full := havePrev && prev.starts >= 2
	var mf *markFile
	if fi, err := os.Stat(opts.Dir); err == nil && fi.IsDir() {
		bumped := prev
		bumped.starts++
		bumped.clean = false
		mf, _ = openMark(opts.Dir, bumped) // a store that cannot take it fails below anyway
	}
	db, err := openChecked(opts, full)
	if err == nil {
		if err = q.scan(db, prev, havePrev); err != nil {
			_ = db.Close()
		}
	}
	if err != nil && !movable(opts.Dir, err) {
		_ = mf.close()
		closeLock(lock)
		return nil, fmt.Errorf("buffer %s: open: %w (%w)", opts.Dir, err, ErrCannotOpen)
	}
	starts := prev.starts + 1
	if err != nil {
		_ = mf.close()
		mf = nil
		closeLock(lock) // it stays with the store moved aside
		lock = nil
		aside := fmt.Sprintf("%s.broken-%s", filepath.Clean(opts.Dir), time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(opts.Dir, aside); rerr != nil {
			return nil, fmt.Errorf("buffer %s: open: %w; moving it aside failed too: %v (%w)", opts.Dir, err, rerr, ErrCannotOpen)
		}
		*q = Queue{opts: q.opts, log: q.log, kick: q.kick, flushes: q.flushes, notify: q.notify, stop: q.stop, stopped: q.stopped,
			freeSpace: q.freeSpace, now: q.now, recoveredFrom: aside}
		// What it held is lost: as many as the mark last said were live.
		lost := uint64(0)
		if havePrev {
			lost = prev.live
		}
		q.lostDamaged.Add(lost)
		q.log.Error("buffer store could not be opened: moved aside, starting empty; messages in it are not sent",
			"dir", opts.Dir, "moved_to", aside, "lost", lost, "err", err)
		db, err = openDB(opts)
		if err == nil {
			if err = q.scan(db, mark{}, false); err != nil {
				_ = db.Close()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("buffer %s: create a fresh store: %w (is the data_dir writable?) (%w)", opts.Dir, err, ErrCannotOpen)
		}
		starts = 1
	}
	q.db = db
	if lock == nil { // the directory is Badger's new one: locked by it until now
		lock, _ = lockDir(opts.Dir)
	}
	q.lock = lock
	q.dbUsed.Store(time.Now().UnixNano())
	q.mu.Lock()
	m := q.markLocked()
	q.mu.Unlock()
	m.starts = starts
	if mf == nil {
		mf, err = openMark(opts.Dir, m)
	} else {
		err = mf.write(m)
	}
	if err != nil {
		q.log.Warn("buffer: cannot write its mark file; a crash's losses will not be counted", "dir", opts.Dir, "err", err)
	}
	q.mark, q.starts = mf, starts
	q.beat.Store(time.Now().UnixNano())
	go q.run()
	return q, nil
}

// movable tells whether a store that failed to open with err is damaged
// (move it aside) rather than busy or unreachable (report it).
func movable(dir string, err error) bool {
	if strings.Contains(err.Error(), "directory lock") || errors.Is(err, fs.ErrPermission) {
		return false // another edged runs on it, or a permission problem: never destroy it
	}
	if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
		return true // a file where the store should be
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
		// Level 1 as big as a quarter of the store (8–64 MiB): a FIFO's
		// tables move down the levels whole, each move a rewrite, so fewer
		// levels write less (bench/buffer, 3M messages, no cap: 509 bytes
		// written per 113-byte message with 8 MiB, 378 with 64 MiB).
		WithBaseLevelSize(min(max(o.MaxBytes/4, 8<<20), 64<<20)).
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
		// A damaged block is an error where it is read (the batch is
		// skipped and counted), never garbage parsed as keys and values.
		WithChecksumVerificationMode(options.OnBlockRead).
		// Batches stay in the LSM tree (see batchBytes); only a message
		// larger than the threshold goes to the value log.
		WithValueThreshold(o.valueThreshold())
	// Every table the size of a base table: Badger's default doubles
	// the table size per level, and a compaction keeps up to 8+ table
	// builders in flight (each about 2–3× a table), so a deep tree (a big
	// backlog) made the Go heap grow with the backlog.
	bo.TableSizeMultiplier = 1
	return badger.Open(bo)
}

// scan reads the state and the stored batches' keys: the segments, the
// sequence range, depth and bytes. Segments that are wholly delivered are
// removed; the few batches that are partly delivered are read to count
// exactly. Sequence numbers missing between batches (a batch torn by a
// crash, or made unreadable by a damaged table) and batches that cannot
// be read back are recorded as gone, so that the oldest can move past
// them, and counted as lost unless the state says they were delivered.
// What the last run's mark (m, if haveMark) says was live beyond what
// the store holds is counted as lost too: it was waiting in memory when
// the process died.
func (q *Queue) scan(db *badger.DB, m mark, haveMark bool) error {
	var damaged, unstored uint64
	haveState := false
	err := db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(versionKey); errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			it.Rewind()
			used := it.Valid()
			it.Close()
			if used {
				return errOldFormat
			}
		} else if err != nil {
			return err
		}
		if item, err := txn.Get(stateKey); err == nil {
			haveState = true
			if err := item.Value(func(v []byte) error {
				var err error
				q.oldest, q.nextSeq, q.acked, err = decodeState(v)
				return err
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		q.acked.trimBelow(q.oldest)
		expect := q.oldest // the next seq a batch should start at
		var lb loadedBatch
		// process counts one batch whose keys were all seen.
		process := func(k batchKey, complete bool) error {
			if n := len(q.segs); n == 0 || q.segs[n-1].id != k.seg {
				q.segs = append(q.segs, segment{id: k.seg, first: k.first})
			}
			q.segNext = k.seg + 1
			q.segs[len(q.segs)-1].last = k.last
			if !complete || k.last < q.oldest || q.acked.containsRange(k.first, k.last) {
				return nil // delivered, or torn by a crash before it was readable
			}
			if k.first > expect {
				if haveState && haveMark { // a store from before the mark may have gaps it did not record
					damaged += k.first - expect - q.acked.countIn(expect, k.first-1)
				}
				q.acked.addRange(expect, k.first-1)
			}
			expect = k.last + 1
			q.nextSeq = max(q.nextSeq, k.last+1)
			q.depth += int64(k.n)
			q.bytes += int64(k.bytes)
			if k.first >= q.oldest && q.acked.countIn(k.first, k.last) == 0 && uint64(k.n) == k.last-k.first+1 {
				return nil
			}
			// Partly delivered, or with empty slots: subtract the delivered
			// entries it holds, and record the empty slots as gone.
			if found, _, err := loadBatch(txn, k.seg, k.first, &lb); err != nil || !found || !sameBatch(lb.key, k) {
				// Its keys were seen but it cannot be read back: lost,
				// but for those the state says were delivered.
				live := min(uint64(k.n), k.last-k.first+1-q.acked.countIn(max(k.first, q.oldest), k.last))
				damaged += live
				q.depth -= int64(k.n)
				q.bytes -= int64(k.bytes)
				q.acked.addRange(max(k.first, q.oldest), k.last)
				q.log.Error("buffer: a stored batch cannot be read back: its messages are lost", "dir", q.opts.Dir,
					"first", k.first, "last", k.last, "lost", live, "err", err)
				return nil
			}
			for seq := k.first; seq <= k.last; seq++ {
				raw := lb.raw(seq)
				switch {
				case raw == nil:
					if seq >= q.oldest {
						q.acked.add(seq)
					}
				case seq < q.oldest || q.acked.contains(seq):
					q.depth--
					q.bytes -= int64(entryOverhead + len(raw))
				}
			}
			return nil
		}
		// resolve finds the batches hidden in a gap lo..hi: a damaged block
		// ends a table's part in an iteration, and its later blocks are
		// reached only by seeking past it (see findHidden).
		resolve := func(lo, hi uint64, segLo, segHi uint32) error {
			for _, k := range findHidden(txn, lo, hi, segLo, segHi) {
				if err := process(k, true); err != nil {
					return err
				}
			}
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{batchPrefix}})
		defer it.Close()
		var cur batchKey
		have, complete := false, false
		for it.Rewind(); it.Valid(); it.Next() {
			k, ok := parseBatchKey(it.Item().Key())
			if !ok {
				continue
			}
			if have && sameBatch(k, cur) {
				complete = complete && k.page == cur.page+1
				cur.page = k.page
				continue
			}
			if have {
				if err := process(cur, complete && cur.page == cur.pages-1); err != nil {
					return err
				}
			}
			if haveState && k.first > expect && k.page == 0 && q.acked.countIn(expect, k.first-1) < k.first-expect {
				segLo := k.seg - min(k.seg, 8)
				if have {
					segLo = cur.seg
				}
				if err := resolve(expect, k.first-1, segLo, k.seg); err != nil {
					return err
				}
			}
			cur, have, complete = k, true, k.page == 0
		}
		if have {
			if err := process(cur, complete && cur.page == cur.pages-1); err != nil {
				return err
			}
		}
		if haveState && expect < q.nextSeq && q.acked.countIn(expect, q.nextSeq-1) < q.nextSeq-expect {
			if err := resolve(expect, q.nextSeq-1, cur.seg, cur.seg+1); err != nil {
				return err
			}
		}
		end := q.nextSeq
		if haveMark {
			// New sequence numbers follow all those the last run gave.
			end = max(end, m.accepted)
			q.nextSeq = end
		}
		if expect < end {
			q.acked.addRange(expect, end-1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if haveMark && m.live > uint64(q.depth)+damaged {
		// The last run had more live messages than the store holds
		// (less the damaged): after a clean close, the store lost them
		// (a damage that took the last batches, where no batch after
		// shows the gap); else they were waiting in memory, staged or
		// held by a full disk, when it died.
		if m.clean {
			damaged = m.live - uint64(q.depth)
		} else {
			unstored = m.live - uint64(q.depth) - damaged
		}
	}
	if damaged+unstored > 0 {
		q.lostDamaged.Add(damaged)
		q.lostUnstored.Add(unstored)
		q.log.Error("buffer: messages lost before this start", "dir", q.opts.Dir,
			"damaged", damaged, "unstored", unstored, "why_damaged", "the store's files were damaged (disk or SD card)",
			"why_unstored", "accepted but not yet written when the process died (kill -9, crash, power cut)")
	}
	q.nextSeq = max(q.nextSeq, q.oldest)
	q.commit, q.written = q.nextSeq, q.nextSeq
	q.storedEnd = q.nextSeq
	q.advanceOldestLocked()
	// New batches go to a new segment.
	for i := range q.segs {
		q.segs[i].bytes = q.opts.segmentBytes()
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	if err := wb.Set(versionKey, []byte{storeVersion}); err != nil {
		return err
	}
	state := encodeState(nil, q.oldest, q.nextSeq, q.acked)
	if err := wb.Set(stateKey, state); err != nil {
		return err
	}
	q.dirty = false
	if err := wb.Flush(); err != nil {
		return err
	}
	q.savedLocked(state)
	q.db = db
	if err := q.dropSegments(true); err != nil {
		q.log.Warn("buffer: removing delivered segments failed; retried", "dir", q.opts.Dir, "err", err)
	}
	return nil
}

// Append queues a message. It copies topic and payload, never blocks on
// the disk and never fails; after Close it drops the message and counts it.
func (q *Queue) Append(topic string, payload []byte) { q.AppendPrefixed("", topic, payload) }

// AppendPrefixed is Append of the topic prefix+topic, without building
// that string (the uplink's prefix rewrite).
func (q *Queue) AppendPrefixed(prefix, topic string, payload []byte) {
	now := q.clock().UnixMilli()
	if len(payload) > maxEntryBytes {
		q.dropped.Add(1)
		q.log.Error("buffer: message too large to buffer, dropped", "topic", prefix+topic, "bytes", len(payload), "max_bytes", maxEntryBytes)
		return
	}
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
	switch {
	case q.diskFull || q.atCap:
		q.trimPendingLocked()
	case int64(len(q.pendBuf)-q.pending[q.pendFrom].off) > q.maxPending():
		if !q.behind {
			q.behind = true
			q.log.Warn("buffer writes fall behind the messages: the oldest waiting are dropped (and counted)", "dir", q.opts.Dir, "waiting_bytes", q.maxPending())
		}
		q.trimPendingToLocked(q.maxPending())
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
func (q *Queue) trimPendingLocked() { q.trimPendingToLocked(q.opts.MemoryBytes) }

// trimPendingToLocked drops the oldest pending entries beyond limit bytes,
// and gives back the memory of those dropped once they are most of it.
func (q *Queue) trimPendingToLocked(limit int64) {
	from := q.pendFrom
	for q.pendFrom < len(q.pending) && int64(len(q.pendBuf)-q.pending[q.pendFrom].off) > limit {
		q.acked.add(q.pending[q.pendFrom].seq)
		q.pendFrom++
		q.dropped.Add(1)
	}
	if n := uint64(q.pendFrom - from); n > 0 {
		switch {
		case q.diskFull:
			q.droppingLocked("disk full", n)
		case q.atCap:
			q.droppingLocked("max_bytes on disk (compactions behind)", n)
		default:
			q.droppingLocked("writes behind the messages", n)
		}
	}
	if q.pendFrom == 0 {
		return
	}
	dead := len(q.pendBuf)
	if q.pendFrom < len(q.pending) {
		dead = q.pending[q.pendFrom].off
	}
	if int64(dead) < limit && dead < len(q.pendBuf)/2 {
		return
	}
	buf := append([]byte(nil), q.pendBuf[dead:]...)
	pend := append([]pendingEntry(nil), q.pending[q.pendFrom:]...)
	for i := range pend {
		pend[i].off -= dead
		pend[i].end -= dead
	}
	q.pendBuf, q.pending, q.pendFrom = buf, pend, 0
}

// maxPending bounds what waits for the writer when it falls behind (a
// compaction holding up a segment's removal during a flood): beyond it the
// oldest waiting messages are dropped and counted rather than the process
// growing until the kernel kills it.
func (q *Queue) maxPending() int64 { return 8 * q.opts.MemoryBytes }

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
	cur     loadedBatch // the stored batch the last disk read came from
	segs    []segment   // the queue's segments when the read began
}

// NewReader returns a reader of q.
func (q *Queue) NewReader() *Reader { return &Reader{q: q} }

// Read returns up to max committed entries with from ≤ seq < to (to = 0:
// no upper bound), skipping acknowledged and dropped ones, in order, and
// the sequence number to continue from. It may return fewer than max
// (even none, with the sequence number advanced) before the end: entries
// from the disk come one stored batch per call.
func (r *Reader) Read(from, to uint64, max int) ([]Entry, uint64, error) {
	q := r.q
	dst := r.entries[:0]
	q.mu.Lock()
	from = max64(from, q.oldest)
	end := q.commit
	if to != 0 && to < end {
		end = to
	}
	memFrom := end
	if len(q.mem) > 0 {
		memFrom = min(max64(q.mem[0].first, from), end)
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
	r.segs = append(r.segs[:0], q.segs...)
	q.mu.Unlock()

	// From disk, up to where memory starts: the batches holding from
	// onwards until one yields an entry.
	next := from
	for next < memFrom && len(dst) == 0 {
		if !r.cur.holds(next) {
			// A seek into a delivered or lost range could land in the
			// damaged block that lost it: start past it.
			if n := acked.skip(next); n != next {
				next = n
				continue
			}
			found, bad, err := r.load(next, memFrom-1)
			if bad != nil {
				// A damaged batch: skipped and counted, never an error
				// that would stop the sender at the same place forever.
				q.mu.Lock()
				q.loseLocked(bad.first, bad.last, err)
				q.mu.Unlock()
				next = bad.last + 1
				continue
			}
			if err != nil {
				r.entries = dst
				return dst, from, fmt.Errorf("buffer: read from %d: %w", next, err)
			}
			stop := memFrom
			if found {
				stop = min(r.cur.key.first, memFrom)
			}
			if stop > next {
				// Every entry below memory that is neither delivered nor
				// dropped is stored: those that are not found were lost
				// with a damaged table.
				q.mu.Lock()
				q.loseLocked(next, stop-1, errVanished)
				q.mu.Unlock()
			}
			if !found || r.cur.key.first >= memFrom {
				next = memFrom // nothing stored before memory starts
				break
			}
			next = max64(next, r.cur.key.first)
		}
		stop := min(r.cur.key.last+1, memFrom)
		for ; next < stop && len(dst) < max; next++ {
			raw := r.cur.raw(next)
			if raw == nil || acked.contains(next) {
				continue
			}
			var e Entry
			if decode(&e, next, raw) {
				dst = append(dst, e)
			}
		}
		if len(dst) >= max {
			r.entries = dst
			return dst, next, nil
		}
	}
	if next >= memFrom && next < end && len(dst) < max {
		q.mu.Lock()
		next = q.readMemLocked(&dst, next, end, max-len(dst))
		q.mu.Unlock()
	}
	r.entries = dst
	return dst, next, nil
}

// load reads the stored batch holding seq, or the first after it, into
// r.cur. bad is the key of a batch found damaged.
func (r *Reader) load(seq, limit uint64) (found bool, bad *batchKey, err error) {
	seg, ok := segFor(r.segs, seq)
	if !ok {
		return false, nil, nil
	}
	db, release, err := r.q.store()
	if err != nil {
		return false, nil, err
	}
	defer release()
	err = db.View(func(txn *badger.Txn) error {
		var err error
		found, bad, err = loadAt(txn, seg, seq, limit, &r.cur)
		return err
	})
	if found {
		r.q.touched.Add(int64(len(r.cur.val)))
	}
	return found, bad, err
}

// errVanished: stored entries were not found where they must be.
var errVanished = errors.New("stored batches missing (a damaged table)")

// segFor returns the segment that holds seq or, if none does, the first
// after it.
func segFor(segs []segment, seq uint64) (uint32, bool) {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].last >= seq })
	if i == len(segs) {
		return 0, false
	}
	return segs[i].id, true
}

// loadBatch reads the stored batch holding seq (in segment seg), or the
// first after it, into lb. A batch with pages missing (a crash in the
// middle of its write, or a damaged table) is skipped. A batch that
// cannot be read or parsed is returned as bad, with the error.
func loadBatch(txn *badger.Txn, seg uint32, seq uint64, lb *loadedBatch) (bool, *batchKey, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{batchPrefix}})
	defer it.Close()
	var sk [segPrefixLen + 8]byte
	it.Seek(seekKey(sk[:0], seg, seq))
	for it.Valid() {
		k, ok := parseBatchKey(it.Item().Key())
		if !ok || k.page != 0 {
			it.Next()
			continue
		}
		lb.key, lb.val = k, lb.val[:0]
		complete := true
		for p := uint16(0); p < k.pages; p++ {
			if p > 0 {
				it.Next()
			}
			pk, ok := batchKey{}, false
			if it.Valid() {
				pk, ok = parseBatchKey(it.Item().Key())
			}
			if !ok || !sameBatch(pk, k) || pk.page != p {
				complete = false
				break
			}
			if err := it.Item().Value(func(v []byte) error { lb.val = append(lb.val, v...); return nil }); err != nil {
				lb.val = nil
				return false, &k, err
			}
		}
		if !complete {
			continue // it stands on the next batch's key (or the end)
		}
		if err := lb.parse(); err != nil {
			lb.val = nil
			return false, &k, err
		}
		return true, nil, nil
	}
	lb.val = nil
	return false, nil, nil
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
		if b.last() < from {
			continue
		}
		for i := from - min(from, b.first); i < uint64(len(b.vals)); i++ {
			seq := b.first + i
			if seq >= end || n >= max {
				return next
			}
			next = seq + 1
			if b.vals[i] == nil || q.acked.contains(seq) || seq < q.oldest {
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
		Size:       entryOverhead + len(raw),
	}
	return true
}

// Ack removes the entry seq (of the given Size) after it was delivered.
// Acknowledging an entry twice, or one already dropped, is harmless.
func (q *Queue) Ack(seq uint64, size int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if seq < q.oldest || seq >= q.commit || q.acked.contains(seq) {
		return
	}
	q.acked.add(seq)
	q.depth--
	q.bytes -= int64(size)
	q.ackedN.Add(1)
	if seq < q.written && !q.dirty {
		q.dirty = true
		q.kickLocked() // the state is written by the next commit
	}
	q.advanceOldestLocked()
}

func (q *Queue) kickLocked() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// advanceOldestLocked moves oldest past acked entries and drops memory
// batches that are wholly behind it. The stored segments behind it are
// removed by the next group commit.
func (q *Queue) advanceOldestLocked() {
	if lo, hi, ok := q.acked.first(); ok && lo <= q.oldest && hi >= q.oldest {
		q.oldest = hi + 1
		q.oldestMs = 0
		if len(q.segs) > 0 && q.segs[0].last < q.oldest {
			q.kickLocked()
		}
	}
	q.acked.trimBelow(q.oldest)
	for len(q.mem) > 0 && q.mem[0].last() < q.oldest {
		q.dropMemLocked()
	}
	for len(q.mem) > 0 && q.acked.containsRange(q.mem[0].first, q.mem[0].last()) {
		q.dropMemLocked()
	}
}

// dropMemLocked drops the oldest memory batch once all of it is delivered.
// A staged batch dropped this way was never written and never will be: it
// is settled (counted in Committed) without touching the disk.
func (q *Queue) dropMemLocked() {
	b := q.mem[0]
	q.memBytes -= b.size
	q.mem[0] = nil
	q.mem = q.mem[1:]
	if b.staged {
		b.staged = false
		q.written = max64(q.written, b.last()+1)
		q.committed.Add(uint64(len(b.vals)))
		q.kickLocked() // the mark moves on
	}
}

// Stats returns the current figures.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	s := Stats{Depth: q.depth, Bytes: q.bytes, Pending: int64(len(q.pending) - q.pendFrom), DiskFull: q.diskFull, AtCap: q.atCap, DiskBytes: q.disk.Load(),
		Recovered: q.recoveredFrom != "", RecoveredFrom: q.recoveredFrom}
	oldestMs := q.oldestMs
	q.mu.Unlock()
	s.Appended, s.Committed, s.Durable, s.Written = q.appended.Load(), q.committed.Load(), q.durable.Load(), q.writtenN.Load()
	s.Acked, s.Dropped, s.WriteErrors = q.ackedN.Load(), q.dropped.Load(), q.writeErrs.Load()
	s.LostDamaged, s.LostUnstored = q.lostDamaged.Load(), q.lostUnstored.Load()
	if oldestMs > 0 && s.Depth > 0 {
		s.OldestAge = float64(q.clock().UnixMilli()-oldestMs) / 1000
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
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	var err error
	if q.db != nil {
		err = q.db.Close()
	}
	closeLock(q.lock)
	return err
}

func closeLock(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// clock is q.now, or time.Now for a queue made without it.
func (q *Queue) clock() time.Time {
	if q.now == nil {
		return time.Now()
	}
	return q.now()
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
