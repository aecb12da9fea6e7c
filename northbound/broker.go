// Package northbound owns everything that speaks MQTT: the embedded local
// broker that local consumers (HMIs, Node-RED, scripts) subscribe to, and the
// gateway and device status topics. It knows topics and payloads as bytes
// handed to it by the gateway; it knows nothing about registers or nodes.
package northbound

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BrokerOptions configures the embedded broker. The zero value is a broker
// on no listener with the product's defaults: anonymous clients may read
// on loopback listeners, nothing else.
type BrokerOptions struct {
	// Listen is the TCP address local clients connect to, e.g.
	// "127.0.0.1:1883"; empty: no TCP listener.
	Listen string
	// TLS and WebSocket are further listeners; nil: none.
	TLS       *TLSListener
	WebSocket *WebSocketListener
	// Access says who may connect and what clients may do; nil: anonymous
	// read-only on loopback listeners, no users.
	Access *Access
	// Bounds; zero means the default (see the constants below).
	MaxClients       int
	MaxPacketSize    int
	SessionExpiry    time.Duration // <0: sessions end with their connection
	MaxInflight      int
	MaxQueued        int
	ClientQueueBytes int64
	QueueBytes       int64
	Logger           *slog.Logger
}

// Broker is the embedded MQTT broker (mochi-mqtt) with in-process
// publishing. Its zero value is not usable; make one with NewBroker.
type Broker struct {
	opts BrokerOptions
	srv  *mqtt.Server
	tcp  *tcpListener
	tls  *tcpListener
	ws   *wsListener

	flush  *flushHook
	retain *retainStore
	auth   *auth
	limits *Limits
	certs  *certReloader // the TLS listener's certificate, reloadable
	wsCert *certReloader

	smu  sync.Mutex
	subs map[inlineSub]*inlineHandlers // in-process subscriptions
	own  atomic.Pointer[[]ownHandler]  // their handlers of edged's own messages, rebuilt under smu

	mu      sync.Mutex // Start and Stop; Stop holds it while clients end
	started bool
	stopped bool

	// rmu guards reply, not mu: a command handler replies from a client's
	// goroutine, which Stop waits for while it holds mu.
	rmu   sync.Mutex
	reply *mqtt.Client // publishes command replies (PublishReply)
}

// Default bounds that keep a vanished or slow local subscriber from
// growing the broker's memory without bound (the library's defaults are
// server-sized).
const (
	defaultMaxClients       = 100
	maxSessionExpirySeconds = 60 * 60 // keep a disconnected persistent session at most 1 h
	maxInflight             = 1024    // QoS>0 messages held for one client
	maxWritesPending        = 4096    // messages queued to one client's socket; more are dropped
	maxPacketSize           = 1 << 20
	defaultClientQueueBytes = 8 << 20
	defaultQueueBytes       = 64 << 20
	writeBufferSize         = 16 << 10
)

// NewBroker makes a broker; nothing listens until Start.
func NewBroker(opts BrokerOptions) *Broker {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.MaxClients = cmp.Or(opts.MaxClients, defaultMaxClients)
	opts.MaxPacketSize = cmp.Or(opts.MaxPacketSize, maxPacketSize)
	opts.MaxInflight = cmp.Or(opts.MaxInflight, maxInflight)
	opts.MaxQueued = cmp.Or(opts.MaxQueued, maxWritesPending)
	opts.ClientQueueBytes = cmp.Or(opts.ClientQueueBytes, defaultClientQueueBytes)
	opts.QueueBytes = cmp.Or(opts.QueueBytes, defaultQueueBytes)
	expiry := int64(maxSessionExpirySeconds)
	switch {
	case opts.SessionExpiry < 0:
		expiry = 0
	case opts.SessionExpiry > 0:
		expiry = int64(opts.SessionExpiry / time.Second)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = uint32(expiry)
	caps.MaximumInflight = uint16(min(opts.MaxInflight, 65535))
	caps.MaximumClientWritesPending = int32(opts.MaxQueued)
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	caps.MaximumClients = int64(opts.MaxClients)
	srv := mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		Logger:                 quietLogger(opts.Logger),
		SysTopicResendInterval: 10,
		// Coalesce queued messages into fewer socket writes when a
		// subscriber falls behind a burst (one poll of many tags).
		ClientNetWriteBufferSize: writeBufferSize,
	})
	access := Access{AnonymousRead: true}
	if opts.Access != nil {
		access = *opts.Access
	}
	log := opts.Logger.With("component", "broker")
	limits := newLimits(opts.ClientQueueBytes, opts.QueueBytes, opts.MaxInflight, log)
	return &Broker{opts: opts, srv: srv, flush: new(flushHook), retain: newRetainStore(),
		auth: newAuth(access, limits, log), limits: limits, subs: map[inlineSub]*inlineHandlers{}}
}

