package gateway

import (
	"strconv"
	"testing"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
)

// countingPub takes messages the way the broker does (copying nothing it
// keeps) and counts them.
type countingPub struct{ n, bytes int }

func (p *countingPub) Publish(_ string, payload []byte, _ bool, _ byte) error {
	p.n++
	p.bytes += len(payload)
	return nil
}

// BenchmarkSamples is the publish path of one poll of 100 float32 tags:
// filter, render, publish. Run with -benchmem: topics are rendered once per
// tag when the config is built, so a poll must not allocate per sample.
func BenchmarkSamples(b *testing.B) {
	for _, bc := range []struct {
		name    string
		publish string
		format  string
	}{{"tags", "tags", ""}, {"device", "device", ""}, {"value", "tags", "value"}, {"meta", "tags", ""}} {
		b.Run(bc.name, func(b *testing.B) {
			drv := &scripted{}
			for i := range 100 {
				drv.tags = append(drv.tags, &mapping.Spec{Name: "t" + strconv.Itoa(i), Type: mapping.TypeFloat32, Unit: "°C"})
			}
			for _, s := range drv.tags {
				if err := s.Init(); err != nil {
					b.Fatal(err)
				}
			}
			cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1", TopicPrefix: "edged", Publish: bc.publish, Format: bc.format},
				Devices: []*configs.Device{{Name: "dev", Driver: "scripted", Settings: drv}}}
			if bc.name == "meta" { // an ISA-95 path from device and tag meta
				cfg.Gateway.TopicTemplate = "acme/{meta.site}/{meta.area}/{meta.line}/{meta.cell}/{device}/{tag}"
				cfg.Devices[0].Meta = map[string]string{"site": "lyon", "area": "packaging", "line": "3"}
				for _, s := range drv.tags {
					s.Meta = map[string]string{"cell": "c1"}
				}
			}
			pub := &countingPub{}
			g, err := New(cfg, pub, nil)
			if err != nil {
				b.Fatal(err)
			}
			d := g.tbl.Load().byName["dev"]
			samples := make([]mapping.Sample, len(drv.tags))
			for i, s := range drv.tags {
				samples[i] = mapping.Sample{Tag: s, Value: mapping.Value{Kind: mapping.KindFloat}, TimeMs: 1700000000000}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				for i := range samples {
					samples[i].Value.Float = float64(n) + float64(i)*0.1
				}
				d.Samples("dev", samples)
			}
			b.ReportMetric(float64(pub.bytes)/float64(b.N), "bytes/poll")
		})
	}
}
