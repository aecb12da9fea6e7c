package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound"
)

// scripted is a driver whose samples the test pushes by hand (pure logic;
// the Modbus path is tested end to end in integration_test.go).
type scripted struct {
	tags    []*mapping.Spec
	startFn func() error

	starts, stops atomic.Int32

	mu   sync.Mutex
	sink southbound.Sink
}

func (d *scripted) Init() error                { return nil }
func (d *scripted) Tags() []*mapping.Spec      { return d.tags }
func (d *scripted) Stop(context.Context) error { d.stops.Add(1); return nil }
func (d *scripted) Start(_ context.Context, s southbound.Sink) error {
	if d.startFn != nil {
		if err := d.startFn(); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.sink = s
	d.mu.Unlock()
	d.starts.Add(1)
	return nil
}

func newConfig(devs map[string]*scripted, order ...string) *configs.Config {
	cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1", TopicPrefix: "edged"}}
	for _, n := range order {
		cfg.Devices = append(cfg.Devices, &configs.Device{Name: n, Driver: "scripted", Settings: devs[n]})
	}
	return cfg
}

func startGateway(t *testing.T, cfg *configs.Config) (*Gateway, *northbound.Broker) {
	t.Helper()
	b := northbound.NewBroker(northbound.BrokerOptions{Listen: "127.0.0.1:0"})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	g, err := New(cfg, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g, b
}

func payload(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("payload %q is not JSON: %v", b, err)
	}
	return m
}

func TestGatewayPublishesStatusValuesAndDeadband(t *testing.T) {
	level := &mapping.Spec{Name: "level", Type: mapping.TypeFloat32, Unit: "%", Deadband: 1}
	drv := &scripted{tags: []*mapping.Spec{level}}
	g, b := startGateway(t, newConfig(map[string]*scripted{"tank": drv}, "tank"))
	sub := mqtttest.Subscribe(t, b.Addr(), "edged/#")
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(5*time.Second, "edged/gw1/status", func(p []byte) bool { return string(p) == "online" })

	push := func(v float64, ts int64) {
		g.Samples("tank", []mapping.Sample{{Tag: level, Value: mapping.Value{Kind: mapping.KindFloat, Float: v}, TimeMs: ts}})
	}
	push(50, 1000)
	push(50.5, 2000) // inside the deadband: not published
	push(52, 3000)
	g.State("tank", southbound.StateOnline, nil)
	sub.WaitTopic(5*time.Second, "edged/gw1/tank/_status", func(p []byte) bool { return strings.Contains(string(p), `"online"`) })

	// Live messages only: a retained copy may follow the SUBACK of a
	// subscription made while values were being published (MQTT allows it).
	live := func(ms []mqtttest.Message) []mqtttest.Message {
		var out []mqtttest.Message
		for _, m := range filterTopic(ms, "edged/gw1/tank/level") {
			if !m.Retain {
				out = append(out, m)
			}
		}
		return out
	}
	msgs := sub.WaitFor(5*time.Second, "two level values", func(ms []mqtttest.Message) bool {
		return len(live(ms)) >= 2
	})
	got := live(msgs)
	if len(got) != 2 {
		t.Fatalf("published %d level values, want 2 (deadband should drop 50.5)", len(got))
	}
	first, second := payload(t, got[0].Payload), payload(t, got[1].Payload)
	if first["v"] != 50.0 || first["ts"] != 1000.0 || first["q"] != "good" || first["unit"] != "%" {
		t.Fatalf("first payload %v", first)
	}
	if second["v"] != 52.0 {
		t.Fatalf("second payload %v", second)
	}
	if c := g.Counters(); c.Samples != 3 || c.Published != 2 {
		t.Fatalf("counters %+v, want 3 samples, 2 published", c)
	}

	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(5*time.Second, "edged/gw1/status", func(p []byte) bool { return string(p) == "offline" })
}

func TestGatewayBadSamplesAndOfflineState(t *testing.T) {
	temp := &mapping.Spec{Name: "temp", Type: mapping.TypeInt16}
	drv := &scripted{tags: []*mapping.Spec{temp}}
	g, b := startGateway(t, newConfig(map[string]*scripted{"oven": drv}, "oven"))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, b.Addr(), "edged/#")
	down := errors.New("dial tcp 10.0.0.9:502: i/o timeout")
	g.Samples("oven", []mapping.Sample{{Tag: temp, Quality: mapping.Bad, TimeMs: 5, Err: down}})
	g.State("oven", southbound.StateOffline, down)
	m := sub.WaitTopic(5*time.Second, "edged/gw1/oven/temp", nil)
	p := payload(t, m.Payload)
	if p["v"] != nil || p["q"] != "bad" || !strings.Contains(p["err"].(string), "i/o timeout") {
		t.Fatalf("bad sample payload %v", p)
	}
	st := sub.WaitTopic(5*time.Second, "edged/gw1/oven/_status", func(p []byte) bool { return strings.Contains(string(p), "offline") })
	sp := payload(t, st.Payload)
	if sp["state"] != "offline" || !strings.Contains(sp["err"].(string), "i/o timeout") {
		t.Fatalf("status %v", sp)
	}
	late := mqtttest.Subscribe(t, b.Addr(), "edged/gw1/oven/_status")
	if m := late.WaitTopic(5*time.Second, "edged/gw1/oven/_status", nil); !m.Retain || !strings.Contains(string(m.Payload), "offline") {
		t.Fatalf("late subscriber got %s retain=%v, want the retained offline status", m.Payload, m.Retain)
	}
	view := g.Snapshot()
	if len(view) != 1 || view[0].State != southbound.StateOffline || view[0].Tags[0].Sample.Quality != mapping.Bad {
		t.Fatalf("snapshot %+v", view)
	}
}

