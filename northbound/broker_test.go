package northbound

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mqtttest"
)

func startBroker(t *testing.T) *Broker {
	t.Helper()
	b := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

func TestBrokerDeliversInProcessPublishesToTCPSubscriber(t *testing.T) {
	b := startBroker(t)
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") || strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("Addr() = %q, want the bound loopback port", b.Addr())
	}
	sub := mqtttest.Subscribe(t, b.Addr(), "plant/#")
	if err := b.Publish("plant/a", []byte(`{"v":1}`), false, 0); err != nil {
		t.Fatal(err)
	}
	m := sub.WaitTopic(5*time.Second, "plant/a", nil)
	if string(m.Payload) != `{"v":1}` {
		t.Fatalf("payload %q", m.Payload)
	}
}

func TestBrokerRetainsLastValueForLateSubscribers(t *testing.T) {
	b := startBroker(t)
	buf := []byte("first")
	if err := b.Publish("plant/level", buf, true, 0); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // the broker must have copied the payload
	if err := b.Publish("plant/level", []byte("second"), true, 0); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, b.Addr(), "plant/level")
	m := sub.WaitTopic(5*time.Second, "plant/level", nil)
	if string(m.Payload) != "second" || !m.Retain {
		t.Fatalf("late subscriber got %q retain=%v, want retained \"second\"", m.Payload, m.Retain)
	}
}

func TestBrokerReportsAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b := NewBroker(BrokerOptions{Listen: ln.Addr().String()})
	err = b.Start()
	if err == nil {
		_ = b.Stop()
		t.Fatal("Start on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), "[broker] listen") {
		t.Fatalf("error does not tell the installer what to change: %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("Stop after failed Start: %v", err)
	}
}

func TestBrokerInProcessOnly(t *testing.T) {
	b := NewBroker(BrokerOptions{})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	got := make(chan string, 1)
	if err := b.Subscribe("x/#", 1, func(topic string, payload []byte, _ bool) { got <- topic + " " + string(payload) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("x/y", []byte("1"), false, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "x/y 1" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-process subscriber got nothing")
	}
	if b.Addr() != "" {
		t.Fatalf("Addr() = %q without a listener", b.Addr())
	}
}

func TestPublishFlushDeliversBeforeStop(t *testing.T) {
	for i := 0; i < 5; i++ { // the race it guards against is timing-dependent: try a few times
		b := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"})
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		sub := mqtttest.Subscribe(t, b.Addr(), "gw/status")
		ok, err := b.PublishFlush("gw/status", []byte("offline"), true, 1, 5*time.Second)
		if err != nil || !ok {
			t.Fatalf("PublishFlush = %v, %v", ok, err)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		sub.WaitTopic(5*time.Second, "gw/status", func(p []byte) bool { return string(p) == "offline" })
	}
}

func TestPublishFlushWithoutSubscribers(t *testing.T) {
	b := startBroker(t)
	ok, err := b.PublishFlush("nobody/listens", []byte("x"), false, 0, time.Second)
	if err != nil || !ok {
		t.Fatalf("PublishFlush with no subscribers = %v, %v", ok, err)
	}
}
