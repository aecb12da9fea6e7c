package buffer

import (
	"bytes"
	"testing"
)

// FuzzStoredBatch: whatever a damaged SD card hands back as a batch key
// and value, parsing it and reading its entries returns an error or
// entries inside the value, never a panic; a well-formed batch reads back
// exactly what was encoded.
func FuzzStoredBatch(f *testing.F) {
	raw := func(topic, payload string) []byte {
		v := make([]byte, headerLen, headerLen+len(topic)+len(payload))
		v[9], v[10] = 0, byte(len(topic))
		return append(append(v, topic...), payload...)
	}
	good := appendRecord(appendRecord(appendRecord(nil, raw("a/b", `{"v":1}`)), nil), raw("c", "x"))
	f.Add(batchKey{seg: 1, first: 10, last: 12, bytes: 40, n: 2, pages: 1}.append(nil), good)
	f.Add(batchKey{first: 0, last: 0, pages: 1}.append(nil), []byte{0})
	f.Add(batchKey{first: 5, last: 4, pages: 1}.append(nil), []byte{})
	f.Add([]byte("b\x00\x00"), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		k, ok := parseBatchKey(key)
		if !ok {
			return
		}
		if k.last-k.first > 1<<16 {
			return // a key claiming more slots than a value can hold is refused by parse anyway
		}
		lb := loadedBatch{key: k, val: val}
		if err := lb.parse(); err != nil {
			return
		}
		for seq := k.first; ; seq++ {
			r := lb.raw(seq)
			if r != nil {
				if !bytes.Contains(val, r) {
					t.Fatalf("entry %d is not inside the value", seq)
				}
				var e Entry
				if decode(&e, seq, r) && (len(e.Topic)+len(e.Payload)+headerLen != len(r)) {
					t.Fatalf("entry %d decodes to %d+%d bytes of %d", seq, len(e.Topic), len(e.Payload), len(r))
				}
			}
			if seq == k.last {
				break
			}
		}
	})
}

// FuzzState: a damaged queue state is refused or decoded into ordered,
// disjoint ranges; encoding what was decoded gives it back.
func FuzzState(f *testing.F) {
	f.Add(encodeState(nil, 5, 100, intervals{{7, 9}, {20, 20}}))
	f.Add(encodeState(nil, 0, 0, nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		oldest, next, dead, err := decodeState(b)
		if err != nil {
			return
		}
		for i, s := range dead {
			if s.lo > s.hi || (i > 0 && s.lo <= dead[i-1].hi+1) {
				t.Fatalf("decoded ranges out of order: %v", dead)
			}
		}
		if len(dead) <= maxStateSpans && !bytes.Equal(encodeState(nil, oldest, next, dead), b) {
			t.Fatalf("state does not round-trip")
		}
	})
}