// quietLogger passes the library's warnings and errors on, with a source
// attribute, and drops its info chatter (one line per client connect).
func quietLogger(l *slog.Logger) *slog.Logger {
	h := l.Handler()
	return slog.New(levelFilter{Handler: h, min: slog.LevelWarn}).With("component", "broker")
}

// Start opens the listeners (if any) and begins serving. An address
// already in use, or a TLS file that cannot be loaded, is reported here,
// not later.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("broker already started")
	}
	// The order matters: auth answers OnPublish first (a refused message
	// is never counted by the limits).
	for _, h := range []mqtt.Hook{b.auth, b.limits, b.flush, b.retain, new(v311Disconnect), &expiredSessions{srv: b.srv}} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
		}
	}
	if b.opts.Listen != "" {
		b.tcp = newTCPListener("tcp", b.opts.Listen, nil, b.disconnectListener)
		if err := b.srv.AddListener(b.tcp); err != nil {
			return fmt.Errorf("broker: listen on %s: %w (is another MQTT broker such as mosquitto running? set [broker] listen to another address)", b.opts.Listen, err)
		}
		b.auth.loopback.Store("tcp", isLoopbackAddr(b.tcp.Address()))
	}
	if t := b.opts.TLS; t != nil {
		conf, certs, err := t.tlsConfig()
		if err != nil {
			return fmt.Errorf("broker: [broker.tls]: %w", err)
		}
		b.certs = certs
		b.tls = newTCPListener("tls", t.Listen, conf, b.disconnectListener)
		if err := b.srv.AddListener(b.tls); err != nil {
			return fmt.Errorf("broker: TLS listen on %s: %w (set [broker.tls] listen to another address)", t.Listen, err)
		}
		b.auth.loopback.Store("tls", isLoopbackAddr(b.tls.Address()))
		b.auth.certListener.Store("tls", t.ClientCAFile != "")
	}
	if w := b.opts.WebSocket; w != nil {
		var conf *tls.Config
		if w.CertFile != "" {
			c, certs, err := (&TLSListener{CertFile: w.CertFile, KeyFile: w.KeyFile}).tlsConfig()
			if err != nil {
				return fmt.Errorf("broker: [broker.websocket]: %w", err)
			}
			conf, b.wsCert = c, certs
		}
		b.ws = newWSListener("ws", w, conf, b.disconnectListener)
		if err := b.srv.AddListener(b.ws); err != nil {
			return fmt.Errorf("broker: WebSocket listen on %s: %w (set [broker.websocket] listen to another address)", w.Listen, err)
		}
		b.auth.loopback.Store("ws", isLoopbackAddr(b.ws.Address()))
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.started = true
	for _, l := range []struct {
		name string
		addr string
	}{{"tcp", b.Addr()}, {"tls", b.TLSAddr()}, {"websocket", b.WebSocketAddr()}} {
		if l.addr != "" {
			b.opts.Logger.Info("local broker listening", "address", l.addr, "listener", l.name)
		}
	}
	a := b.auth.cfg.Load()
	if a.AllowAnonymous && a.AnonymousRead {
		b.opts.Logger.Warn("allow_anonymous = true: clients without a user name may subscribe to every topic on every listener, from any machine that reaches it")
	}
	return nil
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Reload applies a new config's users, ACLs and anonymous policy, and
// reads the TLS listener's certificate and key files again; connected
// clients stay connected. Listener addresses cannot change while running.
// A TLS file that cannot be loaded keeps the certificate in use and is
// reported.
func (b *Broker) Reload(access *Access) error {
	if access != nil {
		b.auth.set(*access)
	}
	var errs []error
	if b.certs != nil {
		errs = append(errs, b.certs.reload())
	}
	if b.wsCert != nil {
		errs = append(errs, b.wsCert.reload())
	}
	return errors.Join(errs...)
}

// Addr is the address the TCP listener is bound to (useful with port 0),
// or "" when the broker has none.
func (b *Broker) Addr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// TLSAddr is the address of the TLS listener, or "".
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// WebSocketAddr is the address of the WebSocket listener, or "".
func (b *Broker) WebSocketAddr() string {
	if b.ws == nil {
		return ""
	}
	return b.ws.Address()
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
	if atomic.LoadInt64(&b.srv.Info.Subscriptions) == 0 {
		// No network client subscribes to anything (the library counts
		// their subscriptions, persistent sessions' included): the only
		// receivers are the in-process ones, called here as the library
		// would, without its topic-index scan and the maps it allocates
		// per message (BenchmarkBrokerPublishInline).
		if own := b.own.Load(); own != nil {
			for _, h := range *own {
				if matchFilter(h.filter, topic) {
					h.fn(topic, payload, false)
				}
			}
		}
		return nil
	}
	return b.srv.Publish(topic, payload, false, qos)
}

// ownHandler is an in-process handler of edged's own messages.
type ownHandler struct {
	filter string
	fn     func(topic string, payload []byte, retained bool)
}

// rebuildOwnLocked rebuilds b.own from b.subs (b.smu held).
func (b *Broker) rebuildOwnLocked() {
	own := make([]ownHandler, 0, len(b.subs))
	for k, h := range b.subs {
		if h.own != nil {
			own = append(own, ownHandler{k.filter, h.own})
		}
	}
	b.own.Store(&own)
}

// Retained returns a copy of the retained message edged holds for topic.
func (b *Broker) Retained(topic string) ([]byte, bool) { return b.retain.get(topic) }

// inlineSub is one in-process subscription of the library: a filter and
// an id.
type inlineSub struct {
	filter string
	id     int
}

// inlineHandlers are the handlers of one in-process subscription: own
// gets what edged itself publishes, clients what local clients publish.
type inlineHandlers struct {
	own, clients func(topic string, payload []byte, retained bool)
}

// Subscribe registers an in-process handler for a topic filter; it gets
// only the messages edged itself publishes (never those of local
// clients). The handler runs on the publisher's goroutine and must not
// block.
func (b *Broker) Subscribe(filter string, id int, fn func(topic string, payload []byte, retained bool)) error {
	return b.subscribe(filter, id, fn, false)
}

// SubscribeClients registers an in-process handler that gets the messages
// local clients publish on filter (and not edged's own). The handler runs
// on the client's goroutine and must not block.
func (b *Broker) SubscribeClients(filter string, id int, fn func(topic string, payload []byte, retained bool)) error {
	return b.subscribe(filter, id, fn, true)
}

func (b *Broker) subscribe(filter string, id int, fn func(topic string, payload []byte, retained bool), clients bool) error {
	b.smu.Lock()
	defer b.smu.Unlock()
	k := inlineSub{filter, id}
	h := b.subs[k]
	if h == nil {
		h = &inlineHandlers{}
	}
	if clients {
		h.clients = fn
	} else {
		h.own = fn
	}
	if b.subs[k] != nil {
		b.rebuildOwnLocked()
		return nil // already subscribed: the handler dispatches to both
	}
	b.subs[k] = h
	b.rebuildOwnLocked()
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn := h.own
		switch pk.Origin {
		case mqtt.InlineClientId:
		case replyClientID:
			return // command replies stay local
		default:
			fn = h.clients
		}
		if fn != nil {
			fn(pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
		}
	})
	if err != nil {
		delete(b.subs, k)
		b.rebuildOwnLocked()
	}
	return err
}

