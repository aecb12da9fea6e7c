package northbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mqttpackets "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edged-gw/edged/northbound/defaults"
)

// mqtt311 is the MQTT 3.1.1 Publisher (for clouds that speak nothing
// newer, e.g. Azure IoT Hub), on paho.mqtt.golang. Every Connect makes a
// new paho client with a clean session, its in-memory store and neither
// auto-reconnect nor connect retries: the uplink reconnects, and the
// uplink's buffer, not paho, decides what is sent again. The transport is
// ours (dial: mqtts://, wss://, mqtt://), so TLS is verified and refusals
// are explained exactly as for MQTT 5.
//
// paho completes a QoS 1 publish's token on PUBACK; one goroutine per
// session waits on the tokens in publish order and calls onAck with the
// uplink's token, so the window is a count of unacknowledged messages
// however paho completes them. 3.1.1 has no user properties: a replayed
// message is marked only in its payload (the uplink's "hist":true).
type mqtt311 struct {
	cfg PublisherConfig

	mu sync.Mutex
	s  *session311 // the current (or last) session; nil before Connect
}

// session311 is one connection.
type session311 struct {
	client  mqtt.Client
	slots   chan struct{}    // one per message in flight
	pending chan inflight311 // in publish order, to the ack loop
	last    mqtt.Token       // the last QoS 1 publish (Close waits for it)
	done    chan struct{}
	conn    func() net.Conn // the connection paho uses, once dialled
	mu      sync.Mutex
	err     error
	closing bool
}

type inflight311 struct {
	t     mqtt.Token
	token uint64
}

// NewMQTT311 returns a Publisher speaking MQTT 3.1.1.
func NewMQTT311(cfg PublisherConfig) Publisher {
	return &mqtt311{cfg: cfg}
}

var _ Publisher = (*mqtt311)(nil)

// fail ends the session once, with err.
func (s *session311) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return
	default:
	}
	s.err = err
	close(s.done)
}

func (s *session311) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (p *mqtt311) session() *session311 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s
}

func (p *mqtt311) Connect(ctx context.Context, onAck func(uint64, byte)) error {
	window := max(1, p.cfg.Window)
	s := &session311{
		slots: make(chan struct{}, window), pending: make(chan inflight311, window), done: make(chan struct{}),
	}
	timeout := p.cfg.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ka := p.cfg.KeepAlive
	if ka <= 0 {
		ka = defaults.KeepAlive
	}

	var (
		dialMu sync.Mutex
		dialed net.Conn
	)
	o := mqtt.NewClientOptions()
	o.Servers = []*url.URL{p.cfg.URL}
	o.SetClientID(p.cfg.ClientID).
		SetProtocolVersion(4). // 3.1.1 exactly: no silent fallback to 3.1
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetMaxResumePubInFlight(window).
		SetOrderMatters(false). // the command handler must not hold up PUBACKs
		SetStore(mqtt.NewMemoryStore()).
		SetKeepAlive(ka).
		// A dead link is noticed after about 1.5 keepalives, as with MQTT 5.
		SetPingTimeout(max(time.Second, ka/2)).
		SetConnectTimeout(timeout).
		// Bounds a Publish racing a lost connection (paho then blocks until
		// this) and a write to a stalled link.
		SetWriteTimeout(max(5*time.Second, ka/2)).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.fail(fmt.Errorf("connection lost: %w", err))
		}).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			c, err := dial(ctx, &p.cfg)
			if err != nil {
				return nil, err
			}
			dialMu.Lock()
			dialed = c
			dialMu.Unlock()
			return c, nil
		})
	if p.cfg.Username != "" {
		o.SetUsername(p.cfg.Username)
	}
	if len(p.cfg.Password) > 0 {
		o.SetPassword(string(p.cfg.Password))
	}
	if p.cfg.WillTopic != "" {
		o.SetBinaryWill(p.cfg.WillTopic, p.cfg.WillPayload, 1, true)
	}
	s.client = mqtt.NewClient(o)
	s.conn = func() net.Conn {
		dialMu.Lock()
		defer dialMu.Unlock()
		return dialed
	}

	// A cancelled ctx closes the connection being set up; paho then fails
	// the connect at once.
	stop := context.AfterFunc(ctx, func() {
		dialMu.Lock()
		defer dialMu.Unlock()
		if dialed != nil {
			_ = dialed.Close()
		}
	})
	t := s.client.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		// paho gives up within ConnectTimeout at the latest; do not wait.
		stop()
		go func() { t.Wait(); s.client.Disconnect(0) }()
		return ctx.Err()
	}
	stop()
	if err := t.Error(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var te *TLSError
		switch {
		case errors.As(err, &te):
			err = te // without paho's "network Error" wrapping
		case errors.Is(err, mqttpackets.ErrorNetworkError):
			dialMu.Lock()
			c := dialed
			dialMu.Unlock()
			if c != nil {
				err = afterHandshake(c, fmt.Errorf("read CONNACK: %w", err))
			}
		default:
			err = fmt.Errorf("%w: %w", ErrBrokerRefused, err)
		}
		return err
	}
	if p.cfg.CommandFilter != "" {
		if err := p.subscribeCommands(ctx, s, timeout); err != nil {
			var refused *SubscribeRefusedError
			if !errors.As(err, &refused) || p.cfg.OnSubscribeRefused == nil {
				s.client.Disconnect(0)
				return err
			}
			// Data goes up all the same; the session just takes no commands.
			p.cfg.OnSubscribeRefused(err)
		}
	}
	p.mu.Lock()
	p.s = s
	p.mu.Unlock()
	go s.ackLoop(onAck)
	return nil
}

