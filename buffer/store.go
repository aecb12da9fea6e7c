package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The store holds three kinds of keys:
//
//   - "v": the format version (storeVersion).
//   - 'b' segment last first bytes count pages page: one page of a batch of
//     consecutive entries, first to last (sequence numbers, big-endian, so
//     that a seek to 'b'+segment+seq finds the batch holding seq), the
//     segment it belongs to, the bytes its
//     present entries count against MaxBytes, how many are present, and
//     how many pages the batch has. The batch's value, its pages'
//     values in order, is one record per sequence number: a uvarint
//     length and the entry's encoded value (appended ms, flags, topic
//     length, topic, payload); length 0 marks a slot with no entry
//     (acknowledged before the batch was written). A page is at most
//     pageBytes: Badger's table builder corrupts tables on 32-bit ARM
//     when a value does not fit in one table block (TestARMv7 panics
//     reading such a table), so no value we store is larger.
//   - "s": the queue state: the oldest live sequence number, the next one
//     to assign, and the acknowledged (or dropped) ranges above the oldest.
//
// Nothing is ever deleted key by key. Batches are grouped in segments
// (consecutive batches up to segmentBytes, one key prefix each), and a
// segment whose entries are all delivered or dropped is removed whole
// with Badger's DropPrefix, which deletes its tables instead of writing
// tombstones. With a FIFO's keys, tombstones for the oldest keys and new
// entries at the newest keys land in the same level-0 tables, and every
// compaction of those then rewrites the whole tree below them (measured
// with one key per message: about 1,440 bytes written per 113-byte
// message, and 2–4× the cap on disk under an overflow).
const (
	batchPrefix  = 'b'
	batchKeyLen  = 1 + 4 + 8 + 8 + 4 + 4 + 2 + 2
	segPrefixLen = 1 + 4
	batchIDLen   = batchKeyLen - 2 // what a batch's pages share
	storeVersion = 2
	// pageBytes fits, with its key and the block's trailer, in one of
	// Badger's 4 KiB table blocks.
	pageBytes = 3 << 10
	// maxStateSpans bounds the acknowledged ranges kept in the state; the
	// ranges beyond it are forgotten, so that after a restart those entries
	// are sent again (duplicates, never a loss).
	maxStateSpans = 4096
)

var (
	versionKey = []byte("v")
	stateKey   = []byte("s")
)

// errOldFormat: the store was written by another version of edged.
var errOldFormat = errors.New("the store was written in another format (another edged version)")

// batchKey describes one stored batch (and one of its pages).
type batchKey struct {
	seg         uint32
	first, last uint64
	bytes, n    uint32
	pages, page uint16
}

func (k batchKey) append(dst []byte) []byte {
	dst = segPrefix(dst, k.seg)
	dst = binary.BigEndian.AppendUint64(dst, k.last)
	dst = binary.BigEndian.AppendUint64(dst, k.first)
	dst = binary.BigEndian.AppendUint32(dst, k.bytes)
	dst = binary.BigEndian.AppendUint32(dst, k.n)
	dst = binary.BigEndian.AppendUint16(dst, k.pages)
	return binary.BigEndian.AppendUint16(dst, k.page)
}

func parseBatchKey(b []byte) (batchKey, bool) {
	if len(b) != batchKeyLen || b[0] != batchPrefix {
		return batchKey{}, false
	}
	k := batchKey{
		seg:   binary.BigEndian.Uint32(b[1:5]),
		last:  binary.BigEndian.Uint64(b[5:13]),
		first: binary.BigEndian.Uint64(b[13:21]),
		bytes: binary.BigEndian.Uint32(b[21:25]),
		n:     binary.BigEndian.Uint32(b[25:29]),
		pages: binary.BigEndian.Uint16(b[29:31]),
		page:  binary.BigEndian.Uint16(b[31:33]),
	}
	return k, k.first <= k.last && k.page < k.pages
}

// sameBatch reports whether a and b are keys of the same batch.
func sameBatch(a, b batchKey) bool { a.page, b.page = 0, 0; return a == b }

