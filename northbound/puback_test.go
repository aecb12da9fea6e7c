package northbound

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

func TestReadPuback(t *testing.T) {
	cases := []struct {
		name   string
		in     []byte
		ok     bool
		id     uint16
		reason byte
	}{
		{"no reason code", []byte{0x40, 2, 0x12, 0x34}, true, 0x1234, 0},
		{"reason code", []byte{0x40, 3, 0, 7, 0x87}, true, 7, 0x87},
		{"reason and properties", []byte{0x40, 8, 0, 9, 0x97, 4, 0x1f, 0, 1, 'q'}, true, 9, 0x97},
		{"a PUBLISH is left alone", []byte{0x30, 4, 0, 1, 't', 0}, false, 0, 0},
		{"a long reason string is left to the library", append([]byte{0x40, 0x83, 0x01, 0, 5, 0x80, 0x7f, 0x1f, 0, 0x7c}, make([]byte, 0x7c)...), false, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(tc.in))
			id, reason, ok, err := readPuback(r)
			if err != nil || ok != tc.ok || id != tc.id || reason != tc.reason {
				t.Fatalf("readPuback = %d, 0x%02x, %v, %v; want %d, 0x%02x, %v", id, reason, ok, err, tc.id, tc.reason, tc.ok)
			}
			if !ok {
				// Nothing consumed: the library reads the same packet.
				if _, err := packets.ReadPacket(r); err != nil {
					t.Fatalf("after ok=false the packet no longer parses: %v", err)
				}
			} else if r.Buffered() != 0 {
				t.Fatalf("%d bytes left after the PUBACK", r.Buffered())
			}
		})
	}
}

// FuzzReadPuback: where the fast path takes a packet, the library reads
// the same PUBACK from the same bytes; it never panics, and it reads two
// packets in a row as the library would.
func FuzzReadPuback(f *testing.F) {
	f.Add([]byte{0x40, 2, 0x12, 0x34, 0x40, 3, 0, 7, 0x87})
	f.Add([]byte{0x40, 8, 0, 9, 0x97, 4, 0x1f, 0, 1, 'q'})
	f.Add([]byte{0x40, 1, 0})
	f.Add([]byte{0x30, 3, 0, 1, 't'})
	f.Fuzz(func(t *testing.T, in []byte) {
		fast := bufio.NewReader(bytes.NewReader(in))
		lib := bufio.NewReader(bytes.NewReader(in))
		for range 2 {
			id, reason, ok, err := readPuback(fast)
			if err != nil || !ok {
				return
			}
			cp, lerr := packets.ReadPacket(lib)
			if lerr != nil {
				return // the library is stricter about properties; both end the session on the next read
			}
			pa, isAck := cp.Content.(*packets.Puback)
			if !isAck || pa.PacketID != id || pa.ReasonCode != reason {
				t.Fatalf("fast path read id %d reason 0x%02x, library %+v", id, reason, cp.Content)
			}
		}
	})
}
