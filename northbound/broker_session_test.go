package northbound

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edged-gw/edged/internal/testwait"
)

// persistentConnect connects a client with CleanStart false asking to keep
// its session an hour, and returns the client and whether the broker still
// had its session.
func persistentConnect(t *testing.T, addr, id string) (*paho.Client, bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hour := uint32(3600)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &hour}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v (reason %v)", id, err, ca)
	}
	if ca.Properties == nil || ca.Properties.SessionExpiryInterval == nil || *ca.Properties.SessionExpiryInterval != 1 {
		t.Fatalf("CONNACK does not lower the asked session expiry to session_expiry (1 s): %+v", ca.Properties)
	}
	return c, ca.SessionPresent
}

// TestSessionExpiryEndsAVanishedSession: [broker] session_expiry caps what
// a client asks for (an hour here): its session survives a short absence
// and is gone once it has been away longer than session_expiry, its
// subscriptions with it.
func TestSessionExpiryEndsAVanishedSession(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{SessionExpiry: time.Second})
	c, present := persistentConnect(t, b.Addr(), "hmi-1")
	if present {
		t.Fatal("a new client found a session")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "edged/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})

	c, present = persistentConnect(t, b.Addr(), "hmi-1")
	if !present {
		t.Fatal("the session did not survive an absence shorter than session_expiry")
	}
	if n := b.Stats().Subscriptions; n != 1 {
		t.Fatalf("%d subscriptions while the session is kept, want 1", n)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	gone := time.Now()
	testwait.For(t, 10*time.Second, "the broker to forget the session", func() bool {
		_, kept := b.srv.Clients.Get("hmi-1")
		return !kept
	})
	if d := time.Since(gone); d < time.Second {
		t.Fatalf("the session was dropped after %v, before session_expiry (1 s)", d)
	}
	if n := b.Stats().Subscriptions; n != 0 {
		t.Errorf("%d subscriptions left by the expired session, want 0", n)
	}
	if subs := b.srv.Topics.Subscribers("edged/x"); len(subs.Subscriptions) != 0 {
		t.Errorf("the expired session's filter is still in the topic index: %v", subs.Subscriptions)
	}
	c, present = persistentConnect(t, b.Addr(), "hmi-1")
	defer c.Disconnect(&paho.Disconnect{})
	if present {
		t.Fatal("the session outlived session_expiry")
	}
}
