package door

import (
	"context"
	"testing"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

type instantReader struct{ fakeDevice }

func (r *instantReader) ReadTag(context.Context, string) (mapping.Sample, error) {
	return mapping.Sample{Value: mapping.Value{Kind: mapping.KindInt, Int: 1}, Quality: mapping.Good}, nil
}

type benchDevices struct{ r *instantReader }

func (b benchDevices) Target(string, string) (Target, error) {
	return Target{Spec: &mapping.Spec{Name: "run", Type: mapping.TypeUint16, Writable: true}, State: southbound.StateOnline, Writer: b.r, Reader: b.r}, nil
}

// BenchmarkDoorWrite is the door's own cost per accepted write (policy,
// value, result, counter, audit line in a temp dir), with a device that
// answers at once.
func BenchmarkDoorWrite(b *testing.B) {
	for _, audit := range []bool{true, false} {
		name := "audit_synced"
		if !audit {
			name = "no_audit"
		}
		b.Run(name, func(b *testing.B) {
			r := &instantReader{fakeDevice: fakeDevice{specs: map[string]*mapping.Spec{}}}
			opts := Options{}
			if audit {
				opts.AuditDir = b.TempDir()
			}
			d := New(benchDevices{r}, opts)
			defer d.Close()
			req := Request{Device: "dev", Tag: "run", Text: "7", Source: Source{Kind: FromCLI}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if res := d.Write(ctx, req); !res.OK {
					b.Fatal(res.Message)
				}
				r.mu.Lock()
				r.wire = r.wire[:0]
				r.mu.Unlock()
			}
		})
	}
}
