package app

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/mqtttest"
)

// An RTU bus over a socat pty pair with one live and one dead slave: the
// serial-bus series on /metrics show the line's transactions, its
// timeouts (the dead slave) and both devices' schedules.
func TestSerialBusMetrics(t *testing.T) {
	pty, err := modbussim.StartPtyPair(t.TempDir())
	if errors.Is(err, modbussim.ErrNoSocat) {
		t.Fatalf("%v: run `make test-deps`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pty.Close() })
	sim := modbussim.New()
	sim.SetHolding(0, 7)
	resp, err := sim.ServeRTU(pty.B, modbussim.RTUOptions{Units: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Close() })

	dir := t.TempDir()
	cfg := `[gateway]
id = "bus"
data_dir = "` + dir + `"
[broker]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[device]]
name = "live"
driver = "modbus-rtu"
port = "` + pty.A + `"
baud = 19200
unit_id = 1
poll_interval = "50ms"
timeout = "100ms"
  [[device.tag]]
  name = "v"
  area = "holding_register"
  address = 0
  type = "uint16"
[[device]]
name = "dead"
driver = "modbus-rtu"
port = "` + pty.A + `"
baud = 19200
unit_id = 9
poll_interval = "50ms"
timeout = "100ms"
retries = 0
  [[device.tag]]
  name = "v"
  area = "holding_register"
  address = 0
  type = "uint16"
`
	path := writeConfig(t, dir, cfg)
	rt, _ := startFromFile(t, path)
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/bus/#")
	sub.WaitTopic(10*time.Second, "edged/bus/live/v", func(p []byte) bool { return strings.Contains(string(p), `"v":7,`) })
	sub.WaitTopic(10*time.Second, "edged/bus/dead/_status", func(p []byte) bool { return strings.Contains(string(p), "offline") })

	base := "http://" + rt.Metrics.Addr()
	port := pty.A
	var m string
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m = get(t, base+"/metrics")
		if strings.Contains(m, `edged_serial_bus_transactions_total{port="`+port+`"}`) &&
			metric(t, m, `edged_serial_bus_transactions_total{port="`+port+`"}`) >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := metric(t, m, `edged_serial_bus_transactions_total{port="`+port+`"}`); v < 5 {
		t.Fatalf("transactions %v:\n%s", v, grepLines(m, "edged_serial"))
	}
	if v := metric(t, m, `edged_serial_bus_errors_total{kind="timeout",port="`+port+`"}`); v < 1 {
		t.Fatalf("the dead slave's timeouts are not counted:\n%s", grepLines(m, "edged_serial"))
	}
	if v := metric(t, m, `edged_serial_bus_errors_total{kind="crc",port="`+port+`"}`); v != 0 {
		t.Fatalf("CRC errors on a clean line: %v", v)
	}
	if u := metric(t, m, `edged_serial_bus_utilisation_ratio{port="`+port+`"}`); u <= 0 || u > 1 {
		t.Fatalf("utilisation %v", u)
	}
	if iv := metric(t, m, `edged_serial_device_interval_seconds{device="live",port="`+port+`"}`); iv != 0.05 {
		t.Fatalf("interval %v", iv)
	}
	if c := metric(t, m, `edged_serial_device_cycle_seconds{device="live",port="`+port+`"}`); c <= 0 || c > 1 {
		t.Fatalf("live cycle %v s", c)
	}
}

// A device that refuses a register inside a merged read: the planner
// learns it, and /metrics shows the learned plan.
func TestLearnedPlanMetrics(t *testing.T) {
	sim := modbussim.New()
	if err := sim.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	sim.Reject(modbussim.Holding, 5, 5)
	dir := t.TempDir()
	cfg := `[gateway]
id = "learn"
data_dir = "` + dir + `"
[broker]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[device]]
name = "plc"
driver = "modbus-tcp"
address = "` + sim.Addr() + `"
poll_interval = "50ms"
`
	for _, a := range []string{"0", "5", "9"} {
		cfg += "  [[device.tag]]\n  name = \"r" + a + "\"\n  area = \"holding_register\"\n  address = " + a + "\n  type = \"uint16\"\n"
	}
	path := writeConfig(t, dir, cfg)
	rt, _ := startFromFile(t, path)
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/learn/#")
	sub.WaitTopic(10*time.Second, "edged/learn/plc/r5", func(p []byte) bool { return strings.Contains(string(p), `"q":"bad"`) })
	sub.WaitTopic(10*time.Second, "edged/learn/plc/r9", func(p []byte) bool { return strings.Contains(string(p), `"q":"good"`) })
	// The refusal is learned when the next poll confirms it.
	var m string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, m = get(t, "http://"+rt.Metrics.Addr()+"/metrics")
		if metric(t, m, `edged_modbus_unreadable_tags{device="plc"}`) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if v := metric(t, m, `edged_modbus_unreadable_tags{device="plc"}`); v != 1 {
		t.Fatalf("unreadable tags %v:\n%s", v, grepLines(m, "edged_modbus"))
	}
	if v := metric(t, m, `edged_modbus_plan_changes_total{device="plc"}`); v < 1 {
		t.Fatalf("plan changes %v", v)
	}
	if v := metric(t, m, `edged_modbus_plan_requests{device="plc"}`); v != 2 {
		t.Fatalf("learned plan has %v reads, want 2 (r0 and r9 around the refused r5):\n%s", v, grepLines(m, "edged_modbus"))
	}
	if v := metric(t, m, `edged_modbus_max_registers{device="plc"}`); v != 125 {
		t.Fatalf("max registers %v", v)
	}
}
