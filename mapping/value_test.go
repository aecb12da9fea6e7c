package mapping

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

func TestAppendValue(t *testing.T) {
	f32tag := &Spec{Name: "t", Type: TypeFloat32}
	f64tag := &Spec{Name: "t", Type: TypeFloat64}
	scaled := initSpec(t, Spec{Name: "t", Type: TypeInt16, Scale: 0.1})
	prec := 1
	precise := initSpec(t, Spec{Name: "t", Type: TypeFloat64, Precision: &prec})
	nullNaN := &Spec{Name: "t", Type: TypeFloat64, NaN: NaNNull}
	dropNaN := &Spec{Name: "t", Type: TypeFloat64, NaN: NaNDrop}
	tests := []struct {
		name string
		s    Sample
		want string // "" with publish false
	}{
		{"int", Sample{Tag: f64tag, Value: intV(-5)}, "-5"},
		{"uint64 max", Sample{Tag: f64tag, Value: uintV(math.MaxUint64)}, "18446744073709551615"},
		{"bool", Sample{Tag: f64tag, Value: boolV(false)}, "false"},
		{"float32 0.1", Sample{Tag: f32tag, Value: floatV(f32(0.1))}, "0.1"},
		{"scaled int16", Sample{Tag: scaled, Value: floatV(247 * 0.1)}, "24.7"},
		{"precision", Sample{Tag: precise, Value: floatV(3.14159)}, "3.1"},
		{"string unquoted", Sample{Tag: f64tag, Value: strV(`say "hi"\n`)}, `say "hi"\n`},
		{"string invalid UTF-8", Sample{Tag: f64tag, Value: strV("a\xffb")}, "a\uFFFDb"},
		{"json", Sample{Tag: f64tag, Value: Value{Kind: KindJSON, Str: `[1,2]`}}, `[1,2]`},
		{"NaN string", Sample{Tag: f64tag, Value: floatV(math.NaN())}, "NaN"},
		{"+Inf string", Sample{Tag: f64tag, Value: floatV(math.Inf(1))}, "+Inf"},
		{"-Inf string", Sample{Tag: f64tag, Value: floatV(math.Inf(-1))}, "-Inf"},
		{"NaN null", Sample{Tag: nullNaN, Value: floatV(math.NaN())}, "null"},
		{"NaN drop", Sample{Tag: dropNaN, Value: floatV(math.NaN())}, ""},
		{"uncertain published", Sample{Tag: f64tag, Value: floatV(2.5), Quality: Uncertain}, "2.5"},
		{"bad not published", Sample{Tag: f64tag, Quality: Bad, Err: errors.New("timeout")}, ""},
		{"bad with a value not published", Sample{Tag: f64tag, Value: floatV(1), Quality: Bad}, ""},
		{"nil tag", Sample{Value: floatV(0.1)}, "0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := AppendValue(nil, &tt.s)
			if string(got) != tt.want || ok != (tt.want != "") {
				t.Fatalf("AppendValue = %q, %v; want %q, %v", got, ok, tt.want, tt.want != "")
			}
		})
	}
}

func TestValuePayloadOfOtherMessages(t *testing.T) {
	for _, tt := range []struct {
		payload, want string
		publish       bool
	}{
		{`{"ts":1,"values":{"a":{"v":1,"ts":1,"q":"good"}}}`, "", false}, // per device: no bare form
		{`{"state":"online","ts":1}`, `{"state":"online","ts":1}`, true}, // device status, as it is
		{`online`, `online`, true},
		{``, ``, true},
		{`{"v":`, `{"v":`, true},                                         // not AppendJSON's: as it is
		{`{"v":"unterminated,"ts":1`, `{"v":"unterminated,"ts":1`, true}, // as it is
		{`{"v":1,"ts":1,"q":"weird"}`, `{"v":1,"ts":1,"q":"weird"}`, true},
		{`{"v":"\ud83d\ude00 \u00e9","ts":1,"q":"good"}`, "😀 é", true},
	} {
		got, ok := ValuePayload([]byte(tt.payload))
		if string(got) != tt.want || ok != tt.publish {
			t.Errorf("ValuePayload(%s) = %q, %v; want %q, %v", tt.payload, got, ok, tt.want, tt.publish)
		}
	}
}

