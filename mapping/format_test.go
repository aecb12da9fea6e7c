package mapping

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// vOf is the "v" of AppendJSON's payload for value v of tag.
func vOf(t *testing.T, tag *Spec, v Value) string {
	t.Helper()
	p := string(AppendJSON(nil, &Sample{Tag: tag, Value: v, TimeMs: 1}))
	const head, tail = `{"v":`, `,"ts":1,"q":"good"`
	if len(p) < len(head)+len(tail) || p[:len(head)] != head {
		t.Fatalf("payload %s", p)
	}
	end := strings.Index(p, tail)
	if end < 0 {
		t.Fatalf("payload %s", p)
	}
	return p[len(head):end]
}

// TestNumberFormatting: precision, the scaled-integer default and the NaN
// policies, as they appear in the JSON payload.
func TestNumberFormatting(t *testing.T) {
	spec := func(s Spec) *Spec {
		t.Helper()
		s.Name = "t"
		if err := s.Init(); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	nan, inf := math.NaN(), math.Inf(1)
	tenth, fifth := 0.1, 0.2 // variables: constant arithmetic would be exact
	for _, tt := range []struct {
		name string
		tag  *Spec
		v    float64
		want string
	}{
		{"int16 × 0.1", spec(Spec{Type: TypeInt16, Scale: 0.1}), 247 * tenth, "24.7"},
		{"int16 × 0.1, whole", spec(Spec{Type: TypeInt16, Scale: 0.1}), 250 * tenth, "25"},
		{"int16 × 0.1, small negative", spec(Spec{Type: TypeInt16, Scale: 0.1}), -3 * tenth, "-0.3"},
		{"uint16 × 0.01 - 40", spec(Spec{Type: TypeUint16, Scale: 0.01, Offset: -40}), 6470*tenth/10 - 40, "24.7"},
		{"int32 × 0.25", spec(Spec{Type: TypeInt32, Scale: 0.25}), 7 * 0.25, "1.75"},
		{"int32 × 2 + 0.5", spec(Spec{Type: TypeInt32, Scale: 2, Offset: 0.5}), 2*7 + 0.5, "14.5"},
		{"uint32 × 1000", spec(Spec{Type: TypeUint32, Scale: 1000}), 12 * 1000, "12000"},
		{"int16 × 1/3: no short decimals, shortest form", spec(Spec{Type: TypeInt16, Scale: 1.0 / 3}), 2.0 / 3, "0.6666666666666666"},
		{"float64 unscaled stays shortest", spec(Spec{Type: TypeFloat64}), tenth + fifth, "0.30000000000000004"},
		{"float32 × 0.1 stays shortest (the float's own noise)", spec(Spec{Type: TypeFloat32, Scale: 0.1}), 1.1, "1.1"},
		{"precision 2", spec(Spec{Type: TypeFloat64, Precision: intp(2)}), 1.0 / 3, "0.33"},
		{"precision 2 rounds", spec(Spec{Type: TypeFloat64, Precision: intp(2)}), 2.675001, "2.68"},
		{"precision 3 trailing zeros", spec(Spec{Type: TypeFloat32, Precision: intp(3)}), f32(123.5), "123.5"},
		{"precision 0", spec(Spec{Type: TypeFloat64, Precision: intp(0)}), 99.5, "100"},
		{"precision 1, negative zero", spec(Spec{Type: TypeFloat64, Precision: intp(1)}), -0.04, "0"},
		{"precision overrides the scale", spec(Spec{Type: TypeInt16, Scale: 0.01, Precision: intp(1)}), 2474 * tenth / 10, "24.7"},
		{"precision on a huge number", spec(Spec{Type: TypeFloat64, Precision: intp(1)}), 1e22, "10000000000000000000000"},
		{"nan string (default)", spec(Spec{Type: TypeFloat64}), nan, `"NaN"`},
		{"+inf string", spec(Spec{Type: TypeFloat64, Precision: intp(1)}), inf, `"+Inf"`},
		{"nan null", spec(Spec{Type: TypeFloat64, NaN: NaNNull}), nan, "null"},
		{"-inf null", spec(Spec{Type: TypeInt16, Scale: 0.1, NaN: NaNNull}), -inf, "null"},
		{"nan null keeps numbers", spec(Spec{Type: TypeFloat64, NaN: NaNNull}), 1.5, "1.5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := vOf(t, tt.tag, floatV(tt.v)); got != tt.want {
				t.Errorf("v = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestScaledInt16ReadsAsItsDecimal: every raw int16 × 0.1 is published as
// the decimal raw/10, exactly (never 24.700000000000003).
func TestScaledInt16ReadsAsItsDecimal(t *testing.T) {
	tag := &Spec{Name: "t", Type: TypeInt16, Scale: 0.1}
	if err := tag.Init(); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 2)
	for r := math.MinInt16; r <= math.MaxInt16; r++ {
		raw[0], raw[1] = byte(uint16(r)>>8), byte(r)
		v, err := tag.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		want := strconv.FormatFloat(float64(r)/10, 'f', -1, 64)
		if got := vOf(t, tag, v); got != want {
			t.Fatalf("raw %d: v = %s, want %s", r, got, want)
		}
	}
}

// TestNaNDrop: with nan = "drop" a NaN or ±Inf sample does not pass the
// filter (so it is published in no format) and does not become the last
// published value; numbers around it pass as usual.
func TestNaNDrop(t *testing.T) {
	tag := &Spec{Name: "t", Type: TypeFloat64, NaN: NaNDrop, OnChange: true}
	if err := tag.Init(); err != nil {
		t.Fatal(err)
	}
	var f Filter
	for i, tt := range []struct {
		v    float64
		pass bool
	}{{1, true}, {math.NaN(), false}, {1, false}, {math.Inf(-1), false}, {2, true}, {math.Inf(1), false}} {
		if got := f.Pass(&Sample{Tag: tag, Value: floatV(tt.v), TimeMs: int64(i)}); got != tt.pass {
			t.Errorf("sample %d (%v): Pass = %v, want %v", i, tt.v, got, tt.pass)
		}
	}
	if got := vOf(t, tag, floatV(math.NaN())); got != "null" {
		t.Errorf("a dropped NaN written anyway = %s, want null", got)
	}
}

// TestFormattingDoesNotAllocate: precision and the NaN policies keep
// AppendJSON allocation-free.
func TestFormattingDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 128)
	for _, s := range []Spec{
		{Name: "t", Type: TypeInt16, Scale: 0.1},
		{Name: "t", Type: TypeFloat64, Precision: intp(3)},
		{Name: "t", Type: TypeFloat64, NaN: NaNNull},
	} {
		if err := s.Init(); err != nil {
			t.Fatal(err)
		}
		for _, v := range []float64{24.700000000000003, math.NaN(), -1e300} {
			sm := &Sample{Tag: &s, Value: floatV(v), TimeMs: 1}
			if n := testing.AllocsPerRun(100, func() { dst = AppendJSON(dst[:0], sm) }); n != 0 {
				t.Errorf("%s: %v allocs", dst, n)
			}
		}
	}
}