// Unsubscribe removes the in-process handlers that Subscribe and
// SubscribeClients registered for filter and id.
func (b *Broker) Unsubscribe(filter string, id int) error {
	b.smu.Lock()
	delete(b.subs, inlineSub{filter, id})
	b.rebuildOwnLocked()
	b.smu.Unlock()
	return b.srv.Unsubscribe(filter, id)
}

// Stop disconnects clients and closes the listeners. Safe to call more
// than once and after a failed Start. MQTT 3.1.1 has no server DISCONNECT:
// those clients see their connection closed, as the protocol says.
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

// disconnectListener ends the connections of one listener's clients when
// the broker stops. It stands in for the library's closeListenerClients,
// whose Clients.GetByListener read-locks the client map and then read-locks
// it again (Len): a client leaving in between (Delete waiting for the write
// lock) blocks both for good, and Stop hung — found as a test that hung about
// once in 1,500 runs. GetAll takes the lock once.
func (b *Broker) disconnectListener(listener string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// v311Disconnect keeps the library from sending a DISCONNECT packet to an
// MQTT 3.1.1 (or 3.1) client, which that protocol does not have: the
// client would report a protocol error (mosquitto_sub does) instead of a
// closed connection. The library closes the connection right after.
type v311Disconnect struct{ mqtt.HookBase }

func (*v311Disconnect) ID() string           { return "edged-v311-disconnect" }
func (*v311Disconnect) Provides(b byte) bool { return b == mqtt.OnPacketEncode }
func (*v311Disconnect) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Disconnect && cl.Properties.ProtocolVersion < 5 {
		pk.FixedHeader.Type = packets.Reserved // not encoded, nothing is written
	}
	return pk
}

