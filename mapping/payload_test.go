package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestAppendJSON(t *testing.T) {
	f32tag := &Spec{Name: "t", Type: TypeFloat32}
	f64tag := &Spec{Name: "t", Type: TypeFloat64}
	scaledF32 := &Spec{Name: "t", Type: TypeFloat32, Scale: 10}
	unitTag := &Spec{Name: "t", Type: TypeInt16, Unit: "°C"}
	strTag := &Spec{Name: "t", Type: TypeString, Length: 10}
	const ts = 1700000000123

	tests := []struct {
		name string
		s    Sample
		want string
		v    any // the value encoding/json must read back (json.Number for numbers)
	}{
		{"int", Sample{Tag: unitTag, Value: intV(-5), TimeMs: ts},
			`{"v":-5,"ts":1700000000123,"q":"good","unit":"°C"}`, json.Number("-5")},
		{"int64 min", Sample{Tag: f64tag, Value: intV(math.MinInt64), TimeMs: ts},
			`{"v":-9223372036854775808,"ts":1700000000123,"q":"good"}`, json.Number("-9223372036854775808")},
		{"uint64 max", Sample{Tag: f64tag, Value: uintV(math.MaxUint64), TimeMs: ts},
			`{"v":18446744073709551615,"ts":1700000000123,"q":"good"}`, json.Number("18446744073709551615")},
		{"bool", Sample{Tag: f64tag, Value: boolV(true), TimeMs: ts},
			`{"v":true,"ts":1700000000123,"q":"good"}`, true},
		{"float32 tag 0.1", Sample{Tag: f32tag, Value: floatV(f32(0.1)), TimeMs: ts},
			`{"v":0.1,"ts":1700000000123,"q":"good"}`, json.Number("0.1")},
		{"float32 tag 123.456", Sample{Tag: f32tag, Value: floatV(f32(123.456)), TimeMs: ts},
			`{"v":123.456,"ts":1700000000123,"q":"good"}`, json.Number("123.456")},
		{"float32 tag 1e-7", Sample{Tag: f32tag, Value: floatV(f32(1e-7)), TimeMs: ts},
			`{"v":1e-7,"ts":1700000000123,"q":"good"}`, json.Number("1e-7")},
		{"float32 tag max", Sample{Tag: f32tag, Value: floatV(math.MaxFloat32), TimeMs: ts},
			`{"v":3.4028235e+38,"ts":1700000000123,"q":"good"}`, json.Number("3.4028235e+38")},
		{"float32 value in float64 tag keeps its digits", Sample{Tag: f64tag, Value: floatV(f32(0.1)), TimeMs: ts},
			`{"v":0.10000000149011612,"ts":1700000000123,"q":"good"}`, json.Number("0.10000000149011612")},
		{"scaled float32 tag is float64", Sample{Tag: scaledF32, Value: floatV(f32(0.1) * 10), TimeMs: ts},
			`{"v":1.0000000149011612,"ts":1700000000123,"q":"good"}`, json.Number("1.0000000149011612")},
		{"float64 0.1", Sample{Tag: f64tag, Value: floatV(0.1), TimeMs: ts},
			`{"v":0.1,"ts":1700000000123,"q":"good"}`, json.Number("0.1")},
		{"float64 large plain", Sample{Tag: f64tag, Value: floatV(1234567.8), TimeMs: ts},
			`{"v":1234567.8,"ts":1700000000123,"q":"good"}`, json.Number("1234567.8")},
		{"float64 1e21", Sample{Tag: f64tag, Value: floatV(1e21), TimeMs: ts},
			`{"v":1e+21,"ts":1700000000123,"q":"good"}`, json.Number("1e+21")},
		{"float64 -1.5e-300", Sample{Tag: f64tag, Value: floatV(-1.5e-300), TimeMs: ts},
			`{"v":-1.5e-300,"ts":1700000000123,"q":"good"}`, json.Number("-1.5e-300")},
		{"float64 -0", Sample{Tag: f64tag, Value: floatV(math.Copysign(0, -1)), TimeMs: ts},
			`{"v":-0,"ts":1700000000123,"q":"good"}`, json.Number("-0")},
		{"float64 whole", Sample{Tag: f64tag, Value: floatV(100), TimeMs: ts},
			`{"v":100,"ts":1700000000123,"q":"good"}`, json.Number("100")},
		{"NaN", Sample{Tag: f32tag, Value: floatV(math.NaN()), TimeMs: ts},
			`{"v":"NaN","ts":1700000000123,"q":"good"}`, "NaN"},
		{"+Inf", Sample{Tag: f64tag, Value: floatV(math.Inf(1)), TimeMs: ts},
			`{"v":"+Inf","ts":1700000000123,"q":"good"}`, "+Inf"},
		{"-Inf", Sample{Tag: f64tag, Value: floatV(math.Inf(-1)), TimeMs: ts, Quality: Uncertain},
			`{"v":"-Inf","ts":1700000000123,"q":"uncertain"}`, "-Inf"},
		{"string escapes", Sample{Tag: strTag, Value: strV("a\"b\\c\n\r\t\b\f\x01\x1f\x7f/<>&é"), TimeMs: ts},
			`{"v":"a\"b\\c\n\r\t\b\f\u0001\u001f` + "\x7f" + `/<>&é","ts":1700000000123,"q":"good"}`,
			"a\"b\\c\n\r\t\b\f\x01\x1f\x7f/<>&é"},
		{"string invalid utf8", Sample{Tag: strTag, Value: strV("A\xffB\xc3"), TimeMs: ts},
			`{"v":"A\ufffdB\ufffd","ts":1700000000123,"q":"good"}`, "A\uFFFDB\uFFFD"},
		{"string line separators", Sample{Tag: strTag, Value: strV("x\u2028y\u2029"), TimeMs: ts},
			`{"v":"x\u2028y\u2029","ts":1700000000123,"q":"good"}`, "x\u2028y\u2029"},
		{"empty string", Sample{Tag: strTag, Value: strV(""), TimeMs: ts},
			`{"v":"","ts":1700000000123,"q":"good"}`, ""},
		{"bad without value", Sample{Tag: unitTag, Quality: Bad, TimeMs: ts, Err: errors.New(`read holding 100+2: "timeout"`)},
			`{"v":null,"ts":1700000000123,"q":"bad","unit":"°C","err":"read holding 100+2: \"timeout\""}`, nil},
		{"uncertain with value and error", Sample{Tag: f64tag, Value: floatV(2.5), Quality: Uncertain, TimeMs: 0, Err: errors.New("stale")},
			`{"v":2.5,"ts":0,"q":"uncertain","err":"stale"}`, json.Number("2.5")},
		{"nil tag", Sample{Value: floatV(0.1), TimeMs: -1},
			`{"v":0.1,"ts":-1,"q":"good"}`, json.Number("0.1")},
		{"unit needs escaping", Sample{Tag: &Spec{Unit: "m\"3\x00"}, Value: uintV(1), TimeMs: ts},
			`{"v":1,"ts":1700000000123,"q":"good","unit":"m\"3\u0000"}`, json.Number("1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendJSON([]byte("prefix"), &tt.s)
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("AppendJSON dropped dst: %q", got)
			}
			got = got[len("prefix"):]
			if string(got) != tt.want {
				t.Errorf("AppendJSON =\n%s\nwant\n%s", got, tt.want)
			}
			checkPayload(t, got, &tt.s, tt.v)
		})
	}
}

