package serial

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestCRCKnownFrame(t *testing.T) {
	// Read holding registers 0+1 of unit 1: 01 03 00 00 00 01 84 0A.
	f := AppendCRC([]byte{1, 3, 0, 0, 0, 1})
	if f[6] != 0x84 || f[7] != 0x0A || !CheckCRC(f) {
		t.Fatalf("frame % x", f)
	}
}

func TestResponseLength(t *testing.T) {
	for _, c := range []struct {
		req  []byte
		want int
	}{
		{[]byte{1, 3, 0, 0, 0, 125}, 255}, {[]byte{1, 4, 0, 0, 0, 1}, 7},
		{[]byte{1, 1, 0, 0, 0, 9}, 7}, {[]byte{1, 2, 0, 0, 0x07, 0xD0}, 255},
		{[]byte{1, 5, 0, 1, 0xFF, 0}, 8}, {[]byte{1, 6, 0, 1, 0, 1}, 8},
		{[]byte{1, 16, 0, 1, 0, 1, 2, 0, 7}, 8}, {[]byte{1, 15, 0, 1, 0, 1, 1, 1}, 8},
	} {
		got, err := ResponseLength(AppendCRC(c.req))
		if err != nil || got != c.want {
			t.Errorf("% x: %d %v, want %d", c.req, got, err, c.want)
		}
	}
	for _, bad := range [][]byte{{1, 3, 0, 0, 0, 126}, {1, 3, 0, 0, 0, 0}, {1, 43, 0, 0, 0, 1}, {1, 3}} {
		if _, err := ResponseLength(AppendCRC(bad)); !errors.Is(err, ErrFrame) {
			t.Errorf("% x: %v, want ErrFrame", bad, err)
		}
	}
}

func TestCheckResponse(t *testing.T) {
	req := AppendCRC([]byte{1, 3, 0, 0, 0, 1})
	ok := AppendCRC([]byte{1, 3, 2, 0x12, 0x34})
	if err := CheckResponse(req, ok); err != nil {
		t.Fatal(err)
	}
	if err := CheckResponse(req, AppendCRC([]byte{1, 0x83, 2})); err != nil {
		t.Errorf("exception: %v", err)
	}
	bad := append([]byte(nil), ok...)
	bad[3] ^= 1
	if err := CheckResponse(req, bad); !errors.Is(err, ErrCRC) {
		t.Errorf("flipped bit: %v", err)
	}
	if err := CheckResponse(req, AppendCRC([]byte{2, 3, 2, 0x12, 0x34})); !errors.Is(err, ErrFrame) {
		t.Errorf("other unit: %v", err)
	}
}

func TestTiming(t *testing.T) {
	m := Mode{Baud: 9600, DataBits: 8, Parity: "even", StopBits: 1}
	if m.BitsPerChar() != 11 || m.String() != "9600 8E1" {
		t.Fatal(m.BitsPerChar(), m.String())
	}
	if s := m.Silence(); s < 4000*time.Microsecond || s > 4020*time.Microsecond {
		t.Errorf("silence at 9600 = %v, want 3.5 × 11 bits ≈ 4.01ms", s)
	}
	if s := (Mode{Baud: 115200, DataBits: 8, Parity: "none", StopBits: 1}).Silence(); s != 1750*time.Microsecond {
		t.Errorf("silence at 115200 = %v, want 1.75ms fixed", s)
	}
	if err := (Mode{Baud: 9600, DataBits: 9, Parity: "mark", StopBits: 3}).Validate(); err == nil {
		t.Error("bad mode accepted")
	}
}

// FuzzFrames: the length computation and the answer check never panic, a
// sized request accepts exactly its own well-formed answer, and any change
// to one byte of that answer is caught.
func FuzzFrames(f *testing.F) {
	f.Add([]byte{1, 3, 0, 0, 0, 10}, []byte{1, 2, 3}, uint8(4))
	f.Add([]byte{7, 1, 0, 3, 0, 17}, []byte{0xFF}, uint8(0))
	f.Add([]byte{9, 16, 0, 3, 0, 1, 2, 0, 1}, []byte{}, uint8(2))
	f.Add([]byte{1, 0x83}, []byte{2}, uint8(1))
	f.Fuzz(func(t *testing.T, req, payload []byte, flip uint8) {
		req = AppendCRC(req)
		n, err := ResponseLength(req)
		_ = CheckResponse(req, payload) // must not panic on garbage
		if err != nil {
			return
		}
		if n < ExceptionLength || n > MaxFrame {
			t.Fatalf("length %d for % x", n, req)
		}
		resp := make([]byte, n-2)
		resp[0], resp[1] = req[0], req[1]
		if req[1] <= 4 {
			resp[2] = byte(n - 5)
			copy(resp[3:], payload)
		} else {
			copy(resp[2:], req[2:min(len(req)-2, 6)])
		}
		resp = AppendCRC(resp)
		if err := CheckResponse(req, resp); err != nil {
			t.Fatalf("own answer % x to % x: %v", resp, req, err)
		}
		i := int(flip) % len(resp)
		resp[i] ^= 0x01
		if CheckResponse(req, resp) == nil {
			t.Fatalf("a flipped bit at %d went through: % x", i, resp)
		}
		ex := AppendCRC([]byte{req[0], req[1] | 0x80, 2})
		if err := CheckResponse(req, ex); err != nil || binary.LittleEndian.Uint16(ex[3:]) != CRC(ex[:3]) {
			t.Fatalf("exception answer: %v", err)
		}
	})
}
