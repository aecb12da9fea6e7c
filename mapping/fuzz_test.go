package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"unicode/utf8"
)

var (
	fuzzScales  = [...]float64{0, 1, 0.1, 10, -2.5, 0.001, 1e-300, 1e300}
	fuzzOffsets = [...]float64{0, -40, 273.15, 1e308}
)

// FuzzDecode feeds arbitrary specs and bytes to Decode and Encode. They must
// never panic; for a spec that Init accepts, Decode fails only with ErrShort
// on short input, what it decodes makes a valid JSON payload, and Encode
// gives it back consistently (the same wire bytes for unscaled numbers).
// Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for typ := TypeBool; typ <= TypeString; typ++ {
		for o := OrderABCD; o <= OrderDCBA; o++ {
			f.Add(uint8(typ), uint8(o), int8(-1), uint8(4), uint8(0), []byte{0x42, 0xF6, 0xE9, 0x79, 0x80, 0, 0, 1})
		}
	}
	f.Add(uint8(TypeBool), uint8(OrderBADC), int8(9), uint8(0), uint8(0), []byte{0x02, 0x00})
	f.Add(uint8(TypeInt16), uint8(OrderABCD), int8(-1), uint8(0), uint8(0x21), []byte{0xFF, 0x85})
	f.Add(uint8(TypeUint64), uint8(OrderDCBA), int8(-1), uint8(0), uint8(0x13), []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add(uint8(TypeString), uint8(OrderBADC), int8(-1), uint8(3), uint8(0), []byte("BA\xffC \x00"))
	f.Add(uint8(TypeFloat64), uint8(OrderCDAB), int8(-1), uint8(0), uint8(0), []byte{0x7F, 0xF8, 0, 0, 0, 0, 0, 1})

	f.Fuzz(func(t *testing.T, typ, order uint8, bit int8, length, scaling uint8, raw []byte) {
		s := Spec{
			Name:   "x",
			Type:   Type(typ % 12), // includes 0 and one unknown type
			Order:  Order(order % 5),
			Length: int(length),
			Scale:  fuzzScales[scaling&7],
			Offset: fuzzOffsets[scaling>>3&3],
		}
		if bit >= 0 {
			b := int(bit)
			s.Bit = &b
		}
		initErr := s.Init()
		v, err := s.Decode(raw) // must not panic, Init or not
		if initErr != nil {
			_, _ = s.Encode(v, nil) // nor Encode
			return
		}
		if err != nil {
			if !errors.Is(err, ErrShort) || len(raw) >= 2*s.Words() {
				t.Fatalf("Decode(% X) with %+v: %v", raw, s, err)
			}
			return
		}
		n := 2 * s.Words()

		// The payload of any decoded value is valid JSON.
		if p := AppendJSON(nil, &Sample{Tag: &s, Value: v}); !json.Valid(p) {
			t.Fatalf("AppendJSON of %+v = %q, not valid JSON", v, p)
		}

		switch {
		case s.Type == TypeString:
			if v.Kind != KindString || !utf8.ValidString(v.Str) || bytes.IndexByte([]byte(v.Str), 0) >= 0 {
				t.Fatalf("Decode string = %+v", v)
			}
			back, err := s.Encode(v, nil)
			if len(v.Str) > n {
				// U+FFFD is longer than the bytes it replaced.
				if !errors.Is(err, ErrRange) {
					t.Fatalf("Encode(%q) of %d bytes into %d: %v, want ErrRange", v.Str, len(v.Str), n, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Encode(%+v): %v", v, err)
			}
			if again, err := s.Decode(back); err != nil || again != v {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", v.Str, again.Str, err)
			}
		case s.Type == TypeBool:
			back, err := s.Encode(v, nil)
			if err != nil {
				t.Fatalf("Encode(%+v): %v", v, err)
			}
			if again, err := s.Decode(back); err != nil || again != v {
				t.Fatalf("Decode(Encode(%+v)) = %+v, %v", v, again, err)
			}
		case !s.scaled():
			// Unscaled numbers re-encode to the same wire bytes, except that
			// a NaN may come back with another payload.
			back, err := s.Encode(v, nil)
			if err != nil {
				t.Fatalf("Encode(%+v): %v", v, err)
			}
			if v.Kind == KindFloat && math.IsNaN(v.Float) {
				if again, err := s.Decode(back); err != nil || !math.IsNaN(again.Float) {
					t.Fatalf("Decode(Encode(NaN)) = %+v, %v", again, err)
				}
				return
			}
			if !bytes.Equal(back, raw[:n]) {
				t.Fatalf("Encode(Decode(% X)) = % X (value %+v, spec %+v)", raw[:n], back, v, s)
			}
		default:
			if v.Kind != KindFloat {
				t.Fatalf("scaled value %+v is not a float", v)
			}
			// Scaled integers of 32 bits or less re-encode exactly with
			// moderate scales and offsets.
			moderate := s.Scale == 0 || math.Abs(s.Scale) >= 0.001 && math.Abs(s.Scale) <= 10
			moderate = moderate && math.Abs(s.Offset) <= 1000
			if s.Type.Words() <= 2 && s.Type != TypeFloat32 && moderate {
				back, err := s.Encode(v, nil)
				if err != nil || !bytes.Equal(back, raw[:n]) {
					t.Fatalf("Encode(Decode(% X)) = % X, %v (value %+v, spec %+v)", raw[:n], back, err, v, s)
				}
				return
			}
			// Otherwise Encode may refuse (out of range after rounding) but
			// what it gives must decode without error.
			if back, err := s.Encode(v, nil); err == nil {
				if _, err := s.Decode(back); err != nil {
					t.Fatalf("Decode(Encode(%+v)) = %v", v, err)
				}
			} else if !errors.Is(err, ErrRange) {
				t.Fatalf("Encode(%+v) = %v, want nil or ErrRange", v, err)
			}
		}
	})
}
