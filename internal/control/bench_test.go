package control

import (
	"context"
	"testing"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/door"
)

type readBackTag struct{ oneTag }

func (r *readBackTag) Target(device, tag string) (door.Target, error) {
	t, err := r.oneTag.Target(device, tag)
	t.Reader = r
	return t, err
}

func (r *readBackTag) ReadTag(context.Context, string) (mapping.Sample, error) {
	return mapping.Sample{Value: mapping.Value{Kind: mapping.KindInt, Int: 7}, Quality: mapping.Good}, nil
}

var _ southbound.TagReader = (*readBackTag)(nil)

// BenchmarkSocketWrite is one edged write's trip through the control
// socket and the door (no audit), with a device that answers at once.
func BenchmarkSocketWrite(b *testing.B) {
	dir := b.TempDir()
	path := SocketPath(dir)
	devs := &readBackTag{oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}}}
	s, err := Listen(path, door.New(devs, door.Options{}), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for b.Loop() {
		res, err := Write(ctx, path, Request{Device: "dev", Tag: "sp", Text: "7"}, 5*time.Second)
		if err != nil || !res.OK {
			b.Fatal(res.Message, err)
		}
	}
}
