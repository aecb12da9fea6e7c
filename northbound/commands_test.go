package northbound

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func TestCommandsCarryTheSenderAndRepliesEchoCorrelation(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{Access: &Access{Users: usersWith(t, "pw"), Namespace: "edged/gw1", Commands: true}})
	got := make(chan LocalCommand, 4)
	if err := b.SubscribeCommands("edged/gw1/+/+/set", 7, func(c LocalCommand) {
		got <- c
		_ = b.PublishReply(c.ResponseTopic, []byte(`{"ok":true}`), c.CorrelationData)
	}); err != nil {
		t.Fatal(err)
	}
	// edged's own messages on the topic are not commands.
	if err := b.Publish("edged/gw1/d/t/set", []byte("own"), false, 0); err != nil {
		t.Fatal(err)
	}
	cl, err := dial5(t, b.Addr(), nil, "admin", "pw", "scada-1")
	if err != nil {
		t.Fatal(err)
	}
	cl.subscribe(t, "replies/scada-1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.c.Publish(ctx, &paho.Publish{Topic: "edged/gw1/d/t/set", QoS: 1, Payload: []byte(`{"v":42.5,"id":"c-1"}`),
		Properties: &paho.PublishProperties{ResponseTopic: "replies/scada-1", CorrelationData: []byte("corr-9"), MessageExpiry: ptr(uint32(10))}}); err != nil {
		t.Fatal(err)
	}
	var c LocalCommand
	select {
	case c = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no command delivered")
	}
	if c.ClientID != "scada-1" || c.Username != "admin" || c.ProtocolVersion != 5 || string(c.Payload) != `{"v":42.5,"id":"c-1"}` ||
		c.ResponseTopic != "replies/scada-1" || string(c.CorrelationData) != "corr-9" || c.MessageExpiry != 10*time.Second {
		t.Fatalf("command %+v", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		cl.mu.Lock()
		for _, m := range cl.msgs {
			if m.Topic == "replies/scada-1" {
				if m.Properties == nil || !bytes.Equal(m.Properties.CorrelationData, []byte("corr-9")) || string(m.Payload) != `{"ok":true}` {
					t.Fatalf("reply %q props %+v", m.Payload, m.Properties)
				}
				cl.mu.Unlock()
				// A 3.1.1 sender is identified too.
				args := append(hostPortArgs(b.Addr()), "-V", "311", "-u", "hmi", "-P", "pw", "-i", "panel-3", "-q", "1")
				users := usersWith(t, "pw")
				users[0].Publish = []string{"edged/gw1/+/+/set"} // hmi
				b.auth.set(Access{Users: users, Namespace: "edged/gw1", Commands: true})
				if out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-t", "edged/gw1/d/t/set", "-m", "7")...); err != nil {
					t.Fatal(err, out)
				}
				select {
				case c = <-got:
				case <-time.After(5 * time.Second):
					t.Fatal("no 3.1.1 command delivered")
				}
				if c.ClientID != "panel-3" || c.Username != "hmi" || c.ProtocolVersion != 4 || string(c.Payload) != "7" {
					t.Fatalf("3.1.1 command %+v", c)
				}
				return
			}
		}
		cl.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no reply received")
}

func ptr[T any](v T) *T { return &v }

// TestStopWhileACommandIsAnswered: a command handler that replies while the
// broker stops must not wedge Stop (Stop waits for the client's goroutine
// the handler runs on; the reply once took the lock Stop holds).
func TestStopWhileACommandIsAnswered(t *testing.T) {
	b := NewBroker(BrokerOptions{Listen: "127.0.0.1:0", Access: &Access{Users: usersWith(t, "pw"), Namespace: "edged/gw1", Commands: true}})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	arrived, reply, replied := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	if err := b.SubscribeCommands("edged/gw1/+/+/set", 7, func(c LocalCommand) {
		close(arrived)
		<-reply
		replied <- b.PublishReply("replies/x", []byte(`{"ok":true}`), nil)
	}); err != nil {
		t.Fatal(err)
	}
	cl, err := dial5(t, b.Addr(), nil, "admin", "pw", "scada-1")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = cl.c.Publish(ctx, &paho.Publish{Topic: "edged/gw1/d/t/set", QoS: 1, Payload: []byte(`{"v":1}`)})
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no command delivered")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop() }()
	// Stop holds its lock while it waits for the clients.
	for deadline := time.Now().Add(10 * time.Second); b.mu.TryLock(); b.mu.Unlock() {
		if time.Now().After(deadline) {
			t.Fatal("Stop did not start")
		}
		time.Sleep(time.Millisecond)
	}
	close(reply)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return while a command handler replied")
	}
	<-replied // the reply itself may fail: the broker is stopping
}
