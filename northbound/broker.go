// Package northbound owns everything that speaks MQTT: the embedded local
// broker that local consumers (HMIs, Node-RED, scripts) subscribe to, and the
// gateway and device status topics. It knows topics and payloads as bytes
// handed to it by the gateway; it knows nothing about registers or nodes.
package northbound

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BrokerOptions configures the embedded broker.
type BrokerOptions struct {
	// Listen is the TCP address local clients connect to, e.g.
	// "127.0.0.1:1883"; empty runs the broker in-process only.
	Listen string
	Logger *slog.Logger
}

// Broker is the embedded MQTT broker (mochi-mqtt) with in-process
// publishing. Its zero value is not usable; make one with NewBroker.
type Broker struct {
	opts BrokerOptions
	srv  *mqtt.Server
	tcp  *listeners.TCP

	flush  *flushHook
	retain *retainStore

	mu      sync.Mutex
	started bool
	stopped bool
}

// Limits that keep a vanished or slow local subscriber from growing the
// broker's memory without bound (the library's defaults are server-sized).
const (
	maxSessionExpirySeconds = 60 * 60 // keep a disconnected persistent session at most 1 h
	maxInflight             = 1024    // QoS>0 messages held for one client
	maxWritesPending        = 4096    // messages queued to one client's socket; more are dropped
	maxPacketSize           = 1 << 20
	writeBufferSize         = 16 << 10
)

// NewBroker makes a broker; nothing listens until Start.
func NewBroker(opts BrokerOptions) *Broker {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = maxSessionExpirySeconds
	caps.MaximumInflight = maxInflight
	caps.MaximumClientWritesPending = maxWritesPending
	caps.MaximumPacketSize = maxPacketSize
	srv := mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		Logger:                 quietLogger(opts.Logger),
		SysTopicResendInterval: 10,
		// Coalesce queued messages into fewer socket writes when a
		// subscriber falls behind a burst (one poll of many tags).
		ClientNetWriteBufferSize: writeBufferSize,
	})
	return &Broker{opts: opts, srv: srv, flush: new(flushHook), retain: newRetainStore()}
}

// quietLogger passes the library's warnings and errors on, with a source
// attribute, and drops its info chatter (one line per client connect).
func quietLogger(l *slog.Logger) *slog.Logger {
	h := l.Handler()
	return slog.New(levelFilter{Handler: h, min: slog.LevelWarn}).With("component", "broker")
}

// Start opens the listener (if any) and begins serving. An address already
// in use is reported here, not later.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("broker already started")
	}
	// The local broker listens on loopback by default and carries plant data
	// to local consumers; authentication for it comes with the listener
	// settings that expose it beyond loopback.
	if err := b.srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("broker: add auth hook: %w", err)
	}
	if err := b.srv.AddHook(b.flush, nil); err != nil {
		return fmt.Errorf("broker: add flush hook: %w", err)
	}
	if err := b.srv.AddHook(b.retain, nil); err != nil {
		return fmt.Errorf("broker: add retain hook: %w", err)
	}
	if b.opts.Listen != "" {
		b.tcp = listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.opts.Listen})
		if err := b.srv.AddListener(b.tcp); err != nil {
			return fmt.Errorf("broker: listen on %s: %w (is another MQTT broker such as mosquitto running? set [broker] listen to another address)", b.opts.Listen, err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.started = true
	b.opts.Logger.Info("local broker listening", "address", b.Addr())
	return nil
}

// Addr is the address the listener is bound to (useful with port 0), or ""
// when the broker has no listener.
func (b *Broker) Addr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// Publish delivers one message to local subscribers. The payload is copied;
// the caller may reuse it when Publish returns. QoS applies to what
// subscribers receive (in-process publishing itself cannot fail in transit).
//
// Retained messages are kept by edged (see retainStore), not by the
// library; an empty retained payload deletes the topic's retained message
// and is not forwarded.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if retain {
		b.retain.set(topic, payload)
		if len(payload) == 0 {
			return nil
		}
	}
	return b.srv.Publish(topic, payload, false, qos)
}

// Retained returns a copy of the retained message edged holds for topic.
func (b *Broker) Retained(topic string) ([]byte, bool) { return b.retain.get(topic) }

// Subscribe registers an in-process handler for a topic filter. The handler
// runs on the publisher's goroutine and must not block.
func (b *Broker) Subscribe(filter string, id int, fn func(topic string, payload []byte, retained bool)) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	})
}

// Unsubscribe removes the in-process handler that Subscribe registered for
// filter and id.
func (b *Broker) Unsubscribe(filter string, id int) error {
	return b.srv.Unsubscribe(filter, id)
}

// Stop disconnects clients and closes the listener. Safe to call more than
// once and after a failed Start.
func (b *Broker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started || b.stopped {
		b.stopped = true
		return nil
	}
	b.stopped = true
	return b.srv.Close()
}

// Stats are the broker's running totals.
type Stats struct {
	Clients          int64
	MessagesSent     int64 // PUBLISH packets written to network clients
	MessagesDropped  int64 // dropped because a client's queue was full
	RetainedMessages int64
	Subscriptions    int64 // active subscriptions of network clients
}

// Stats returns the broker's running totals.
func (b *Broker) Stats() Stats {
	i := b.srv.Info.Clone()
	return Stats{Clients: i.ClientsConnected, MessagesSent: i.MessagesSent, MessagesDropped: i.MessagesDropped, RetainedMessages: i.Retained + int64(b.retain.len()),
		Subscriptions: i.Subscriptions}
}