// subscribeCommands subscribes s to the command filter at QoS 1 and waits
// for the SUBACK (within timeout); its failure code (0x80) is a
// *SubscribeRefusedError. paho runs the handler on a goroutine of its own
// per message (SetOrderMatters(false)) and acknowledges after it returns;
// OnCommand only queues.
func (p *mqtt311) subscribeCommands(ctx context.Context, s *session311, timeout time.Duration) error {
	filter := p.cfg.CommandFilter
	t := s.client.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() || p.cfg.OnCommand == nil {
			return // a retained /set is not a command: the broker replays it at every connect
		}
		p.cfg.OnCommand(CloudCommand{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), Received: time.Now()})
	})
	select {
	case <-t.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("SUBSCRIBE %s: no SUBACK within %v", filter, timeout)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("SUBSCRIBE %s: %w", filter, err)
	}
	st, ok := t.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	if code, ok := st.Result()[filter]; !ok || code >= 0x80 {
		return &SubscribeRefusedError{Filter: filter, Reasons: []byte{code}}
	}
	return nil
}

// Reply publishes a command's reply at QoS 0 (3.1.1 has no correlation
// data: the reply topic, the command topic + /reply, pairs it), beside the
// uplink's stream and not buffered, as for MQTT 5.
func (p *mqtt311) Reply(topic string, payload, _ []byte) error {
	s := p.session()
	if s == nil {
		return fmt.Errorf("upstream %s: not connected", p.cfg.Name)
	}
	select {
	case <-s.done:
		return fmt.Errorf("upstream %s: not connected", p.cfg.Name)
	default:
	}
	t := s.client.Publish(topic, 0, false, payload)
	if !t.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("upstream %s: reply not written within 5s", p.cfg.Name)
	}
	return t.Error()
}

// ackLoop reports acknowledgements in publish order. A later message that
// paho completed first is reported right after the ones before it; until
// then it holds its slot of the window (delivery is unaffected: on a lost
// connection the uplink sends again whatever was not reported).
func (s *session311) ackLoop(onAck func(uint64, byte)) {
	for {
		var e inflight311
		select {
		case <-s.done:
			return
		case e = <-s.pending:
		}
		select {
		case <-s.done:
			return
		case <-e.t.Done():
		}
		if err := e.t.Error(); err != nil {
			s.fail(fmt.Errorf("publish: %w", err))
			go s.client.Disconnect(0)
			return
		}
		<-s.slots
		onAck(e.token, 0) // 3.1.1 PUBACKs carry no reason
	}
}

func (p *mqtt311) Publish(ctx context.Context, m *Message, token uint64) error {
	s := p.session()
	if s == nil {
		return errClosedByUs
	}
	if m.QoS > 0 {
		select {
		case s.slots <- struct{}{}:
		case <-s.done:
			return s.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-s.done:
		return s.Err()
	default:
	}
	// paho keeps the payload slice until the PUBACK; the uplink reuses its
	// buffer for the next message.
	t := s.client.Publish(string(m.Topic), m.QoS, m.Retain, bytes.Clone(m.Payload))
	if m.QoS == 0 {
		return nil
	}
	s.mu.Lock()
	s.last = t
	s.mu.Unlock()
	s.pending <- inflight311{t: t, token: token} // never blocks: a slot is held
	return nil
}

// Flush has nothing to push (paho writes each packet as it goes); it
// reports a session that has ended.
func (p *mqtt311) Flush() error {
	s := p.session()
	if s == nil {
		return errClosedByUs
	}
	select {
	case <-s.done:
		if err := s.Err(); err != nil {
			return err
		}
		return errClosedByUs
	default:
		return nil
	}
}

func (p *mqtt311) Done() <-chan struct{} {
	s := p.session()
	if s == nil {
		d := make(chan struct{})
		close(d)
		return d
	}
	return s.done
}

func (p *mqtt311) Err() error {
	s := p.session()
	if s == nil {
		return nil
	}
	return s.Err()
}

// Abort closes the connection under paho without DISCONNECT: the broker
// sends the will.
func (p *mqtt311) Abort(err error) {
	s := p.session()
	if s == nil {
		return
	}
	s.fail(err)
	if c := s.conn(); c != nil {
		_ = c.Close()
	}
	go s.client.Disconnect(0) // paho's own goroutines; the socket is already gone
}

// Close waits briefly for the last QoS 1 message (the uplink's "offline"
// status) and disconnects with DISCONNECT, so the broker drops the will.
// paho writes DISCONNECT on a separate path from PUBLISHes, hence the wait.
func (p *mqtt311) Close() error {
	s := p.session()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	last, closing := s.last, s.closing
	s.closing = true
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	default:
	}
	if closing {
		return nil
	}
	if last != nil {
		last.WaitTimeout(2 * time.Second)
	}
	s.client.Disconnect(250)
	s.fail(errClosedByUs)
	return nil
}
