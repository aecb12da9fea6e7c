package northbound

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

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

// publishOnSubscribe publishes a newer retained value while a subscription
// is being granted (after it is in the topic tree, before the SUBACK), the
// window in which a subscriber used to get the same value twice: live, and
// again as the retained copy sent after the SUBACK.
type publishOnSubscribe struct {
	mqtt.HookBase
	b     *Broker
	topic string
	done  atomic.Bool
}

func (h *publishOnSubscribe) ID() string           { return "test-publish-on-subscribe" }
func (h *publishOnSubscribe) Provides(b byte) bool { return b == mqtt.OnSubscribed }
func (h *publishOnSubscribe) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if cl.Net.Inline || h.done.Swap(true) {
		return
	}
	_ = h.b.Publish(h.topic, []byte("new"), true, 0)
}

func TestRetainedCopyNotSentAfterNewerLiveValue(t *testing.T) {
	b := startBroker(t)
	if err := b.Publish("p/v", []byte("old"), true, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.AddHook(&publishOnSubscribe{b: b, topic: "p/v"}, nil); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, b.Addr(), "p/#")
	sub.WaitTopic(5*time.Second, "p/v", func(p []byte) bool { return string(p) == "new" })
	// A marker published after the SUBACK arrives after anything the
	// broker sent for the subscription.
	if err := b.Publish("p/marker", []byte("m"), false, 0); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(5*time.Second, "p/marker", nil)
	var got []string
	for _, m := range sub.On("p/v") {
		got = append(got, fmt.Sprintf("%s retain=%v", m.Payload, m.Retain))
	}
	if len(got) != 1 {
		t.Fatalf("p/v arrived %d times, want once (the newer live value): %v", len(got), got)
	}
}