// expiredSessions removes the subscriptions of a session that expired.
// The library (v2.7.9) deletes an expired client but leaves its
// subscriptions in the topic index: every client id that ever kept a
// session (an HMI with a random id and clean_start false) would leave its
// filters behind for good, matched by every publish and counted in
// edged_broker_subscriptions.
type expiredSessions struct {
	mqtt.HookBase
	srv *mqtt.Server
}

func (*expiredSessions) ID() string                        { return "edged-expired-sessions" }
func (*expiredSessions) Provides(b byte) bool              { return b == mqtt.OnClientExpired }
func (h *expiredSessions) OnClientExpired(cl *mqtt.Client) { h.srv.UnsubscribeClient(cl) }

// Stats are the broker's running totals.
type Stats struct {
	Clients          int64
	MessagesSent     int64 // PUBLISH packets written to network clients
	MessagesDropped  int64 // not queued for a client: its queue, bytes or in-flight window was full
	RetainedMessages int64
	Subscriptions    int64 // active subscriptions of network clients
	Held             HeldStats
	Auth             AuthStats
}

// Stats returns the broker's running totals.
func (b *Broker) Stats() Stats {
	i := b.srv.Info.Clone()
	held := b.limits.stats()
	return Stats{Clients: i.ClientsConnected, MessagesSent: i.MessagesSent,
		MessagesDropped:  i.InflightDropped + int64(held.Dropped), // held.Dropped includes the library's full-queue drops
		RetainedMessages: i.Retained + int64(b.retain.len()),
		Subscriptions:    i.Subscriptions, Held: held, Auth: b.auth.stats()}
}
