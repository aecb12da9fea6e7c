package sparkplug

import (
	"strconv"
	"testing"

	"github.com/edged-gw/edged/mapping"
)

// Run with: go test -run '^$' -bench . -benchmem ./mapping/sparkplug/

// hundredFloats is a device of 100 float32 tags in bar, one poll of them,
// and a born session.
func hundredFloats(tb testing.TB) (*Session, []mapping.Sample) {
	var specs []*mapping.Spec
	var samples []mapping.Sample
	for i := range 100 {
		s := mustSpec(tb, mapping.Spec{Name: "pressure_" + strconv.Itoa(i), Type: mapping.TypeFloat32, Unit: "bar"})
		specs = append(specs, s)
		samples = append(samples, mapping.Sample{Tag: s, Value: mapping.Value{Kind: mapping.KindFloat, Float: float64(float32(1.5 + float64(i)/7))}, TimeMs: 1_700_000_000_123})
	}
	s, err := New(Config{Group: "plant1", Node: "gw1", Now: func() int64 { return 1_700_000_000_500 }, Devices: []Device{{Name: "press", Tags: specs}}})
	if err != nil {
		tb.Fatal(err)
	}
	s.Connect()
	s.DeviceBirth("press")
	if _, err := s.Births(); err != nil {
		tb.Fatal(err)
	}
	return s, samples
}

// BenchmarkDDATA: one poll of 100 float tags, from samples to the wire:
// Data at poll time, then Next at send time.
func BenchmarkDDATA(b *testing.B) {
	s, samples := hundredFloats(b)
	pending := make([]byte, 0, 4096)
	wire := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		topic, p, err := s.Data("press", samples, pending[:0])
		if err != nil {
			b.Fatal(err)
		}
		if wire, err = s.Next(wire[:0], topic, p, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(wire)), "wire-bytes/op")
}

// TestDDATADoesNotAllocate: with buffers that have room, a poll of good
// samples costs no allocation on the way to the wire, live or replayed.
func TestDDATADoesNotAllocate(t *testing.T) {
	s, samples := hundredFloats(t)
	pending := make([]byte, 0, 4096)
	wire := make([]byte, 0, 4096)
	for _, hist := range []bool{false, true} {
		n := testing.AllocsPerRun(100, func() {
			topic, p, _ := s.Data("press", samples, pending[:0])
			wire, _ = s.Next(wire[:0], topic, p, hist)
		})
		if n != 0 {
			t.Errorf("historical=%v: %v allocations per poll, want 0", hist, n)
		}
	}
	if len(wire) < 100*5 {
		t.Fatalf("%d wire bytes for 100 metrics", len(wire))
	}
}

// publishSize is the size of an MQTT 3.1.1 QoS 1 PUBLISH carrying payload
// on topic: fixed header, remaining length, topic, packet id, payload.
func publishSize(topic string, payload int) int {
	rem := 2 + len(topic) + 2 + payload
	n := 1 + rem
	for r := rem; ; r >>= 7 {
		n++
		if r < 128 {
			break
		}
	}
	return n
}

// BenchmarkWireBytesPer100Floats reports the bytes one poll of 100 float
// tags puts on the wire in each format, from the real encoders: JSON per
// tag (mapping.AppendJSON on {prefix}/{gateway}/{device}/{tag}), JSON per
// device (the gateway's {"ts":…,"values":{…}} on {prefix}/{gateway}/{device})
// and Sparkplug DDATA (Data + Next). Sizes do not depend on the machine.
func BenchmarkWireBytesPer100Floats(b *testing.B) {
	s, samples := hundredFloats(b)
	tmpl, err := mapping.ParseTemplate(mapping.DefaultTopicTemplate)
	if err != nil {
		b.Fatal(err)
	}
	var perTag, perDevice, sparkplug int
	var buf []byte
	for b.Loop() {
		perTag = 0
		for i := range samples {
			buf = mapping.AppendJSON(buf[:0], &samples[i])
			perTag += publishSize(tmpl.Render("edged", "gw1", "press", samples[i].Tag.Name), len(buf))
		}
		buf = append(buf[:0], `{"ts":1700000000123,"values":{`...)
		for i := range samples {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendQuote(buf, samples[i].Tag.Name)
			buf = append(buf, ':')
			buf = mapping.AppendJSON(buf, &samples[i])
		}
		buf = append(buf, "}}"...)
		perDevice = publishSize("edged/gw1/press", len(buf))
		topic, p, _ := s.Data("press", samples, nil)
		wire, _ := s.Next(nil, topic, p, false)
		sparkplug = publishSize(topic, len(wire))
	}
	b.ReportMetric(float64(perTag), "json-per-tag-B")
	b.ReportMetric(float64(perDevice), "json-per-device-B")
	b.ReportMetric(float64(sparkplug), "sparkplug-ddata-B")
}