func TestGatewayKeepsRunningWhenOneDeviceFailsToStart(t *testing.T) {
	a := &mapping.Spec{Name: "a", Type: mapping.TypeUint16}
	z := &mapping.Spec{Name: "z", Type: mapping.TypeUint16}
	broken := &scripted{tags: []*mapping.Spec{a}, startFn: func() error { return errors.New("no route") }}
	ok := &scripted{tags: []*mapping.Spec{z}}
	g, b := startGateway(t, newConfig(map[string]*scripted{"broken": broken, "ok": ok}, "broken", "ok"))
	sub := mqtttest.Subscribe(t, b.Addr(), "edged/#")
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(5*time.Second, "edged/gw1/broken/_status", func(p []byte) bool { return strings.Contains(string(p), "no route") })
	g.Samples("ok", []mapping.Sample{{Tag: z, Value: mapping.Value{Kind: mapping.KindUint, Uint: 7}, TimeMs: 1}})
	m := sub.WaitTopic(5*time.Second, "edged/gw1/ok/z", nil)
	if payload(t, m.Payload)["v"] != 7.0 {
		t.Fatalf("payload %s", m.Payload)
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestGatewayRefusesTopicCollisions(t *testing.T) {
	cases := []struct {
		name     string
		template string
		devs     []string
		tags     []string
		want     string
	}{
		{"template without device", "{prefix}/{gateway}/{tag}", []string{"a", "b"}, []string{"x"}, `tag "x" of device "b"`},
		{"tag named like the device status", "{prefix}/{gateway}/{device}/{tag}", []string{"a"}, []string{"_status"}, "the status of device"},
		{"device named status collides with gateway status", "{prefix}/{gateway}/{tag}", []string{"d"}, []string{"status"}, "the gateway status"},
		{"bad template", "{prefix}/{nope}", []string{"a"}, []string{"x"}, "topic_template"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			devs := map[string]*scripted{}
			for _, d := range tc.devs {
				var specs []*mapping.Spec
				for _, n := range tc.tags {
					specs = append(specs, &mapping.Spec{Name: n, Type: mapping.TypeUint16})
				}
				devs[d] = &scripted{tags: specs}
			}
			cfg := newConfig(devs, tc.devs...)
			cfg.Gateway.TopicTemplate = tc.template
			_, err := New(cfg, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func filterTopic(ms []mqtttest.Message, topic string) []mqtttest.Message {
	var out []mqtttest.Message
	for _, m := range ms {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func TestGatewayPerDeviceMessages(t *testing.T) {
	a := &mapping.Spec{Name: "a", Type: mapping.TypeFloat32, Unit: "bar"}
	b := &mapping.Spec{Name: "b\"q", Type: mapping.TypeUint16, OnChange: true}
	drv := &scripted{tags: []*mapping.Spec{a, b}}
	for _, mode := range []string{"device", "both"} {
		t.Run(mode, func(t *testing.T) {
			cfg := newConfig(map[string]*scripted{"press": drv}, "press")
			cfg.Gateway.Publish = mode
			g, br := startGateway(t, cfg)
			sub := mqtttest.Subscribe(t, br.Addr(), "edged/#")
			if err := g.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			poll := func(av float64, bv uint64, ts int64) {
				g.Samples("press", []mapping.Sample{
					{Tag: a, Value: mapping.Value{Kind: mapping.KindFloat, Float: av}, TimeMs: ts},
					{Tag: b, Value: mapping.Value{Kind: mapping.KindUint, Uint: bv}, TimeMs: ts - 1},
				})
			}
			poll(1.5, 7, 1000)
			poll(2.5, 7, 2000) // b unchanged and on_change: only a in the second message
			msgs := sub.WaitFor(5*time.Second, "two device messages", func(ms []mqtttest.Message) bool {
				return len(filterTopic(ms, "edged/gw1/press")) >= 2
			})
			dev := filterTopic(msgs, "edged/gw1/press")
			var first, second struct {
				TS     int64                      `json:"ts"`
				Values map[string]json.RawMessage `json:"values"`
			}
			if err := json.Unmarshal(dev[0].Payload, &first); err != nil {
				t.Fatalf("%s: %v", dev[0].Payload, err)
			}
			if err := json.Unmarshal(dev[1].Payload, &second); err != nil {
				t.Fatalf("%s: %v", dev[1].Payload, err)
			}
			if first.TS != 1000 || len(first.Values) != 2 || payload(t, first.Values["a"])["unit"] != "bar" || payload(t, first.Values["b\"q"])["v"] != 7.0 {
				t.Fatalf("first device message %s", dev[0].Payload)
			}
			if second.TS != 2000 || len(second.Values) != 1 || payload(t, second.Values["a"])["v"] != 2.5 {
				t.Fatalf("second device message %s", dev[1].Payload)
			}
			perTag := len(filterTopic(msgs, "edged/gw1/press/a"))
			if mode == "device" && perTag != 0 {
				t.Fatalf("publish = device also sent %d per-tag messages", perTag)
			}
			if mode == "both" {
				sub.WaitFor(5*time.Second, "per-tag messages too", func(ms []mqtttest.Message) bool {
					return len(filterTopic(ms, "edged/gw1/press/a")) == 2
				})
			}
			_ = g.Stop(context.Background())
		})
	}
}

func TestGatewayRefusesUnknownPublishMode(t *testing.T) {
	cfg := newConfig(map[string]*scripted{"d": {tags: []*mapping.Spec{{Name: "x", Type: mapping.TypeUint16}}}}, "d")
	cfg.Gateway.Publish = "tag"
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), `allowed are "tags"`) {
		t.Fatalf("New() = %v", err)
	}
}
