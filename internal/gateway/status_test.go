package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/simdriver"
	"github.com/edged-gw/edged/mapping"
)

// A device run by the device host goes connecting → online → stopped with
// one _status message per state: the gateway and the host both report
// connecting at start and stopped at stop, and used to publish both.
func TestDeviceStatusPublishedOncePerState(t *testing.T) {
	simdriver.PlantNamed("status-once").Set("level", mapping.Value{Kind: mapping.KindFloat, Float: 1})
	drv := &simdriver.Device{Name: "tank", Driver: "sim", Plant: "status-once", PollInterval: configs.Duration(50 * time.Millisecond),
		Tag: []mapping.Spec{{Name: "level", Type: mapping.TypeFloat32}}}
	drv.Bind(drv)
	if err := drv.Init(); err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Gateway: configs.Gateway{ID: "gw1", TopicPrefix: "edged"},
		Devices: []*configs.Device{{Name: "tank", Driver: "sim", Settings: drv}}}
	g, b := startGateway(t, cfg)
	const topic = "edged/gw1/tank/_status"
	sub := mqtttest.Subscribe(t, b.Addr(), topic)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(10*time.Second, topic, func(p []byte) bool { return strings.Contains(string(p), `"online"`) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(10*time.Second, topic, func(p []byte) bool { return strings.Contains(string(p), `"stopped"`) })
	// One more status through the same path would arrive after the
	// stopped one: a marker published last shows everything before it came.
	if err := b.Publish("edged/gw1/tank/_status", []byte(`{"state":"marker"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	ms := sub.WaitFor(10*time.Second, "the marker", func(ms []mqtttest.Message) bool {
		return len(ms) > 0 && strings.Contains(string(ms[len(ms)-1].Payload), "marker")
	})
	var states []string
	for _, m := range ms[:len(ms)-1] {
		if m.Retain {
			// A status published while the SUBACK was on its way also
			// comes as the retained copy that follows the SUBACK.
			continue
		}
		p := string(m.Payload)
		_, rest, _ := strings.Cut(p, `"state":"`)
		st, _, _ := strings.Cut(rest, `"`)
		states = append(states, st)
	}
	if got := strings.Join(states, " "); got != "connecting online stopped" {
		t.Errorf("_status messages: %s, want connecting online stopped (one each)", got)
	}
}