// checkPayload parses p with encoding/json and checks every field.
func checkPayload(t testing.TB, p []byte, s *Sample, wantV any) {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("payload %s is not JSON: %v", p, err)
	}
	want := map[string]any{
		"v":  wantV,
		"ts": json.Number(strconv.FormatInt(s.TimeMs, 10)),
		"q":  s.Quality.String(),
	}
	if s.Tag != nil && s.Tag.Unit != "" {
		want["unit"] = s.Tag.Unit
	}
	if s.Err != nil {
		want["err"] = s.Err.Error()
	}
	if len(m) != len(want) {
		t.Errorf("payload %s has fields %v, want %v", p, m, want)
	}
	for k, w := range want {
		g, ok := m[k]
		if !ok {
			t.Errorf("payload %s lacks %q", p, k)
			continue
		}
		if g != w {
			t.Errorf("payload %s: %q = %#v, want %#v", p, k, g, w)
		}
	}
}

// TestAppendJSONFloatsRoundTrip: any float, written for a float64 tag, reads
// back as the same float64; written for an unscaled float32 tag, as the
// same float32.
func TestAppendJSONFloatsRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f := math.Float64frombits(rapid.Uint64().Draw(t, "bits"))
		is32 := rapid.Bool().Draw(t, "float32")
		tag := &Spec{Name: "x", Type: TypeFloat64}
		if is32 {
			tag.Type = TypeFloat32
			f = float64(math.Float32frombits(uint32(math.Float64bits(f))))
		}
		p := AppendJSON(nil, &Sample{Tag: tag, Value: floatV(f)})
		var m struct {
			V json.RawMessage `json:"v"`
		}
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("payload %s: %v", p, err)
		}
		var got float64
		if err := json.Unmarshal(m.V, &got); err != nil {
			var s string
			if err := json.Unmarshal(m.V, &s); err != nil {
				t.Fatalf("v = %s is neither number nor string", m.V)
			}
			switch {
			case math.IsNaN(f) && s == "NaN", math.IsInf(f, 1) && s == "+Inf", math.IsInf(f, -1) && s == "-Inf":
				return
			}
			t.Fatalf("v = %s for %v", m.V, f)
		}
		if is32 {
			if float32(got) != float32(f) {
				t.Fatalf("v = %s reads as float32 %v, want %v", m.V, float32(got), float32(f))
			}
		} else if got != f {
			t.Fatalf("v = %s reads as %v, want %v", m.V, got, f)
		}
	})
}

