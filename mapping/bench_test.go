package mapping

import (
	"errors"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
)

// Run with: go test -run '^$' -bench . -benchmem ./mapping/

func BenchmarkDecode(b *testing.B) {
	raw := []byte("\x42\xF6\xE9\x79\x12\x34\x56\x78SERIAL-NUMBER-0042\x00\x00")
	specs := []Spec{
		{Name: "bool", Type: TypeBool, Bit: intp(3)},
		{Name: "int16", Type: TypeInt16},
		{Name: "uint16", Type: TypeUint16},
		{Name: "int32", Type: TypeInt32, Order: OrderCDAB},
		{Name: "uint32", Type: TypeUint32, Order: OrderCDAB},
		{Name: "int64", Type: TypeInt64, Order: OrderDCBA},
		{Name: "uint64", Type: TypeUint64, Order: OrderDCBA},
		{Name: "float32", Type: TypeFloat32, Order: OrderCDAB},
		{Name: "float64", Type: TypeFloat64, Order: OrderBADC},
		{Name: "int16_scaled", Type: TypeInt16, Scale: 0.1, Offset: -40},
		{Name: "string", Type: TypeString, Length: 10, Order: OrderBADC},
	}
	for i := range specs {
		s := &specs[i]
		if err := s.Init(); err != nil {
			b.Fatal(err)
		}
		in := raw
		if s.Type == TypeString {
			in = raw[8:]
		}
		b.Run(s.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Decode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	s := Spec{Name: "x", Type: TypeFloat32, Order: OrderCDAB, Scale: 0.1}
	dst := make([]byte, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Encode(floatV(12.3), dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	samples := map[string]*Sample{
		"float32": {Tag: &Spec{Name: "t", Type: TypeFloat32, Unit: "bar"}, Value: floatV(f32(123.456)), TimeMs: 1700000000123},
		"float64": {Tag: &Spec{Name: "t", Type: TypeFloat64}, Value: floatV(1.0 / 3), TimeMs: 1700000000123},
		"int":     {Tag: &Spec{Name: "t", Type: TypeInt32}, Value: intV(-123456), TimeMs: 1700000000123},
		"string":  {Tag: &Spec{Name: "t", Type: TypeString, Length: 10}, Value: strV("SERIAL \"42\""), TimeMs: 1700000000123},
		"bad":     {Tag: &Spec{Name: "t", Type: TypeFloat64}, Quality: Bad, TimeMs: 1700000000123, Err: errors.New("read holding 100+2: i/o timeout")},
		"scaled":  {Tag: initSpec(b, Spec{Name: "t", Type: TypeInt16, Scale: 0.1}), Value: floatV(float64(247) * 0.1), TimeMs: 1700000000123},
	}
	for _, name := range []string{"float32", "float64", "int", "string", "bad", "scaled"} {
		s := samples[name]
		b.Run(name, func(b *testing.B) {
			dst := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendJSON(dst[:0], s)
			}
		})
	}
}

func initSpec(tb testing.TB, s Spec) *Spec {
	tb.Helper()
	if err := s.Init(); err != nil {
		tb.Fatal(err)
	}
	return &s
}

func BenchmarkFilter(b *testing.B) {
	spec := Spec{Deadband: 0.5, MaxSilence: configs.Duration(time.Minute)}
	var f Filter
	s := Sample{Tag: &spec, Value: floatV(0)}
	b.ReportAllocs()
	for b.Loop() {
		s.TimeMs++
		s.Value.Float += 0.2 // passes every third sample or so
		f.Pass(&s)
	}
}

func BenchmarkRender(b *testing.B) {
	t, err := ParseTemplate(DefaultTopicTemplate)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = t.Render("edged", "gw1", "pump-3", "flow_rate")
	}
}

// BenchmarkValue: the bare value of format = "value", locally (AppendValue)
// and on a value upstream, from edged's JSON message (ValuePayload).
func BenchmarkValue(b *testing.B) {
	s := &Sample{Tag: &Spec{Name: "t", Type: TypeFloat32, Unit: "bar"}, Value: floatV(f32(123.456)), TimeMs: 1700000000123}
	b.Run("AppendValue", func(b *testing.B) {
		dst := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			dst, _ = AppendValue(dst[:0], s)
		}
	})
	b.Run("ValuePayload", func(b *testing.B) {
		p := AppendJSON(nil, s)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ValuePayload(p)
		}
	})
}
