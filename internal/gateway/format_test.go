package gateway

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/mapping"
)

// TestValueFormatPublishesBareValuesOnMetaTopics: with format = "value" a
// local subscriber gets the bare value as text on topics rendered from
// device and tag meta and a tag's own topic; a bad sample is not published
// (the retained last good value stays).
func TestValueFormatPublishesBareValuesOnMetaTopics(t *testing.T) {
	prec := 1
	speed := &mapping.Spec{Name: "speed", Type: mapping.TypeFloat64, Precision: &prec}
	state := &mapping.Spec{Name: "state", Type: mapping.TypeString, Length: 4, Meta: map[string]string{"cell": "c2"}}
	alarm := &mapping.Spec{Name: "alarm", Type: mapping.TypeBool, Topic: "acme/alarms/{meta.line}/{device}"}
	nan := &mapping.Spec{Name: "temp", Type: mapping.TypeFloat64}
	for _, s := range []*mapping.Spec{speed, state, alarm, nan} {
		if err := s.Check(true); err != nil {
			t.Fatal(err)
		}
	}
	drv := &scripted{tags: []*mapping.Spec{speed, state, alarm, nan}}
	cfg := newConfig(map[string]*scripted{"filler": drv}, "filler")
	cfg.Gateway.Format = configs.FormatValue
	cfg.Gateway.TopicTemplate = "acme/{meta.area}/{meta.line}/{device}/{tag}"
	cfg.Devices[0].Meta = map[string]string{"area": "packaging", "line": "3", "cell": "c1"}
	g, b := startGateway(t, cfg)
	sub := mqtttest.Subscribe(t, b.Addr(), "acme/#")
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })

	g.Samples("filler", []mapping.Sample{
		{Tag: speed, Value: mapping.Value{Kind: mapping.KindFloat, Float: 24.700000000000003}, TimeMs: 1},
		{Tag: state, Value: mapping.Value{Kind: mapping.KindString, Str: `run "A"`}, TimeMs: 1},
		{Tag: alarm, Value: mapping.Value{Kind: mapping.KindBool, Bool: true}, TimeMs: 1},
		{Tag: nan, Value: mapping.Value{Kind: mapping.KindFloat, Float: math.NaN()}, TimeMs: 1},
	})
	want := map[string]string{
		"acme/packaging/3/filler/speed": "24.7",
		"acme/packaging/3/filler/state": `run "A"`,
		"acme/alarms/3/filler":          "true",
		"acme/packaging/3/filler/temp":  "NaN",
	}
	for topic, p := range want {
		if m := sub.WaitTopic(5*time.Second, topic, nil); string(m.Payload) != p {
			t.Errorf("%s: %q, want %q", topic, m.Payload, p)
		}
	}
	// A bad sample, then a good one: only the good one is published.
	g.Samples("filler", []mapping.Sample{{Tag: speed, Quality: mapping.Bad, TimeMs: 2, Err: errors.New("timeout")}})
	g.Samples("filler", []mapping.Sample{{Tag: speed, Value: mapping.Value{Kind: mapping.KindFloat, Float: 25}, TimeMs: 3}})
	sub.WaitTopic(5*time.Second, "acme/packaging/3/filler/speed", func(p []byte) bool { return string(p) == "25" })
	for _, m := range sub.On("acme/packaging/3/filler/speed") {
		if s := string(m.Payload); s != "24.7" && s != "25" {
			t.Errorf("speed published %q: a bad sample must not be", s)
		}
	}
	if got := g.Snapshot()[0].Tags[2].Topic; got != "acme/alarms/3/filler" {
		t.Errorf("snapshot topic of alarm = %q", got)
	}
}

func TestFormatLayoutErrors(t *testing.T) {
	spec := &mapping.Spec{Name: "a", Type: mapping.TypeUint16}
	for _, tc := range []struct {
		name string
		edit func(*configs.Config)
		want string
	}{
		{"value with device messages", func(c *configs.Config) { c.Gateway.Format = "value"; c.Gateway.Publish = "both" }, `publish = "tags"`},
		{"unknown format", func(c *configs.Config) { c.Gateway.Format = "xml" }, `format = "xml"`},
		{"missing meta", func(c *configs.Config) { c.Gateway.TopicTemplate = "{meta.area}/{tag}" }, `meta key "area"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newConfig(map[string]*scripted{"d": {tags: []*mapping.Spec{spec}}}, "d")
			tc.edit(cfg)
			if _, err := New(cfg, &countingPub{}, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
