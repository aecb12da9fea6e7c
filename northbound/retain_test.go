package northbound

import (
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mqtttest"
)

func TestMatchFilter(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/b", "$SYS/b", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a/b/c", "a/b", false},
		{"a", "a/b", false},
		{"+", "a", true},
		{"+/+", "a", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	}
	for _, tc := range cases {
		if got := matchFilter(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

func TestRetainedMessagesFollowSubackAndCanBeDeleted(t *testing.T) {
	b := startBroker(t)
	for _, topic := range []string{"p/a/x", "p/a/y", "p/b/x"} {
		if err := b.Publish(topic, []byte("v-"+topic), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publish("p/a/y", nil, true, 0); err != nil { // delete
		t.Fatal(err)
	}
	if _, ok := b.Retained("p/a/y"); ok {
		t.Fatal("empty retained payload did not delete")
	}
	sub := mqtttest.Subscribe(t, b.Addr(), "p/a/+")
	m := sub.WaitTopic(5*time.Second, "p/a/x", nil)
	if string(m.Payload) != "v-p/a/x" || !m.Retain {
		t.Fatalf("retained %q retain=%v", m.Payload, m.Retain)
	}
	// Live messages after subscribing are not marked retained.
	if err := b.Publish("p/a/x", []byte("live"), true, 0); err != nil {
		t.Fatal(err)
	}
	live := sub.WaitTopic(5*time.Second, "p/a/x", func(p []byte) bool { return string(p) == "live" })
	if live.Retain {
		t.Fatal("a live message arrived with the retain flag")
	}
	for _, m := range sub.Messages() {
		if m.Topic != "p/a/x" {
			t.Fatalf("unexpected %s %q (deleted or not matching)", m.Topic, m.Payload)
		}
	}
}
