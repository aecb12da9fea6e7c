package app

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/simdriver" // the one line a new protocol costs (a blank import in southbound/all)
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// TestNewProtocolGetsTheHost: the test-only "sim" driver (one folder, one
// import line, no scheduler, backoff, state or write policy of its own)
// runs in the gateway like any protocol: it is polled at its rate, goes
// offline and online again with one log line per transition and every tag
// bad while offline, exports the per-device request, error and poll
// metrics, and its writes pass the tag's write policy and run one at a
// time between polls.
func TestNewProtocolGetsTheHost(t *testing.T) {
	plant := simdriver.PlantNamed(t.Name())
	plant.Set("level", mapping.Value{Kind: mapping.KindFloat, Float: 1.5})
	dir := t.TempDir()
	path := writeConfig(t, dir, `[gateway]
id = "it"
data_dir = "`+dir+`"
[broker]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[device]]
name = "tank"
driver = "sim"
plant = "`+t.Name()+`"
poll_interval = "20ms"
  [[device.tag]]
  name = "level"
  type = "float64"
  [[device.tag]]
  name = "setpoint"
  type = "float64"
  writable = true
  max = 100.0
  [[device.tag]]
  name = "mode"
  type = "int32"
  writable = true
  write_interval = "1h"
`)
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg, err := configs.Load(path, Drivers(log))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#")
	sub.WaitTopic(10*time.Second, "edged/it/tank/_status", func(p []byte) bool { return strings.Contains(string(p), `"online"`) })
	sub.WaitTopic(10*time.Second, "edged/it/tank/level", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":1.5,`) })

	// Writes: the policy is the host's; a write lands once and reads back.
	w := cfg.Devices[0].Settings.(southbound.Writer)
	ctx := context.Background()
	if err := w.Write(ctx, "setpoint", mapping.Value{Kind: mapping.KindFloat, Float: 42}); err != nil {
		t.Fatalf("write setpoint: %v", err)
	}
	sub.WaitTopic(10*time.Second, "edged/it/tank/setpoint", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":42,`) })
	if err := w.Write(ctx, "setpoint", mapping.Value{Kind: mapping.KindFloat, Float: 500}); !errors.Is(err, mapping.ErrWriteRefused) && !errors.Is(err, mapping.ErrRange) {
		t.Errorf("write above max: %v, want refused", err)
	}
	if err := w.Write(ctx, "level", mapping.Value{Kind: mapping.KindFloat, Float: 1}); !errors.Is(err, mapping.ErrWriteRefused) {
		t.Errorf("write to a read-only tag: %v, want refused", err)
	}
	if err := w.Write(ctx, "mode", mapping.Value{Kind: mapping.KindInt, Int: 2}); err != nil {
		t.Fatalf("write mode: %v", err)
	}
	if err := w.Write(ctx, "mode", mapping.Value{Kind: mapping.KindInt, Int: 3}); !errors.Is(err, mapping.ErrWriteRefused) {
		t.Errorf("second write inside write_interval: %v, want refused", err)
	}
	if got := strings.Join(plant.Writes(), " "); got != "setpoint=42 mode=2" {
		t.Errorf("writes on the wire: %q, want \"setpoint=42 mode=2\"", got)
	}

	// Offline and back: one transition each way, tags bad meanwhile.
	plant.SetDown(true)
	sub.WaitTopic(10*time.Second, "edged/it/tank/_status", func(p []byte) bool { return strings.Contains(string(p), `"offline"`) })
	sub.WaitTopic(10*time.Second, "edged/it/tank/level", func(p []byte) bool { return strings.Contains(string(p), `"q":"bad"`) })
	mark := len(sub.Messages())
	plant.SetDown(false)
	sub.WaitFor(10*time.Second, "online again with good values", func(ms []mqtttest.Message) bool {
		online, good := false, false
		for _, m := range ms[mark:] {
			online = online || m.Topic == "edged/it/tank/_status" && strings.Contains(string(m.Payload), `"online"`)
			good = good || m.Topic == "edged/it/tank/level" && strings.HasPrefix(string(m.Payload), `{"v":1.5,`)
		}
		return online && good
	})
	out := logs.String()
	if n := strings.Count(out, `msg="device offline" device=tank plant=`); n != 1 {
		t.Errorf("%d \"device offline\" lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="device online" device=tank plant=`); n != 2 {
		t.Errorf("%d \"device online\" lines, want 2:\n%s", n, out)
	}

	// Metrics: counted and timed by the host.
	_, body := get(t, "http://"+rt.Metrics.Addr()+"/metrics")
	if v := metric(t, body, `edged_device_requests_total{device="tank"}`); v < 10 {
		t.Errorf("requests %v", v)
	}
	if v := metric(t, body, `edged_device_errors_total{device="tank",kind="timeout"}`); v < 1 {
		t.Errorf("timeouts %v, want the failed polls while the plant was down", v)
	}
	if v := metric(t, body, `edged_device_poll_duration_seconds_sum{device="tank"}`); v <= 0 {
		t.Errorf("poll duration %v", v)
	}
	metric(t, body, `edged_device_overruns_total{device="tank"}`)
	if n := plant.Overlaps(); n != 0 {
		t.Errorf("%d requests overlapped another: polls and writes must take turns", n)
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNewReasonWhileOfflineIsShown: a device that stays offline for a new
// reason (an OPC UA server whose certificate the operator just trusted,
// now refusing edged's) shows the new reason where the operator looks —
// a warn line, the retained _status, /readyz — while more failures for
// the same reason stay at debug.
func TestNewReasonWhileOfflineIsShown(t *testing.T) {
	plant := simdriver.PlantNamed(t.Name())
	plant.Set("level", mapping.Value{Kind: mapping.KindFloat, Float: 1.5})
	dir := t.TempDir()
	path := writeConfig(t, dir, `[gateway]
id = "it"
data_dir = "`+dir+`"
[broker]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[device]]
name = "tank"
driver = "sim"
plant = "`+t.Name()+`"
poll_interval = "20ms"
  [[device.tag]]
  name = "level"
  type = "float64"
`)
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg, err := configs.Load(path, Drivers(log))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	base := "http://" + rt.Metrics.Addr()
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#")
	sub.WaitTopic(10*time.Second, "edged/it/tank/_status", func(p []byte) bool { return strings.Contains(string(p), `"online"`) })

	plant.SetFault(errors.New("sim: certificate not trusted: move it to trusted/"))
	sub.WaitTopic(10*time.Second, "edged/it/tank/_status", func(p []byte) bool { return strings.Contains(string(p), "move it to trusted/") })
	testwait.For(t, 10*time.Second, "/readyz with the first reason", func() bool {
		_, body := get(t, base+"/readyz")
		return strings.Contains(body, "move it to trusted/")
	})

	plant.SetFault(errors.New("sim: the plant does not trust edged's certificate"))
	sub.WaitTopic(10*time.Second, "edged/it/tank/_status", func(p []byte) bool {
		return strings.Contains(string(p), `"offline"`) && strings.Contains(string(p), "does not trust edged")
	})
	sub.WaitTopic(10*time.Second, "edged/it/tank/level", func(p []byte) bool { return strings.Contains(string(p), "does not trust edged") })
	testwait.For(t, 10*time.Second, "/readyz with the new reason", func() bool {
		code, body := get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, "does not trust edged") && !strings.Contains(body, "move it to trusted/")
	})
	// More failures for the same reason (backoff 250 ms, doubling): still
	// one line per reason.
	errs := func() uint64 {
		for _, d := range rt.Gateway.Snapshot() {
			if sr, ok := d.Source.(southbound.StatsReporter); ok {
				return sr.Stats().Errors
			}
		}
		t.Fatal("no stats")
		return 0
	}
	mark := errs()
	testwait.For(t, 20*time.Second, "two more failed polls", func() bool { return errs() >= mark+2 })
	out := logs.String()
	if n := strings.Count(out, `level=WARN msg="device offline" device=tank`); n != 1 {
		t.Errorf("%d \"device offline\" lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `level=WARN msg="device still offline, for another reason" device=tank`); n != 1 || !strings.Contains(out, "does not trust edged") {
		t.Errorf("%d warn lines for the new reason, want 1:\n%s", n, out)
	}
}
