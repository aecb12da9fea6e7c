package app

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/mapping"
)

// The end-to-end path as a user runs it: a config file and a device map on
// disk, real Modbus TCP servers on loopback, the modbus-tcp driver, the
// gateway, the embedded broker, and a real MQTT client subscribed over TCP.

const e2eConfig = `[gateway]
id = "it"
data_dir = "{{DIR}}"

[broker]
listen = "127.0.0.1:0"

[[device]]
name = "boiler"
driver = "modbus-tcp"
address = "{{BOILER}}"
poll_interval = "100ms"
timeout = "300ms"
retries = 0
map = "boiler"

[[device]]
name = "meter"
driver = "modbus-tcp"
address = "{{METER}}"
poll_interval = "100ms"
timeout = "300ms"

  [[device.tag]]
  name = "energy"
  area = "input_register"
  address = 0
  type = "uint32"
  order = "CDAB"
  unit = "kWh"
`

const e2eMap = `[[tag]]
name = "temperature"
area = "holding_register"
address = 0
type = "float32"
unit = "°C"

[[tag]]
name = "pressure"
area = "holding_register"
address = 2
type = "int16"
scale = 0.01
unit = "bar"

[[tag]]
name = "burner_on"
area = "holding_register"
address = 4
type = "bool"
bit = 3

[[tag]]
name = "mode"
area = "holding_register"
address = 5
type = "string"
length = 3

[[tag]]
name = "flame_lost"
area = "discrete_input"
address = 7
type = "bool"
`

func writeE2E(t *testing.T, boiler, meter string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := strings.NewReplacer("{{DIR}}", dir, "{{BOILER}}", boiler, "{{METER}}", meter).Replace(e2eConfig)
	if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "edged.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "maps", "boiler.toml"), []byte(e2eMap), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "edged.toml")
}

func startSim(t *testing.T) *modbussim.Server {
	t.Helper()
	s := modbussim.New()
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type jsonPayload struct {
	V    any     `json:"v"`
	TS   int64   `json:"ts"`
	Q    string  `json:"q"`
	Unit string  `json:"unit"`
	Err  *string `json:"err"`
}

func decode(t *testing.T, m mqtttest.Message) jsonPayload {
	t.Helper()
	var p jsonPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatalf("%s: payload %q is not JSON: %v", m.Topic, m.Payload, err)
	}
	return p
}

func TestEndToEndModbusToMQTT(t *testing.T) {
	boiler, meter := startSim(t), startSim(t)
	// Known register contents, written as a device would hold them.
	boiler.SetHolding(0, 0x41BC, 0xCCCD)    // float32 23.6 (ABCD)
	boiler.SetHolding(2, 0xFF38)            // int16 -200 → × 0.01 = -2 bar
	boiler.SetHolding(4, 0x0008)            // bit 3 set
	boiler.SetHolding(5, 0x4543, 0x4F00, 0) // "ECO"
	boiler.SetDiscrete(7, true)
	meter.SetInput(0, 0x5678, 0x1234) // CDAB of 0x12345678 = 305419896

	path := writeE2E(t, boiler.Addr(), meter.Addr())
	cfg, err := configs.Load(path, Drivers(nil))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixMilli()
	rt, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#")

	want := map[string]jsonPayload{
		"edged/it/boiler/temperature": {V: 23.6, Q: "good", Unit: "°C"},
		"edged/it/boiler/pressure":    {V: -2.0, Q: "good", Unit: "bar"},
		"edged/it/boiler/burner_on":   {V: true, Q: "good"},
		"edged/it/boiler/mode":        {V: "ECO", Q: "good"},
		"edged/it/boiler/flame_lost":  {V: true, Q: "good"},
		"edged/it/meter/energy":       {V: 305419896.0, Q: "good", Unit: "kWh"},
	}
	// The tag values and the gateway status are all retained: they arrive
	// as one burst after the SUBACK, in no fixed order, so wait for all.
	sub.WaitFor(10*time.Second, "a value on every tag topic and the gateway status", func(ms []mqtttest.Message) bool {
		seen := map[string]bool{}
		for _, m := range ms {
			seen[m.Topic] = true
		}
		if !seen["edged/it/status"] {
			return false
		}
		for topic := range want {
			if !seen[topic] {
				return false
			}
		}
		return true
	})
	for topic, w := range want {
		m, _ := sub.Last(topic)
		got := decode(t, m)
		if got.V != w.V || got.Q != w.Q || got.Unit != w.Unit || got.Err != nil {
			t.Errorf("%s = %s, want v=%v q=%s unit=%q", topic, m.Payload, w.V, w.Q, w.Unit)
		}
		if got.TS < before || got.TS > time.Now().UnixMilli() {
			t.Errorf("%s: ts %d outside the test's run", topic, got.TS)
		}
	}
	// Nothing else is published on value topics (every topic is one we expect
	// or a status topic).
	for _, m := range sub.Messages() {
		if _, ok := want[m.Topic]; !ok && !strings.HasSuffix(m.Topic, "status") {
			t.Errorf("unexpected topic %s %s", m.Topic, m.Payload)
		}
	}
	if m, _ := sub.Last("edged/it/status"); string(m.Payload) != "online" {
		t.Errorf("gateway status %q", m.Payload)
	}

	// A value change on the device reaches the subscriber.
	boiler.SetHolding(0, 0x41C8, 0x0000) // 25.0
	sub.WaitTopic(5*time.Second, "edged/it/boiler/temperature", func(p []byte) bool { return strings.Contains(string(p), `"v":25,`) })

	// The boiler dies: its tags go bad once, its status goes offline, and the
	// meter keeps publishing.
	if err := boiler.Close(); err != nil {
		t.Fatal(err)
	}
	bad := sub.WaitTopic(10*time.Second, "edged/it/boiler/temperature", func(p []byte) bool { return strings.Contains(string(p), `"q":"bad"`) })
	if p := decode(t, bad); p.V != nil || p.Err == nil || *p.Err == "" {
		t.Errorf("bad sample %s: want v=null and a reason", bad.Payload)
	}
	sub.WaitTopic(10*time.Second, "edged/it/boiler/_status", func(p []byte) bool { return strings.Contains(string(p), `"state":"offline"`) })

	meterBefore := len(sub.On("edged/it/meter/energy"))
	meter.SetInput(0, 0x0001, 0x0000) // CDAB: 1
	meterAfter := sub.WaitTopic(5*time.Second, "edged/it/meter/energy", func(p []byte) bool { return strings.Contains(string(p), `"v":1,`) })
	if decode(t, meterAfter).Q != "good" || len(sub.On("edged/it/meter/energy")) <= meterBefore {
		t.Errorf("meter stopped publishing after the boiler died")
	}
	polls := pollsOf(rt, "meter")
	deadline := time.Now().Add(5 * time.Second)
	for pollsOf(rt, "meter") < polls+5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := pollsOf(rt, "meter"); got < polls+5 {
		t.Errorf("meter polled %d times in 5 s while the boiler was down, want ≥ 5", got-polls)
	}
	for _, d := range rt.Gateway.Snapshot() {
		if d.Name == "boiler" {
			for _, tag := range d.Tags {
				if tag.Sample.Quality != mapping.Bad {
					t.Errorf("boiler tag %s quality %v after the device died", tag.Name, tag.Sample.Quality)
				}
			}
		}
	}
}

func pollsOf(rt *Runtime, device string) uint64 {
	for _, d := range rt.Gateway.Snapshot() {
		if d.Name == device {
			return d.Polls
		}
	}
	return 0
}