// pagesFor is how many pages a batch value of n bytes takes.
func pagesFor(n int) int { return max(1, (n+pageBytes-1)/pageBytes) }

// segPrefix appends the key prefix of segment seg.
func segPrefix(dst []byte, seg uint32) []byte {
	dst = append(dst, batchPrefix)
	return binary.BigEndian.AppendUint32(dst, seg)
}

// seekKey is where a seek for the batch holding seq, in segment seg,
// starts.
func seekKey(dst []byte, seg uint32, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(segPrefix(dst, seg), seq)
}

// segment is a run of stored batches under one key prefix.
type segment struct {
	id          uint32
	first, last uint64 // the first and last sequence numbers stored in it
	bytes       int64  // the size of its batches' values
}

// appendRecord appends one slot of a batch value; nil raw is an empty slot.
func appendRecord(dst, raw []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(raw)))
	return append(dst, raw...)
}

// loadedBatch is a stored batch read into memory, with its records
// indexed.
type loadedBatch struct {
	key batchKey
	val []byte
	off []int32 // record i (seq first+i) is val[off[i]:off[i+1]] minus its length prefix; see raw
	len []int32
}

// parse indexes lb.val for lb.key.
func (lb *loadedBatch) parse() error {
	n := int(lb.key.last - lb.key.first + 1)
	if n <= 0 || n > len(lb.val)+1 {
		return fmt.Errorf("batch %d..%d: %d bytes cannot hold its records", lb.key.first, lb.key.last, len(lb.val))
	}
	lb.off, lb.len = lb.off[:0], lb.len[:0]
	p := 0
	for i := 0; i < n; i++ {
		l, w := binary.Uvarint(lb.val[p:])
		if w <= 0 || l > uint64(len(lb.val)-p-w) {
			return fmt.Errorf("batch %d..%d: record %d is damaged", lb.key.first, lb.key.last, i)
		}
		p += w
		lb.off = append(lb.off, int32(p))
		lb.len = append(lb.len, int32(l))
		p += int(l)
	}
	return nil
}

// raw returns the encoded entry seq, nil for an empty slot or a seq out
// of the batch. It is capped so that appending to it cannot overwrite the
// next record.
func (lb *loadedBatch) raw(seq uint64) []byte {
	if seq < lb.key.first || seq > lb.key.last {
		return nil
	}
	i := seq - lb.key.first
	if lb.len[i] == 0 {
		return nil
	}
	o, e := lb.off[i], lb.off[i]+lb.len[i]
	return lb.val[o:e:e]
}

func (lb *loadedBatch) holds(seq uint64) bool {
	return lb.val != nil && lb.key.first <= seq && seq <= lb.key.last
}

// encodeState encodes the queue state; at most maxStateSpans ranges, the
// oldest ones (those most likely to be resent soon).
func encodeState(dst []byte, oldest, next uint64, dead intervals) []byte {
	dst = binary.BigEndian.AppendUint64(dst, oldest)
	dst = binary.BigEndian.AppendUint64(dst, next)
	for i, s := range dead {
		if i == maxStateSpans {
			break
		}
		dst = binary.BigEndian.AppendUint64(dst, s.lo)
		dst = binary.BigEndian.AppendUint64(dst, s.hi)
	}
	return dst
}

func decodeState(b []byte) (oldest, next uint64, dead intervals, err error) {
	if len(b) < 16 || (len(b)-16)%16 != 0 {
		return 0, 0, nil, fmt.Errorf("queue state of %d bytes is damaged", len(b))
	}
	oldest, next = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	for p := 16; p < len(b); p += 16 {
		lo, hi := binary.BigEndian.Uint64(b[p:]), binary.BigEndian.Uint64(b[p+8:])
		if lo > hi || (len(dead) > 0 && lo <= dead[len(dead)-1].hi+1) {
			return 0, 0, nil, fmt.Errorf("queue state: ranges out of order at %d", lo)
		}
		dead = append(dead, span{lo, hi})
	}
	return oldest, next, dead, nil
}
