package mapping

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// TestEncode checks Encode against the hand-written wire bytes of the decode
// table: every case that is not one-way must encode to exactly those bytes.
func TestEncode(t *testing.T) {
	for _, c := range decodeTable() {
		if c.oneWay {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			s := c.spec
			if err := s.Init(); err != nil {
				t.Fatalf("Init: %v", err)
			}
			v := c.want
			if s.scaled() {
				// The hand-written value may differ from the decoded one in
				// the last bit; encode what Decode gives.
				var err error
				if v, err = s.Decode(wire(c.wire)); err != nil {
					t.Fatal(err)
				}
			}
			prefix := []byte{0xAA}
			got, err := s.Encode(v, prefix)
			if err != nil {
				t.Fatalf("Encode(%+v): %v", v, err)
			}
			if want := append([]byte{0xAA}, wire(c.wire)...); !bytes.Equal(got, want) {
				t.Fatalf("Encode(%+v) = % X, want % X", v, got, want)
			}
		})
	}
}

func TestEncodeKinds(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		v    Value
		wire string
	}{
		{"int16 from uint", Spec{Type: TypeInt16}, uintV(7), "00 07"},
		{"int16 from whole float", Spec{Type: TypeInt16}, floatV(-2), "FF FE"},
		{"uint64 from int", Spec{Type: TypeUint64}, intV(1), "00 00 00 00 00 00 00 01"},
		{"uint64 max from float 2^64-2048", Spec{Type: TypeUint64}, floatV(18446744073709549568), "FF FF FF FF FF FF F8 00"},
		{"int64 min from float", Spec{Type: TypeInt64}, floatV(-9223372036854775808), "80 00 00 00 00 00 00 00"},
		{"float32 from int", Spec{Type: TypeFloat32}, intV(-1), "BF 80 00 00"},
		{"float64 from uint", Spec{Type: TypeFloat64}, uintV(1), "3F F0 00 00 00 00 00 00"},
		{"float32 rounds", Spec{Type: TypeFloat32}, floatV(0.1), "3D CC CC CD"},
		{"bool from 1", Spec{Type: TypeBool}, intV(1), "00 01"},
		{"bool from 0.0", Spec{Type: TypeBool, Bit: intp(4)}, floatV(0), "00 00"},
		{"bool bit 4 BADC", Spec{Type: TypeBool, Bit: intp(4), Order: OrderBADC}, boolV(true), "10 00"},
		{"scaled int16 rounds to nearest", Spec{Type: TypeInt16, Scale: 0.1}, floatV(-12.34), "FF 85"},
		{"scaled int16 from int", Spec{Type: TypeInt16, Scale: 0.5, Offset: 10}, intV(60), "00 64"},
		{"scaled uint16 top of range", Spec{Type: TypeUint16, Offset: -40}, floatV(65495), "FF FF"},
		{"scaled float32", Spec{Type: TypeFloat32, Scale: 2, Offset: 1}, floatV(-2), "BF C0 00 00"},
		{"string padded with NULs", Spec{Type: TypeString, Length: 3}, strV("AB"), "41 42 00 00 00 00"},
		{"string odd BADC", Spec{Type: TypeString, Length: 2, Order: OrderDCBA}, strV("ABC"), "42 41 00 43"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.spec.Encode(tt.v, nil)
			if err != nil {
				t.Fatalf("Encode(%+v): %v", tt.v, err)
			}
			if want := wire(tt.wire); !bytes.Equal(got, want) {
				t.Fatalf("Encode(%+v) = % X, want % X", tt.v, got, want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		v       Value
		isRange bool
		want    string // part of the message that says what is allowed
	}{
		{"int16 too big", Spec{Type: TypeInt16}, intV(32768), true, "-32768..32767"},
		{"int16 too small", Spec{Type: TypeInt16}, intV(-32769), true, "-32768..32767"},
		{"int16 uint too big", Spec{Type: TypeInt16}, uintV(40000), true, "-32768..32767"},
		{"uint16 negative", Spec{Type: TypeUint16}, intV(-1), true, "0..65535"},
		{"uint16 float too big", Spec{Type: TypeUint16}, floatV(65536), true, "0..65535"},
		{"int32 too big", Spec{Type: TypeInt32}, intV(1 << 31), true, "-2147483648..2147483647"},
		{"uint32 too big", Spec{Type: TypeUint32}, uintV(1 << 32), true, "0..4294967295"},
		{"int64 from huge uint", Spec{Type: TypeInt64}, uintV(1 << 63), true, "..9223372036854775807"},
		{"int64 from 2^63 float", Spec{Type: TypeInt64}, floatV(9223372036854775808), true, "..9223372036854775807"},
		{"uint64 negative", Spec{Type: TypeUint64}, intV(-1), true, "0..18446744073709551615"},
		{"uint64 from 2^64 float", Spec{Type: TypeUint64}, floatV(18446744073709551616), true, "0..18446744073709551615"},
		{"int16 NaN", Spec{Type: TypeInt16}, floatV(math.NaN()), true, "-32768..32767"},
		{"int32 +Inf", Spec{Type: TypeInt32}, floatV(math.Inf(1)), true, "-2147483648..2147483647"},
		{"scaled int16 over range", Spec{Type: TypeInt16, Scale: 0.1}, floatV(3276.75), true, "after scale and offset"},
		{"scaled uint16 under offset", Spec{Type: TypeUint16, Offset: -40}, floatV(-41), true, "0..65535"},
		{"float32 too big", Spec{Type: TypeFloat32}, floatV(1e39), true, "float32"},
		{"string too long", Spec{Type: TypeString, Length: 2}, strV("ABCDE"), true, "up to 4 bytes"},
		{"int32 fraction", Spec{Type: TypeInt32}, floatV(1.5), false, "whole numbers"},
		{"int16 from string", Spec{Type: TypeInt16}, strV("1"), false, "allowed are numbers"},
		{"float64 from bool", Spec{Type: TypeFloat64}, boolV(true), false, "allowed are numbers"},
		{"float32 from none", Spec{Type: TypeFloat32}, Value{}, false, "allowed are numbers"},
		{"bool from 2", Spec{Type: TypeBool}, intV(2), false, "true, false, 0 and 1"},
		{"bool from string", Spec{Type: TypeBool, Bit: intp(1)}, strV("on"), false, "true, false, 0 and 1"},
		{"string from int", Spec{Type: TypeString, Length: 2}, intV(1), false, "allowed are strings"},
		{"string with NUL", Spec{Type: TypeString, Length: 2}, strV("A\x00B"), false, "NUL"},
		{"type missing", Spec{}, intV(1), false, "run Init"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte{1, 2}
			got, err := tt.spec.Encode(tt.v, dst)
			if err == nil {
				t.Fatalf("Encode(%+v) = % X, want an error", tt.v, got)
			}
			if errors.Is(err, ErrRange) != tt.isRange {
				t.Errorf("errors.Is(%q, ErrRange) = %v, want %v", err, !tt.isRange, tt.isRange)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Encode = %q, want it to contain %q", err, tt.want)
			}
			if !bytes.Equal(got, []byte{1, 2}) {
				t.Errorf("dst on error = % X, want it unchanged", got)
			}
		})
	}
}

// genValue draws a value that an unscaled tag of type t can hold, in the
// kind Decode gives for it.
func genValue(t *rapid.T, s *Spec) Value {
	switch s.Type {
	case TypeBool:
		return boolV(rapid.Bool().Draw(t, "bool"))
	case TypeInt16:
		return intV(int64(rapid.Int16().Draw(t, "int16")))
	case TypeUint16:
		return uintV(uint64(rapid.Uint16().Draw(t, "uint16")))
	case TypeInt32:
		return intV(int64(rapid.Int32().Draw(t, "int32")))
	case TypeUint32:
		return uintV(uint64(rapid.Uint32().Draw(t, "uint32")))
	case TypeInt64:
		return intV(rapid.Int64().Draw(t, "int64"))
	case TypeUint64:
		return uintV(rapid.Uint64().Draw(t, "uint64"))
	case TypeFloat32:
		// Any bit pattern: NaNs, infinities, denormals, -0.
		return floatV(float64(math.Float32frombits(rapid.Uint32().Draw(t, "float32 bits"))))
	case TypeFloat64:
		return floatV(math.Float64frombits(rapid.Uint64().Draw(t, "float64 bits")))
	}
	// A string as Decode would give it: valid UTF-8 without NUL or trailing
	// spaces, fitting 2*Length bytes.
	var b []byte
	for _, r := range rapid.SliceOfN(rapid.Rune(), 0, 2*s.Length).Draw(t, "runes") {
		if r != 0 && utf8.ValidRune(r) && len(b)+utf8.RuneLen(r) <= 2*s.Length {
			b = utf8.AppendRune(b, r)
		}
	}
	str := strings.TrimRight(string(b), " ")
	return strV(str)
}

func genSpec(t *rapid.T, scaled bool) Spec {
	s := Spec{
		Name:  "x",
		Type:  Type(rapid.IntRange(int(TypeBool), int(TypeString)).Draw(t, "type")),
		Order: Order(rapid.IntRange(int(OrderABCD), int(OrderDCBA)).Draw(t, "order")),
	}
	switch s.Type {
	case TypeBool:
		if rapid.Bool().Draw(t, "has bit") {
			s.Bit = intp(rapid.IntRange(0, 15).Draw(t, "bit"))
		}
	case TypeString:
		s.Length = rapid.IntRange(1, 125).Draw(t, "length")
	default:
		if scaled {
			s.Scale = rapid.SampledFrom([]float64{0, 1, 0.1, 0.01, 10, -2.5, 0.001}).Draw(t, "scale")
			s.Offset = rapid.SampledFrom([]float64{0, -40, 273.15, 1e3}).Draw(t, "offset")
		}
	}
	if err := s.Init(); err != nil {
		t.Fatalf("Init(%+v): %v", s, err)
	}
	return s
}

// TestEncodeDecodeRoundTrip: for every type and order, Decode(Encode(v)) is
// v, and Encode appends exactly Words registers.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSpec(t, false)
		v := genValue(t, &s)
		raw, err := s.Encode(v, nil)
		if err != nil {
			t.Fatalf("Encode(%+v) with %+v: %v", v, s, err)
		}
		if len(raw) != 2*s.Words() {
			t.Fatalf("Encode gave %d bytes, want %d", len(raw), 2*s.Words())
		}
		got, err := s.Decode(raw)
		if err != nil {
			t.Fatalf("Decode(% X): %v", raw, err)
		}
		if !sameValue(got, v, false) {
			t.Fatalf("Decode(Encode(%+v)) = %+v (wire % X, spec %+v)", v, got, raw, s)
		}
	})
}