// TestAppendJSONStringsAreValid: any string and error text gives valid JSON
// that reads back as the input with invalid UTF-8 replaced.
func TestAppendJSONStringsAreValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := string(rapid.SliceOf(rapid.Byte()).Draw(t, "bytes"))
		unit := rapid.StringN(0, 5, -1).Draw(t, "unit")
		s := &Sample{Tag: &Spec{Unit: unit}, Value: strV(str), Err: errors.New(str)}
		p := AppendJSON(nil, s)
		if !json.Valid(p) {
			t.Fatalf("invalid JSON %q for %q", p, str)
		}
		var m struct{ V, Unit, Err string }
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatal(err)
		}
		want := string(bytes.ToValidUTF8([]byte(str), []byte("\uFFFD")))
		// ToValidUTF8 merges a run of bad bytes into one U+FFFD; AppendJSON
		// writes one per byte, like encoding/json. Compare modulo that.
		if collapse(m.V) != collapse(want) || collapse(m.Err) != collapse(want) {
			t.Fatalf("v = %q, err = %q, want %q", m.V, m.Err, want)
		}
		if m.Unit != unit {
			t.Fatalf("unit = %q, want %q", m.Unit, unit)
		}
	})
}

// collapse merges runs of U+FFFD.
func collapse(s string) string {
	for strings.Contains(s, "\uFFFD\uFFFD") {
		s = strings.ReplaceAll(s, "\uFFFD\uFFFD", "\uFFFD")
	}
	return s
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	// For valid strings our escaping must read back exactly as encoding/json's.
	for _, s := range []string{"", "plain", "tab\there", "quote\"back\\slash", "\x00\x1f", "日本語", "\u2028\u2029", "<html>&"} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil || got != s {
			t.Errorf("appendJSONString(%q) reads back as %q, %v", s, got, err)
		}
	}
}

func TestAppendJSONDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 128)
	samples := []Sample{
		{Tag: &Spec{Name: "t", Type: TypeFloat32, Unit: "bar"}, Value: floatV(f32(123.456)), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeFloat64}, Value: floatV(1.0 / 3), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeInt32}, Value: intV(-123456), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeUint64}, Value: uintV(math.MaxUint64), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeBool}, Value: boolV(true), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeFloat64}, Value: floatV(math.NaN()), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeString, Length: 4}, Value: strV("ab\"c"), TimeMs: 1700000000123},
		{Tag: &Spec{Name: "t", Type: TypeFloat64}, Quality: Bad, TimeMs: 1700000000123, Err: errors.New("timeout")},
	}
	for i := range samples {
		s := &samples[i]
		if n := testing.AllocsPerRun(100, func() { dst = AppendJSON(dst[:0], s) }); n != 0 {
			t.Errorf("%s: %v allocs per AppendJSON, want 0", dst, n)
		}
	}
}
