package app

import (
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/simdriver"
	"github.com/edged-gw/edged/mapping"
)

// TestUpstreamFormats: one gateway publishing JSON per tag and per device,
// bridged to mosquitto by a json upstream and a value upstream. The json
// one gets the messages as they are; the value one gets each tag's bare
// value (the text of a string, unquoted), the status as it is, and no
// per-device message.
func TestUpstreamFormats(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "j/#", "v/#")
	plant := simdriver.PlantNamed(t.Name())
	plant.Set("level", mapping.Value{Kind: mapping.KindFloat, Float: 1.5})
	plant.Set("mode", mapping.Value{Kind: mapping.KindString, Str: `auto "2"`})
	dir := t.TempDir()
	path := writeConfig(t, dir, `[gateway]
id = "it"
data_dir = "`+dir+`"
publish = "both"
[broker]
listen = "127.0.0.1:0"
[metrics]
disabled = true
[[device]]
name = "tank"
driver = "sim"
plant = "`+t.Name()+`"
poll_interval = "50ms"
  [[device.tag]]
  name = "level"
  type = "float64"
  [[device.tag]]
  name = "mode"
  type = "string"
  length = 8
`+upstreamTOML(mq, mq.TLSAddr(), "json", `topic_prefix = "j"`)+upstreamTOML(mq, mq.TLSAddr(), "value", `topic_prefix = "v"
format = "value"`))
	startFromFile(t, path)

	cloud.WaitTopic(20*time.Second, "v/it/tank/level", func(p []byte) bool { return string(p) == "1.5" })
	cloud.WaitTopic(20*time.Second, "v/it/tank/mode", func(p []byte) bool { return string(p) == `auto "2"` })
	cloud.WaitTopic(20*time.Second, "j/it/tank/level", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":1.5,"ts":`) })
	cloud.WaitTopic(20*time.Second, "j/it/tank/mode", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":"auto \"2\"",`) })
	cloud.WaitTopic(20*time.Second, "j/it/tank", func(p []byte) bool { return strings.Contains(string(p), `"values":{`) })
	cloud.WaitTopic(20*time.Second, "v/it/tank/_status", func(p []byte) bool { return strings.Contains(string(p), `"state":"online"`) })
	// Both uplinks bridge the same local messages in order: once the json
	// one has a later per-device message, the value one had its chance.
	n := len(cloud.On("j/it/tank"))
	cloud.WaitFor(20*time.Second, "more per-device messages", func([]mqtttest.Message) bool { return len(cloud.On("j/it/tank")) > n+2 })
	cloud.WaitTopic(20*time.Second, "v/it/tank/level", func(p []byte) bool { return string(p) == "1.5" })
	if ms := cloud.On("v/it/tank"); len(ms) > 0 {
		t.Errorf("the value upstream got %d per-device messages, e.g. %q", len(ms), ms[0].Payload)
	}
	for _, m := range cloud.On("v/it/tank/level") {
		if string(m.Payload) != "1.5" {
			t.Errorf("value upstream level payload %q", m.Payload)
		}
	}
}