// TestDecodeEncodeRoundTrip: for every numeric type and order, including
// scaled integers, Encode(Decode(raw)) gives back raw, except where Decode
// loses information: NaN payloads, scaled floats (the arithmetic rounds),
// scaled 64-bit integers beyond float64's 53 bits.
func TestDecodeEncodeRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSpec(t, true)
		if s.Type == TypeString || s.Type == TypeBool {
			t.Skip("not bijective")
		}
		if s.scaled() && (s.Type == TypeFloat32 || s.Type == TypeFloat64) {
			t.Skip("scaling a float rounds it")
		}
		raw := rapid.SliceOfN(rapid.Byte(), 2*s.Words(), 2*s.Words()).Draw(t, "raw")
		if s.scaled() && (s.Type == TypeInt64 || s.Type == TypeUint64) {
			// Keep the raw value within float64's exact integers.
			s2 := s
			s2.Scale, s2.Offset = 0, 0
			v, _ := s2.Decode(raw)
			if f, _ := v.Float64(); math.Abs(f) > 1<<50 {
				t.Skip("beyond float64 precision")
			}
		}
		v, err := s.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if v.Kind == KindFloat && math.IsNaN(v.Float) {
			t.Skip("NaN payloads are not preserved")
		}
		back, err := s.Encode(v, nil)
		if err != nil {
			t.Fatalf("Encode(%+v) with %+v: %v", v, s, err)
		}
		if !bytes.Equal(back, raw) {
			t.Fatalf("Encode(Decode(% X)) = % X (value %+v, spec %+v)", raw, back, v, s)
		}
	})
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 64)
	for _, typ := range []Type{TypeBool, TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64, TypeFloat32, TypeFloat64} {
		s := Spec{Name: "x", Type: typ, Order: OrderDCBA, Scale: 0.1}
		if typ == TypeBool {
			s.Scale = 0
		}
		v := floatV(1)
		if n := testing.AllocsPerRun(100, func() { _, _ = s.Encode(v, dst[:0]) }); n != 0 {
			t.Errorf("%s: %v allocs per Encode, want 0", typ, n)
		}
	}
}

// TestScaleInverse: ToRaw undoes ToEngineering, the transform of reads and
// writes alike.
func TestScaleInverse(t *testing.T) {
	for _, s := range []Spec{{Scale: 0.1, Offset: -40}, {Scale: 0, Offset: 3}, {Scale: 2.5}, {}} {
		for _, raw := range []float64{0, 1, 123.5, -7} {
			if got := s.ToRaw(s.ToEngineering(raw)); math.Abs(got-raw) > 1e-9 {
				t.Errorf("scale %v offset %v: ToRaw(ToEngineering(%v)) = %v", s.Scale, s.Offset, raw, got)
			}
		}
	}
	if s := (Spec{Scale: 0.1, Offset: -40}); s.ToEngineering(1000) != 60 || !s.Scaled() || (&Spec{Scale: 1}).Scaled() {
		t.Errorf("ToEngineering(1000) = %v", s.ToEngineering(1000))
	}
}
