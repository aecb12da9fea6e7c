package gateway

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/mapping"
)

func dev(name, fingerprint string, drv *scripted) *configs.Device {
	return &configs.Device{Name: name, Driver: "scripted", Fingerprint: fingerprint, Settings: drv}
}

func TestReloadRestartsOnlyChangedDevices(t *testing.T) {
	mk := func(tag string) *scripted {
		return &scripted{tags: []*mapping.Spec{{Name: tag, Type: mapping.TypeUint16}}}
	}
	keep, change, drop := mk("k"), mk("c"), mk("d")
	cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1"}, Devices: []*configs.Device{
		dev("keep", "fp-keep", keep), dev("change", "fp-change-1", change), dev("drop", "fp-drop", drop),
	}}
	g, b := startGateway(t, cfg)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.Samples("drop", []mapping.Sample{{Tag: drop.tags[0], Value: mapping.Value{Kind: mapping.KindUint, Uint: 1}, TimeMs: 1}})

	changed, added := mk("c"), mk("n")
	next := &configs.Config{Gateway: configs.Gateway{ID: "gw1"}, Devices: []*configs.Device{
		dev("keep", "fp-keep", mk("k")), // same fingerprint: the running one is kept
		dev("change", "fp-change-2", changed),
		dev("new", "fp-new", added),
	}}
	rep, err := g.Reload(context.Background(), next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Unchanged, []string{"keep"}) || !slices.Equal(rep.Restarted, []string{"change"}) ||
		!slices.Equal(rep.Added, []string{"new"}) || !slices.Equal(rep.Removed, []string{"drop"}) {
		t.Fatalf("report %+v", rep)
	}
	if keep.stops.Load() != 0 || keep.starts.Load() != 1 {
		t.Fatalf("unchanged device was restarted: starts %d stops %d", keep.starts.Load(), keep.stops.Load())
	}
	if change.stops.Load() != 1 || changed.starts.Load() != 1 || drop.stops.Load() != 1 || added.starts.Load() != 1 {
		t.Fatalf("life cycle: old change stops %d, new change starts %d, drop stops %d, new starts %d",
			change.stops.Load(), changed.starts.Load(), drop.stops.Load(), added.starts.Load())
	}
	// The kept device keeps its running driver and its state.
	names := []string{}
	for _, d := range g.Snapshot() {
		names = append(names, d.Name)
	}
	if !slices.Equal(names, []string{"keep", "change", "new"}) {
		t.Fatalf("devices after reload %v", names)
	}
	// The removed device's retained value is gone from the broker.
	late := mqtttest.Subscribe(t, b.Addr(), "edged/gw1/#")
	// Every retained message matching the subscription has been recorded
	// once a retained message on a second subscription has.
	if err := b.Publish("sync/late", []byte("s"), true, 1); err != nil {
		t.Fatal(err)
	}
	late.Sync(5*time.Second, "sync/late")
	if _, ok := late.Last("edged/gw1/keep/_status"); !ok {
		t.Fatal("the kept device's retained status is not served: the check below would prove nothing")
	}
	if _, ok := late.Last("edged/gw1/drop/d"); ok {
		t.Fatal("removed device's retained value is still served")
	}
}

func TestReloadWithCollisionChangesNothing(t *testing.T) {
	a := &scripted{tags: []*mapping.Spec{{Name: "x", Type: mapping.TypeUint16}}}
	cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1"}, Devices: []*configs.Device{dev("a", "fa", a)}}
	g, _ := startGateway(t, cfg)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := &configs.Config{Gateway: configs.Gateway{ID: "gw1", TopicTemplate: "{prefix}/{gateway}/{tag}"}, Devices: []*configs.Device{
		dev("a", "fa", a), dev("b", "fb", &scripted{tags: []*mapping.Spec{{Name: "x", Type: mapping.TypeUint16}}}),
	}}
	if _, err := g.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "is used by both") {
		t.Fatalf("Reload with a topic collision = %v", err)
	}
	if a.stops.Load() != 0 || len(g.Snapshot()) != 1 {
		t.Fatalf("a refused reload changed the running gateway")
	}
}

func TestReloadOfLayoutRestartsEveryDevice(t *testing.T) {
	a := &scripted{tags: []*mapping.Spec{{Name: "x", Type: mapping.TypeUint16}}}
	cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1"}, Devices: []*configs.Device{dev("a", "fa", a)}}
	g, _ := startGateway(t, cfg)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a2 := &scripted{tags: []*mapping.Spec{{Name: "x", Type: mapping.TypeUint16}}}
	next := &configs.Config{Gateway: configs.Gateway{ID: "gw1", TopicPrefix: "plant"}, Devices: []*configs.Device{dev("a", "fa", a2)}}
	rep, err := g.Reload(context.Background(), next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Restarted, []string{"a"}) || a.stops.Load() != 1 || a2.starts.Load() != 1 {
		t.Fatalf("a new topic prefix must restart the device: %+v", rep)
	}
	if got := g.Snapshot()[0].Tags[0].Topic; got != "plant/gw1/a/x" {
		t.Fatalf("topic after reload %q", got)
	}
}

// TestReloadClearsTopicsThatMoved: a reload that moves a tag's topic
// (here: its device's meta) clears the retained value on the old topic,
// and keeps the one on a topic still in use.
func TestReloadClearsTopicsThatMoved(t *testing.T) {
	x := &mapping.Spec{Name: "x", Type: mapping.TypeUint16}
	y := &mapping.Spec{Name: "y", Type: mapping.TypeUint16, Topic: "fixed/{tag}"}
	cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1", TopicTemplate: "{meta.line}/{tag}"}, Devices: []*configs.Device{dev("a", "fa", &scripted{tags: []*mapping.Spec{x, y}})}}
	cfg.Devices[0].Meta = map[string]string{"line": "l1"}
	g, b := startGateway(t, cfg)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.Samples("a", []mapping.Sample{{Tag: x, Value: mapping.Value{Kind: mapping.KindUint, Uint: 1}, TimeMs: 1}, {Tag: y, Value: mapping.Value{Kind: mapping.KindUint, Uint: 2}, TimeMs: 1}})
	if _, ok := b.Retained("l1/x"); !ok {
		t.Fatal("no retained value on l1/x")
	}
	next := &configs.Config{Gateway: cfg.Gateway, Devices: []*configs.Device{dev("a", "fa-2", &scripted{tags: []*mapping.Spec{x, y}})}}
	next.Devices[0].Meta = map[string]string{"line": "l2"}
	if _, err := g.Reload(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if got := g.Snapshot()[0].Tags[0].Topic; got != "l2/x" {
		t.Fatalf("topic after reload %q", got)
	}
	if p, ok := b.Retained("l1/x"); ok {
		t.Errorf("the old topic still serves %s", p)
	}
	if _, ok := b.Retained("fixed/y"); !ok {
		t.Error("the retained value of a topic still in use was cleared")
	}
}
