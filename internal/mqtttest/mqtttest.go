// Package mqtttest is a real MQTT 5 subscriber for tests: it connects over
// TCP (paho.golang), subscribes, records every message and lets a test wait
// for a condition with a deadline instead of sleeping.
package mqtttest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Message is one received PUBLISH.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
	QoS     byte
	At      time.Time
}

// Subscriber records what it receives on its filters.
type Subscriber struct {
	t      testing.TB
	client *paho.Client

	mu   sync.Mutex
	msgs []Message
	wake chan struct{}
}

// Subscribe connects to addr and subscribes to filters at QoS 1. It fails
// the test if that does not work within 5 s; the connection is closed in
// t.Cleanup.
func Subscribe(t testing.TB, addr string, filters ...string) *Subscriber {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("mqtttest: dial %s: %v", addr, err)
	}
	s := &Subscriber{t: t, wake: make(chan struct{}, 1)}
	s.client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				s.mu.Lock()
				s.msgs = append(s.msgs, Message{
					Topic: pr.Packet.Topic, Payload: append([]byte(nil), pr.Packet.Payload...),
					Retain: pr.Packet.Retain, QoS: pr.Packet.QoS, At: time.Now(),
				})
				s.mu.Unlock()
				select {
				case s.wake <- struct{}{}:
				default:
				}
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := s.client.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("mqtttest-%d", time.Now().UnixNano()), CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("mqtttest: connect %s: %v", addr, err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("mqtttest: connect %s refused: reason %d", addr, ca.ReasonCode)
	}
	opts := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		opts[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	if _, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts}); err != nil {
		t.Fatalf("mqtttest: subscribe %v: %v", filters, err)
	}
	t.Cleanup(func() { _ = s.client.Disconnect(&paho.Disconnect{}) })
	return s
}

// Sync subscribes to topic, which must already hold a retained message
// that no earlier filter of s matches, and waits until that message is
// recorded. A broker handles one client's packets in order and writes the
// retained messages of a subscription right after its SUBACK, and paho hands
// PUBLISHes on in the order they arrive: once Sync returns, every message
// the broker sent s before, the retained messages of its first subscription
// included, has been recorded.
func (s *Subscriber) Sync(timeout time.Duration, topic string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		s.t.Fatalf("mqtttest: subscribe %s: %v", topic, err)
	}
	s.WaitTopic(timeout, topic, nil)
}

// Messages returns a copy of everything received so far.
func (s *Subscriber) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// On returns the messages received on one topic, oldest first.
func (s *Subscriber) On(topic string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// Last returns the newest message on topic, or false.
func (s *Subscriber) Last(topic string) (Message, bool) {
	ms := s.On(topic)
	if len(ms) == 0 {
		return Message{}, false
	}
	return ms[len(ms)-1], true
}

// WaitFor waits until cond holds for the messages received so far, and
// fails the test with what was received if it does not within timeout.
func (s *Subscriber) WaitFor(timeout time.Duration, what string, cond func([]Message) bool) []Message {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		msgs := s.Messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-s.wake:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			s.t.Fatalf("mqtttest: timed out after %v waiting for %s; received %d message(s):\n%s", timeout, what, len(msgs), summary(msgs, 40))
			return nil
		}
	}
}

// WaitTopic waits for a message on topic whose payload satisfies match
// (nil matches any) and returns it.
func (s *Subscriber) WaitTopic(timeout time.Duration, topic string, match func(payload []byte) bool) Message {
	s.t.Helper()
	var got Message
	s.WaitFor(timeout, "a matching message on "+topic, func(ms []Message) bool {
		for i := len(ms) - 1; i >= 0; i-- {
			if ms[i].Topic == topic && (match == nil || match(ms[i].Payload)) {
				got = ms[i]
				return true
			}
		}
		return false
	})
	return got
}

func summary(ms []Message, max int) string {
	var b strings.Builder
	start := 0
	if len(ms) > max {
		start = len(ms) - max
		fmt.Fprintf(&b, "  … %d earlier\n", start)
	}
	for _, m := range ms[start:] {
		fmt.Fprintf(&b, "  %s %s\n", m.Topic, m.Payload)
	}
	return b.String()
}