// TestValuePayloadIsAppendValue: what an upstream with format = "value"
// makes of edged's JSON message is exactly what the local broker publishes
// with format = "value" for the same sample.
func TestValuePayloadIsAppendValue(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		tag := &Spec{Name: "t", Type: TypeFloat64, NaN: NaNPolicy(rapid.IntRange(0, 2).Draw(t, "nan")), Unit: rapid.SampledFrom([]string{"", "°C", `a"b`}).Draw(t, "unit")}
		if rapid.Bool().Draw(t, "float32") {
			tag.Type = TypeFloat32
		}
		if rapid.Bool().Draw(t, "precision") {
			p := rapid.IntRange(0, 6).Draw(t, "places")
			tag.Precision = &p
		}
		if err := tag.Init(); err != nil {
			t.Fatal(err)
		}
		var v Value
		switch rapid.IntRange(0, 6).Draw(t, "kind") {
		case 0:
			v = Value{}
		case 1:
			v = boolV(rapid.Bool().Draw(t, "b"))
		case 2:
			v = intV(rapid.Int64().Draw(t, "i"))
		case 3:
			v = uintV(rapid.Uint64().Draw(t, "u"))
		case 4:
			v = floatV(math.Float64frombits(rapid.Uint64().Draw(t, "f")))
		case 5:
			v = strV(string(rapid.SliceOf(rapid.Byte()).Draw(t, "s")))
		case 6:
			v = Value{Kind: KindJSON, Str: rapid.SampledFrom([]string{"", `[1,"a]b"]`, `{"x":{"y":"}"}}`, `"s"`}).Draw(t, "j")}
		}
		s := &Sample{Tag: tag, Value: v, Quality: Quality(rapid.IntRange(0, 2).Draw(t, "q")), TimeMs: rapid.Int64().Draw(t, "ts")}
		if rapid.Bool().Draw(t, "err") {
			s.Err = errors.New(rapid.String().Draw(t, "errtext"))
		}
		want, wantOK := AppendValue(nil, s)
		if tag.NaN == NaNDrop && v.Kind == KindFloat && (math.IsNaN(v.Float) || math.IsInf(v.Float, 0)) {
			return // Filter.Pass keeps it from both
		}
		got, ok := ValuePayload(AppendJSON(nil, s))
		if ok != wantOK || (ok && string(got) != string(want)) {
			t.Fatalf("ValuePayload(%s) = %q, %v; AppendValue = %q, %v", AppendJSON(nil, s), got, ok, want, wantOK)
		}
	})
}

func TestValueDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 128)
	s := &Sample{Tag: &Spec{Name: "t", Type: TypeFloat32}, Value: floatV(f32(123.456)), TimeMs: 1700000000123}
	if n := testing.AllocsPerRun(100, func() { dst, _ = AppendValue(dst[:0], s) }); n != 0 {
		t.Errorf("AppendValue: %v allocs, want 0", n)
	}
	p := AppendJSON(nil, s)
	if n := testing.AllocsPerRun(100, func() { _, _ = ValuePayload(p) }); n != 0 {
		t.Errorf("ValuePayload: %v allocs, want 0", n)
	}
}

// FuzzValuePayload feeds arbitrary payloads to ValuePayload (what an
// upstream with format = "value" does to every message edged publishes):
// it never panics, returns the payload itself for what is not a per-tag
// message, and a value it unquotes is valid UTF-8 when the payload was.
func FuzzValuePayload(f *testing.F) {
	for _, seed := range []string{
		`{"v":24.7,"ts":1700000000123,"q":"good","unit":"°C"}`,
		`{"v":"a\"b\\c\u2028\ud83d\ude00","ts":1,"q":"uncertain"}`,
		`{"v":null,"ts":1,"q":"bad","err":"timeout"}`,
		`{"v":{"x":["}",1]},"ts":1,"q":"good"}`,
		`{"ts":1,"values":{"a":{"v":1,"ts":1,"q":"good"}}}`,
		`{"state":"online","ts":1}`,
		`{"v":"\ud83d","ts":1,"q":"good"}`,
		`{"v":"\u12`, `{"v":`, `online`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		v, ok := ValuePayload(p)
		if !ok {
			return
		}
		if !bytes.HasPrefix(p, []byte(`{"v":`)) && !bytes.Equal(v, p) {
			t.Fatalf("ValuePayload(%q) = %q: not a per-tag message, must be unchanged", p, v)
		}
		if utf8.Valid(p) && !utf8.Valid(v) {
			t.Fatalf("ValuePayload(%q) = %q: invalid UTF-8 from a valid payload", p, v)
		}
	})
}
