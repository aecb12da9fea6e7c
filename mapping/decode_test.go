package mapping

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
)

// wire turns "42 F6 E9 79" into bytes; the expected register bytes in these
// tests are written out by hand, not computed by the code under test.
func wire(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func intp(i int) *int { return &i }

func f32(f float32) float64 { return float64(f) }

type decodeCase struct {
	name string
	spec Spec
	wire string
	want Value
	// oneWay marks cases that Encode cannot reproduce byte for byte:
	// padded or invalid strings, a bool register with other bits set.
	oneWay bool
}

// decodeCases builds, for one value, a case per order from the wire bytes
// written for ABCD, CDAB, BADC and DCBA (in that order).
func byOrder(name string, spec Spec, want Value, abcd, cdab, badc, dcba string) []decodeCase {
	var cs []decodeCase
	for i, w := range []string{abcd, cdab, badc, dcba} {
		s := spec
		s.Order = Order(i)
		cs = append(cs, decodeCase{name: name + "/" + s.Order.String(), spec: s, wire: w, want: want})
	}
	return cs
}

func intV(i int64) Value     { return Value{Kind: KindInt, Int: i} }
func uintV(u uint64) Value   { return Value{Kind: KindUint, Uint: u} }
func floatV(f float64) Value { return Value{Kind: KindFloat, Float: f} }
func strV(s string) Value    { return Value{Kind: KindString, Str: s} }
func boolV(b bool) Value     { return Value{Kind: KindBool, Bool: b} }

func decodeTable() []decodeCase {
	var cs []decodeCase
	add := func(c ...decodeCase) { cs = append(cs, c...) }
	str := func(n int) Spec { return Spec{Name: "s", Type: TypeString, Length: n} }
	bit := func(b int) Spec { return Spec{Name: "b", Type: TypeBool, Bit: intp(b)} }
	typ := func(t Type) Spec { return Spec{Name: "x", Type: t} }

	// bool: one bit of a register; BADC and DCBA swap the register's bytes.
	add(byOrder("bool/bit2=1", bit(2), boolV(true), "00 04", "00 04", "04 00", "04 00")...)
	add(byOrder("bool/bit10=1", bit(10), boolV(true), "04 00", "04 00", "00 04", "00 04")...)
	add(byOrder("bool/bit15=1", bit(15), boolV(true), "80 00", "80 00", "00 80", "00 80")...)
	add(byOrder("bool/bit0=1", bit(0), boolV(true), "00 01", "00 01", "01 00", "01 00")...)
	add(byOrder("bool/bit0=0", bit(0), boolV(false), "00 00", "00 00", "00 00", "00 00")...)
	for _, c := range byOrder("bool/bit3=0,others=1", bit(3), boolV(false), "FF F7", "FF F7", "F7 FF", "F7 FF") {
		c.oneWay = true
		add(c)
	}
	for _, c := range byOrder("bool/bit8=1,others=1", bit(8), boolV(true), "FF FF", "FF FF", "FF FF", "FF FF") {
		c.oneWay = true
		add(c)
	}
	add(decodeCase{name: "bool/nobit/0", spec: typ(TypeBool), wire: "00 00", want: boolV(false)})
	add(decodeCase{name: "bool/nobit/1", spec: typ(TypeBool), wire: "00 01", want: boolV(true)})
	add(decodeCase{name: "bool/nobit/0x0100", spec: typ(TypeBool), wire: "01 00", want: boolV(true), oneWay: true})
	add(decodeCase{name: "bool/nobit/0x0001/DCBA", spec: Spec{Name: "b", Type: TypeBool, Order: OrderDCBA}, wire: "00 01", want: boolV(true)})

	// int16 and uint16: one register; CDAB = ABCD, DCBA = BADC.
	add(byOrder("int16/1", typ(TypeInt16), intV(1), "00 01", "00 01", "01 00", "01 00")...)
	add(byOrder("int16/-1", typ(TypeInt16), intV(-1), "FF FF", "FF FF", "FF FF", "FF FF")...)
	add(byOrder("int16/-2", typ(TypeInt16), intV(-2), "FF FE", "FF FE", "FE FF", "FE FF")...)
	add(byOrder("int16/0x1234", typ(TypeInt16), intV(4660), "12 34", "12 34", "34 12", "34 12")...)
	add(byOrder("int16/min", typ(TypeInt16), intV(-32768), "80 00", "80 00", "00 80", "00 80")...)
	add(byOrder("int16/max", typ(TypeInt16), intV(32767), "7F FF", "7F FF", "FF 7F", "FF 7F")...)
	add(byOrder("uint16/0", typ(TypeUint16), uintV(0), "00 00", "00 00", "00 00", "00 00")...)
	add(byOrder("uint16/0x8000", typ(TypeUint16), uintV(32768), "80 00", "80 00", "00 80", "00 80")...)
	add(byOrder("uint16/0x1234", typ(TypeUint16), uintV(4660), "12 34", "12 34", "34 12", "34 12")...)
	add(byOrder("uint16/max", typ(TypeUint16), uintV(65535), "FF FF", "FF FF", "FF FF", "FF FF")...)

	// int32 and uint32: two registers.
	add(byOrder("int32/0x12345678", typ(TypeInt32), intV(305419896),
		"12 34 56 78", "56 78 12 34", "34 12 78 56", "78 56 34 12")...)
	add(byOrder("int32/-2", typ(TypeInt32), intV(-2),
		"FF FF FF FE", "FF FE FF FF", "FF FF FE FF", "FE FF FF FF")...)
	add(byOrder("int32/-123456", typ(TypeInt32), intV(-123456),
		"FF FE 1D C0", "1D C0 FF FE", "FE FF C0 1D", "C0 1D FE FF")...)
	add(byOrder("int32/min", typ(TypeInt32), intV(math.MinInt32),
		"80 00 00 00", "00 00 80 00", "00 80 00 00", "00 00 00 80")...)
	add(byOrder("int32/max", typ(TypeInt32), intV(math.MaxInt32),
		"7F FF FF FF", "FF FF 7F FF", "FF 7F FF FF", "FF FF FF 7F")...)
	add(byOrder("uint32/0xDEADBEEF", typ(TypeUint32), uintV(3735928559),
		"DE AD BE EF", "BE EF DE AD", "AD DE EF BE", "EF BE AD DE")...)
	add(byOrder("uint32/65536", typ(TypeUint32), uintV(65536),
		"00 01 00 00", "00 00 00 01", "01 00 00 00", "00 00 01 00")...)
	add(byOrder("uint32/max", typ(TypeUint32), uintV(math.MaxUint32),
		"FF FF FF FF", "FF FF FF FF", "FF FF FF FF", "FF FF FF FF")...)

	// int64 and uint64: four registers; CDAB reverses all four words.
	add(byOrder("int64/0x0102030405060708", typ(TypeInt64), intV(72623859790382856),
		"01 02 03 04 05 06 07 08", "07 08 05 06 03 04 01 02",
		"02 01 04 03 06 05 08 07", "08 07 06 05 04 03 02 01")...)
	add(byOrder("int64/-2", typ(TypeInt64), intV(-2),
		"FF FF FF FF FF FF FF FE", "FF FE FF FF FF FF FF FF",
		"FF FF FF FF FF FF FE FF", "FE FF FF FF FF FF FF FF")...)
	add(byOrder("int64/min", typ(TypeInt64), intV(math.MinInt64),
		"80 00 00 00 00 00 00 00", "00 00 00 00 00 00 80 00",
		"00 80 00 00 00 00 00 00", "00 00 00 00 00 00 00 80")...)
	add(byOrder("int64/max", typ(TypeInt64), intV(math.MaxInt64),
		"7F FF FF FF FF FF FF FF", "FF FF FF FF FF FF 7F FF",
		"FF 7F FF FF FF FF FF FF", "FF FF FF FF FF FF FF 7F")...)
	add(byOrder("uint64/0xFEDCBA9876543210", typ(TypeUint64), uintV(18364758544493064720),
		"FE DC BA 98 76 54 32 10", "32 10 76 54 BA 98 FE DC",
		"DC FE 98 BA 54 76 10 32", "10 32 54 76 98 BA DC FE")...)
	add(byOrder("uint64/0x8000000000000001", typ(TypeUint64), uintV(9223372036854775809),
		"80 00 00 00 00 00 00 01", "00 01 00 00 00 00 80 00",
		"00 80 00 00 00 00 01 00", "01 00 00 00 00 00 00 80")...)
	add(byOrder("uint64/max", typ(TypeUint64), uintV(math.MaxUint64),
		"FF FF FF FF FF FF FF FF", "FF FF FF FF FF FF FF FF",
		"FF FF FF FF FF FF FF FF", "FF FF FF FF FF FF FF FF")...)

	// float32: 123.456 = 0x42F6E979.
	add(byOrder("float32/123.456", typ(TypeFloat32), floatV(f32(123.456)),
		"42 F6 E9 79", "E9 79 42 F6", "F6 42 79 E9", "79 E9 F6 42")...)
	add(byOrder("float32/-1.5", typ(TypeFloat32), floatV(-1.5),
		"BF C0 00 00", "00 00 BF C0", "C0 BF 00 00", "00 00 C0 BF")...)
	add(byOrder("float32/0.1", typ(TypeFloat32), floatV(f32(0.1)),
		"3D CC CC CD", "CC CD 3D CC", "CC 3D CD CC", "CD CC CC 3D")...)
	add(byOrder("float32/+Inf", typ(TypeFloat32), floatV(math.Inf(1)),
		"7F 80 00 00", "00 00 7F 80", "80 7F 00 00", "00 00 80 7F")...)
	add(byOrder("float32/-Inf", typ(TypeFloat32), floatV(math.Inf(-1)),
		"FF 80 00 00", "00 00 FF 80", "80 FF 00 00", "00 00 80 FF")...)
	add(byOrder("float32/NaN", typ(TypeFloat32), floatV(math.NaN()),
		"7F C0 00 00", "00 00 7F C0", "C0 7F 00 00", "00 00 C0 7F")...)
	add(byOrder("float32/max", typ(TypeFloat32), floatV(math.MaxFloat32),
		"7F 7F FF FF", "FF FF 7F 7F", "7F 7F FF FF", "FF FF 7F 7F")...)
	add(byOrder("float32/smallest-denormal", typ(TypeFloat32), floatV(math.SmallestNonzeroFloat32),
		"00 00 00 01", "00 01 00 00", "00 00 01 00", "01 00 00 00")...)

	// float64: 123.456 = 0x405EDD2F1A9FBE77.
	add(byOrder("float64/123.456", typ(TypeFloat64), floatV(123.456),
		"40 5E DD 2F 1A 9F BE 77", "BE 77 1A 9F DD 2F 40 5E",
		"5E 40 2F DD 9F 1A 77 BE", "77 BE 9F 1A 2F DD 5E 40")...)
	add(byOrder("float64/-1", typ(TypeFloat64), floatV(-1),
		"BF F0 00 00 00 00 00 00", "00 00 00 00 00 00 BF F0",
		"F0 BF 00 00 00 00 00 00", "00 00 00 00 00 00 F0 BF")...)
	add(byOrder("float64/+Inf", typ(TypeFloat64), floatV(math.Inf(1)),
		"7F F0 00 00 00 00 00 00", "00 00 00 00 00 00 7F F0",
		"F0 7F 00 00 00 00 00 00", "00 00 00 00 00 00 F0 7F")...)
	add(byOrder("float64/-Inf", typ(TypeFloat64), floatV(math.Inf(-1)),
		"FF F0 00 00 00 00 00 00", "00 00 00 00 00 00 FF F0",
		"F0 FF 00 00 00 00 00 00", "00 00 00 00 00 00 F0 FF")...)
	add(byOrder("float64/NaN", typ(TypeFloat64), floatV(math.NaN()),
		"7F F8 00 00 00 00 00 01", "00 01 00 00 00 00 7F F8",
		"F8 7F 00 00 00 00 01 00", "01 00 00 00 00 00 F8 7F")...)
	add(byOrder("float64/max", typ(TypeFloat64), floatV(math.MaxFloat64),
		"7F EF FF FF FF FF FF FF", "FF FF FF FF FF FF 7F EF",
		"EF 7F FF FF FF FF FF FF", "FF FF FF FF FF FF EF 7F")...)

	// strings: two characters per register, in address order; BADC and
	// DCBA put the first character in the low byte.
	add(byOrder("string/full", str(3), strV("ABCDEF"),
		"41 42 43 44 45 46", "41 42 43 44 45 46", "42 41 44 43 46 45", "42 41 44 43 46 45")...)
	add(byOrder("string/odd-length", str(3), strV("ABC"),
		"41 42 43 00 00 00", "41 42 43 00 00 00", "42 41 00 43 00 00", "42 41 00 43 00 00")...)
	add(byOrder("string/trailing-NULs", str(3), strV("HI"),
		"48 49 00 00 00 00", "48 49 00 00 00 00", "49 48 00 00 00 00", "49 48 00 00 00 00")...)
	add(byOrder("string/empty", str(2), strV(""),
		"00 00 00 00", "00 00 00 00", "00 00 00 00", "00 00 00 00")...)
	add(byOrder("string/utf8", str(2), strV("°C"),
		"C2 B0 43 00", "C2 B0 43 00", "B0 C2 00 43", "B0 C2 00 43")...)
	oneWay := func(cs []decodeCase) []decodeCase {
		for i := range cs {
			cs[i].oneWay = true
		}
		return cs
	}
	add(oneWay(byOrder("string/trailing-spaces", str(3), strV("  HI"),
		"20 20 48 49 20 20", "20 20 48 49 20 20", "20 20 49 48 20 20", "20 20 49 48 20 20"))...)
	add(oneWay(byOrder("string/space-then-NUL", str(3), strV("A"),
		"41 20 00 20 20 20", "41 20 00 20 20 20", "20 41 20 00 20 20", "20 41 20 00 20 20"))...)
	add(oneWay(byOrder("string/stops-at-first-NUL", str(3), strV("A"),
		"41 00 42 43 00 00", "41 00 42 43 00 00", "00 41 43 42 00 00", "00 41 43 42 00 00"))...)
	add(oneWay(byOrder("string/invalid-utf8", str(3), strV("A\uFFFDB"),
		"41 FF 42 00 00 00", "41 FF 42 00 00 00", "FF 41 00 42 00 00", "FF 41 00 42 00 00"))...)
	add(oneWay(byOrder("string/truncated-utf8", str(1), strV("A\uFFFD"),
		"41 C3", "41 C3", "C3 41", "C3 41"))...)

	// scale and offset: a scaled value is a float.
	scaled := func(t Type, scale, offset float64) Spec {
		return Spec{Name: "x", Type: t, Scale: scale, Offset: offset}
	}
	add(byOrder("int16/scale0.1/-123", scaled(TypeInt16, 0.1, 0), floatV(-12.3),
		"FF 85", "FF 85", "85 FF", "85 FF")...)
	add(byOrder("uint16/offset-40/200", scaled(TypeUint16, 0, -40), floatV(160),
		"00 C8", "00 C8", "C8 00", "C8 00")...)
	add(byOrder("uint16/scale0.5+offset10/100", scaled(TypeUint16, 0.5, 10), floatV(60),
		"00 64", "00 64", "64 00", "64 00")...)
	add(byOrder("int32/scale0.01/123456", scaled(TypeInt32, 0.01, 0), floatV(1234.56),
		"00 01 E2 40", "E2 40 00 01", "01 00 40 E2", "40 E2 01 00")...)
	add(byOrder("uint32/scale-1/7", scaled(TypeUint32, -1, 0), floatV(-7),
		"00 00 00 07", "00 07 00 00", "00 00 07 00", "07 00 00 00")...)
	add(byOrder("int64/scale10/-5", scaled(TypeInt64, 10, 0), floatV(-50),
		"FF FF FF FF FF FF FF FB", "FF FB FF FF FF FF FF FF",
		"FF FF FF FF FF FF FB FF", "FB FF FF FF FF FF FF FF")...)
	// 2^64-1 + 1 rounds to 2^64 in a float64, which Encode refuses.
	add(oneWay(byOrder("uint64/offset1/max", scaled(TypeUint64, 0, 1), floatV(18446744073709551616),
		"FF FF FF FF FF FF FF FF", "FF FF FF FF FF FF FF FF",
		"FF FF FF FF FF FF FF FF", "FF FF FF FF FF FF FF FF"))...)
	add(byOrder("float32/scale2/-1.5", scaled(TypeFloat32, 2, 0), floatV(-3),
		"BF C0 00 00", "00 00 BF C0", "C0 BF 00 00", "00 00 C0 BF")...)
	add(byOrder("float64/offset-273.15/NaN", scaled(TypeFloat64, 1, -273.15), floatV(math.NaN()),
		"7F F8 00 00 00 00 00 01", "00 01 00 00 00 00 7F F8",
		"F8 7F 00 00 00 00 01 00", "01 00 00 00 00 00 F8 7F")...)
	// scale 1 and offset 0 is no scaling: the integer stays an integer.
	add(byOrder("int16/scale1/-2", scaled(TypeInt16, 1, 0), intV(-2), "FF FE", "FF FE", "FE FF", "FE FF")...)
	return cs
}

// sameValue compares exactly (NaN equal to NaN), except that scaled floats
// may differ in the last bits of the multiplication.
func sameValue(got, want Value, scaled bool) bool {
	if got.Kind == KindFloat && want.Kind == KindFloat {
		switch {
		case math.IsNaN(got.Float) && math.IsNaN(want.Float):
			got.Float, want.Float = 0, 0
		case scaled && !math.IsNaN(want.Float) && !math.IsInf(want.Float, 0):
			return math.Abs(got.Float-want.Float) <= 1e-12*math.Max(1, math.Abs(want.Float))
		}
	}
	return got == want
}

func TestDecode(t *testing.T) {
	for _, c := range decodeTable() {
		t.Run(c.name, func(t *testing.T) {
			s := c.spec
			if err := s.Init(); err != nil {
				t.Fatalf("Init: %v", err)
			}
			raw := wire(c.wire)
			if len(raw) != 2*s.Words() {
				t.Fatalf("test bug: %d wire bytes for %d words", len(raw), s.Words())
			}
			got, err := s.Decode(raw)
			if err != nil {
				t.Fatalf("Decode(% X): %v", raw, err)
			}
			if !sameValue(got, c.want, s.scaled()) {
				t.Fatalf("Decode(% X) = %+v, want %+v", raw, got, c.want)
			}
			// Extra bytes after the tag are ignored.
			got2, err := s.Decode(append(raw, 0xAA, 0x55))
			if err != nil || !got2.Equal(got) {
				t.Fatalf("Decode with trailing bytes = %+v, %v; want %+v", got2, err, got)
			}
		})
	}
}

func TestDecodeFloat32Sign(t *testing.T) {
	s := Spec{Name: "x", Type: TypeFloat32}
	v, err := s.Decode(wire("80 00 00 00"))
	if err != nil || v.Kind != KindFloat || v.Float != 0 || !math.Signbit(v.Float) {
		t.Fatalf("Decode(-0) = %+v, %v; want -0", v, err)
	}
}

// TestDecodeBitMatchesUint16 pins down that the bit of a bool tag is the bit
// of the register as a uint16 tag with the same order would read it.
func TestDecodeBitMatchesUint16(t *testing.T) {
	for o := OrderABCD; o <= OrderDCBA; o++ {
		for _, raw := range [][]byte{{0x12, 0x34}, {0x80, 0x01}, {0xF0, 0x0F}} {
			u := Spec{Name: "u", Type: TypeUint16, Order: o}
			uv, _ := u.Decode(raw)
			for b := 0; b < 16; b++ {
				s := Spec{Name: "b", Type: TypeBool, Order: o, Bit: intp(b)}
				v, err := s.Decode(raw)
				want := uv.Uint>>b&1 == 1
				if err != nil || v.Bool != want {
					t.Errorf("%s bit %d of % X = %v, %v; want %v", o, b, raw, v.Bool, err, want)
				}
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		raw   []byte
		short bool
	}{
		{"int16/empty", Spec{Type: TypeInt16}, nil, true},
		{"int16/one byte", Spec{Type: TypeInt16}, []byte{1}, true},
		{"int32/one register", Spec{Type: TypeInt32}, []byte{1, 2}, true},
		{"uint64/three registers", Spec{Type: TypeUint64}, make([]byte, 6), true},
		{"float64/7 bytes", Spec{Type: TypeFloat64}, make([]byte, 7), true},
		{"bool/empty", Spec{Type: TypeBool, Bit: intp(0)}, nil, true},
		{"string/short", Spec{Type: TypeString, Length: 4}, make([]byte, 7), true},
		{"type missing", Spec{}, make([]byte, 8), false},
		{"type unknown", Spec{Type: 42}, make([]byte, 8), false},
		{"string without length", Spec{Type: TypeString}, make([]byte, 8), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.spec.Decode(tt.raw)
			if err == nil {
				t.Fatalf("Decode = %+v, want an error", v)
			}
			if errors.Is(err, ErrShort) != tt.short {
				t.Fatalf("errors.Is(%v, ErrShort) = %v, want %v", err, !tt.short, tt.short)
			}
			if v != (Value{}) {
				t.Fatalf("value on error = %+v, want zero", v)
			}
		})
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	raw := wire("42 F6 E9 79 12 34 56 78")
	for _, typ := range []Type{TypeBool, TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64, TypeFloat32, TypeFloat64} {
		for _, scale := range []float64{0, 0.1} {
			s := Spec{Name: "x", Type: typ, Order: OrderCDAB}
			if typ != TypeBool {
				s.Scale = scale
			}
			if n := testing.AllocsPerRun(100, func() { _, _ = s.Decode(raw) }); n != 0 {
				t.Errorf("%s scale %v: %v allocs per Decode, want 0", typ, scale, n)
			}
		}
	}
	s := Spec{Name: "s", Type: TypeString, Length: 4, Order: OrderBADC}
	text := wire("42 41 44 43 46 45 00 47")
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Decode(text) }); n > 1 {
		t.Errorf("string: %v allocs per Decode, want at most 1 (the string)", n)
	}
}

func TestInit(t *testing.T) {
	ok := []Spec{
		{Name: "flow", Type: TypeFloat32},
		{Name: "flow", Type: TypeInt16, Scale: 0.1, Offset: -40, Order: OrderDCBA, Deadband: 0.5, MaxSilence: 1e9},
		{Name: "alarm", Type: TypeBool, Bit: intp(0)},
		{Name: "alarm", Type: TypeBool, Bit: intp(15)},
		{Name: "alarm", Type: TypeBool, Scale: 1},
		{Name: "serial", Type: TypeString, Length: 1},
		{Name: "serial", Type: TypeString, Length: 125},
		{Name: "Temperatur °C", Type: TypeUint64},
	}
	for _, s := range ok {
		if err := s.Init(); err != nil {
			t.Errorf("Init(%+v) = %v, want nil", s, err)
		}
	}

	tests := []struct {
		name string
		spec Spec
		want []string // substrings: what is wrong and what is allowed
	}{
		{"name empty", Spec{Type: TypeInt16}, []string{"name is empty", "unique name"}},
		{"name with slash", Spec{Name: "a/b", Type: TypeInt16}, []string{`"a/b"`, "/ + #", "not allowed"}},
		{"name with plus", Spec{Name: "a+", Type: TypeInt16}, []string{"/ + #"}},
		{"name with hash", Spec{Name: "#", Type: TypeInt16}, []string{"/ + #"}},
		{"name with NUL", Spec{Name: "a\x00", Type: TypeInt16}, []string{"NUL"}},
		{"type missing", Spec{Name: "x"}, []string{"type is missing", "allowed are " + TypeNames}},
		{"type unknown", Spec{Name: "x", Type: 11}, []string{"(unknown type 11): allowed are " + TypeNames}},
		{"order unknown", Spec{Name: "x", Type: TypeInt32, Order: 4}, []string{"(unknown order 4): allowed are " + OrderNames}},
		{"string length 0", Spec{Name: "x", Type: TypeString}, []string{"length = 0", "1..125"}},
		{"string length negative", Spec{Name: "x", Type: TypeString, Length: -1}, []string{"length = -1", "1..125"}},
		{"string length 126", Spec{Name: "x", Type: TypeString, Length: 126}, []string{"length = 126", "1..125"}},
		{"length on int32", Spec{Name: "x", Type: TypeInt32, Length: 2}, []string{`only for type = "string"`, "int32"}},
		{"bit on uint16", Spec{Name: "x", Type: TypeUint16, Bit: intp(1)}, []string{`only for type = "bool"`, "uint16"}},
		{"bit 16", Spec{Name: "x", Type: TypeBool, Bit: intp(16)}, []string{"bit = 16", "0 (least significant) to 15"}},
		{"bit -1", Spec{Name: "x", Type: TypeBool, Bit: intp(-1)}, []string{"bit = -1", "0 (least significant) to 15"}},
		{"scale NaN", Spec{Name: "x", Type: TypeInt16, Scale: math.NaN()}, []string{"scale = NaN", "finite"}},
		{"scale Inf", Spec{Name: "x", Type: TypeInt16, Scale: math.Inf(1)}, []string{"scale = +Inf", "finite"}},
		{"offset -Inf", Spec{Name: "x", Type: TypeInt16, Offset: math.Inf(-1)}, []string{"offset = -Inf", "finite"}},
		{"scale on bool", Spec{Name: "x", Type: TypeBool, Scale: 2}, []string{"only for numeric types", "bool"}},
		{"offset on string", Spec{Name: "x", Type: TypeString, Length: 2, Offset: 1}, []string{"only for numeric types", "string"}},
		{"deadband negative", Spec{Name: "x", Type: TypeInt16, Deadband: -1}, []string{"deadband = -1", "0 (publish every change) or a positive finite number"}},
		{"deadband NaN", Spec{Name: "x", Type: TypeInt16, Deadband: math.NaN()}, []string{"deadband = NaN", "positive finite"}},
		{"deadband Inf", Spec{Name: "x", Type: TypeInt16, Deadband: math.Inf(1)}, []string{"deadband = +Inf", "positive finite"}},
		{"max_silence negative", Spec{Name: "x", Type: TypeInt16, MaxSilence: -1e9}, []string{"max_silence = -1s", "0 (never republish) or positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Init()
			if err == nil {
				t.Fatal("Init = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestUnmarshalText(t *testing.T) {
	var ty Type
	if err := ty.UnmarshalText([]byte(" Float32 ")); err != nil || ty != TypeFloat32 {
		t.Errorf("Type.UnmarshalText(Float32) = %v, %v", ty, err)
	}
	if err := ty.UnmarshalText([]byte("real")); err == nil || !strings.Contains(err.Error(), TypeNames) {
		t.Errorf("Type.UnmarshalText(real) = %v, want an error listing %s", err, TypeNames)
	}
	var o Order
	if err := o.UnmarshalText([]byte("cdab")); err != nil || o != OrderCDAB {
		t.Errorf("Order.UnmarshalText(cdab) = %v, %v", o, err)
	}
	if err := o.UnmarshalText([]byte("little")); err == nil || !strings.Contains(err.Error(), OrderNames) {
		t.Errorf("Order.UnmarshalText(little) = %v, want an error listing %s", err, OrderNames)
	}
}
