package northbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// mqtt5 is the MQTT 5 Publisher. It drives paho.golang's packet codec
// directly rather than paho.Client: paho.Client's Publish is one blocking
// call per message (a goroutine, a context and a channel each) with no
// order between concurrent calls, while the uplink needs ordered, pipelined
// QoS 1 with an acknowledgement callback and no per-message allocation.
// PUBLISH packets are encoded here into one buffered writer; CONNECT,
// CONNACK, PUBACK, PINGREQ and DISCONNECT use paho.golang's packets.
type mqtt5 struct {
	cfg PublisherConfig

	mu     sync.Mutex // guards the writer and the session fields below
	conn   net.Conn
	w      *bufio.Writer
	nextID uint16
	tokens map[uint16]uint64 // packet id → token, for messages in flight
	slots  chan struct{}     // one per message in flight
	// unflushed counts the QoS>0 PUBLISHes buffered since the last Flush
	// (at most: the buffer may have written some when it filled).
	unflushed int
	onAck     func(uint64, byte)
	// maxPacket is the broker's Maximum Packet Size (CONNACK), 0 for none.
	maxPacket int
	done      chan struct{}
	err       error
	hdr       []byte
	will      *will // SetWill's, replacing cfg's will from the next Connect
}

type will struct {
	topic   string
	payload []byte
	retain  bool
}

// SetWill sets the will of the next Connect (QoS 1), replacing the
// config's: a Sparkplug NDEATH carries the bdSeq of its connection.
func (p *mqtt5) SetWill(topic string, payload []byte, retain bool) {
	p.mu.Lock()
	p.will = &will{topic: topic, payload: append([]byte(nil), payload...), retain: retain}
	p.mu.Unlock()
}

// subscribeFilters subscribes to filters at QoS 1 in one SUBSCRIBE and
// waits for its SUBACK (within the connect deadline).
func subscribeFilters(conn net.Conn, filters []string) error {
	sub := &packets.Subscribe{PacketID: 2, Properties: &packets.Properties{}}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, packets.SubOptions{Topic: f, QoS: 1})
	}
	if _, err := sub.WriteTo(conn); err != nil {
		return fmt.Errorf("send SUBSCRIBE %v: %w", filters, err)
	}
	for {
		cp, err := packets.ReadPacket(conn)
		if err != nil {
			return fmt.Errorf("read SUBACK of %v: %w", filters, err)
		}
		sa, ok := cp.Content.(*packets.Suback)
		if !ok || sa.PacketID != 2 {
			continue
		}
		for i, r := range sa.Reasons {
			if r >= 0x80 {
				return &SubscribeRefusedError{Filter: filters[min(i, len(filters)-1)], Reasons: sa.Reasons}
			}
		}
		return nil
	}
}

// NewMQTT5 returns a Publisher speaking MQTT 5.
func NewMQTT5(cfg PublisherConfig) Publisher {
	d := make(chan struct{})
	close(d)
	return &mqtt5{cfg: cfg, done: d}
}

var errClosedByUs = errors.New("connection closed")

func (p *mqtt5) Connect(ctx context.Context, onAck func(uint64, byte)) error {
	conn, err := dial(ctx, &p.cfg)
	if err != nil {
		return err
	}
	ka := uint16(p.cfg.KeepAlive / time.Second)
	c := &packets.Connect{
		ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: p.cfg.ClientID, KeepAlive: ka, CleanStart: true,
		Properties: &packets.Properties{},
	}
	if p.cfg.Username != "" {
		c.UsernameFlag, c.Username = true, p.cfg.Username
	}
	if len(p.cfg.Password) > 0 {
		c.PasswordFlag, c.Password = true, p.cfg.Password
	}
	p.mu.Lock()
	will := p.will
	p.mu.Unlock()
	if will != nil {
		c.WillFlag, c.WillTopic, c.WillMessage, c.WillQOS, c.WillRetain = true, will.topic, will.payload, 1, will.retain
		c.WillProperties = &packets.Properties{}
	} else if p.cfg.WillTopic != "" {
		c.WillFlag, c.WillTopic, c.WillMessage, c.WillQOS, c.WillRetain = true, p.cfg.WillTopic, p.cfg.WillPayload, 1, true
		c.WillProperties = &packets.Properties{}
	}
	// The CONNACK must come within the dial timeout too: a link that
	// carries TCP but nothing else must not hold the uplink for long.
	timeout := p.cfg.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := c.WriteTo(conn); err != nil {
		conn.Close()
		return afterHandshake(conn, fmt.Errorf("send CONNECT: %w", err))
	}
	cp, err := packets.ReadPacket(conn)
	if err != nil {
		conn.Close()
		return afterHandshake(conn, fmt.Errorf("read CONNACK: %w", err))
	}
	ca, ok := cp.Content.(*packets.Connack)
	if !ok {
		conn.Close()
		return fmt.Errorf("broker answered CONNECT with packet type %d", cp.Type)
	}
	if ca.ReasonCode != packets.ConnackSuccess {
		conn.Close()
		return fmt.Errorf("%w: %s (reason 0x%02x)", ErrBrokerRefused, ca.Reason(), ca.ReasonCode)
	}
	if p.cfg.CommandFilter != "" {
		if err := subscribeCommands(conn, p.cfg.CommandFilter); err != nil {
			var refused *SubscribeRefusedError
			if !errors.As(err, &refused) || p.cfg.OnSubscribeRefused == nil {
				conn.Close()
				return err
			}
			// Data goes up all the same; the session just takes no commands.
			p.cfg.OnSubscribeRefused(err)
		}
	}
	if len(p.cfg.Subscriptions) > 0 {
		if err := subscribeFilters(conn, p.cfg.Subscriptions); err != nil {
			conn.Close()
			return err
		}
	}
	_ = conn.SetDeadline(time.Time{})
	window := max(1, p.cfg.Window)
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil && int(*ca.Properties.ReceiveMaximum) < window {
		window = int(*ca.Properties.ReceiveMaximum)
	}
	maxPacket := 0
	if ca.Properties != nil && ca.Properties.MaximumPacketSize != nil {
		maxPacket = int(*ca.Properties.MaximumPacketSize)
	}
	p.mu.Lock()
	p.maxPacket = maxPacket
	p.conn, p.w = conn, bufio.NewWriterSize(conn, 32<<10)
	p.tokens = make(map[uint16]uint64, window)
	p.slots = make(chan struct{}, window)
	p.unflushed = 0
	p.onAck, p.err, p.done = onAck, nil, make(chan struct{})
	p.mu.Unlock()
	go p.readLoop(conn, p.done, p.slots)
	go p.pingLoop(conn, p.done, ka)
	return nil
}

// fail ends the session once, with err.
func (p *mqtt5) fail(done chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if done != p.done {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	p.err = err
	_ = p.conn.Close()
	close(done)
}

func (p *mqtt5) readLoop(conn net.Conn, done chan struct{}, slots chan struct{}) {
	ka := p.cfg.KeepAlive
	r := bufio.NewReaderSize(conn, 4<<10)
	// A dead link is noticed after 1.5 keepalives without a packet (pings
	// go out every half keepalive). The deadline moves at most every
	// rearm, not per PUBACK (a timer update each): still 1.25 keepalives
	// at least.
	rearm := min(time.Second, ka/4)
	var armed time.Time // when the read deadline was last moved
	for {
		if ka > 0 {
			if now := time.Now(); now.Sub(armed) >= rearm {
				armed = now
				_ = conn.SetReadDeadline(now.Add(ka * 3 / 2))
			}
		}
		if id, reason, ok, err := readPuback(r); err != nil {
			p.fail(done, fmt.Errorf("connection lost: %w", err))
			return
		} else if ok {
			p.acked(slots, id, reason)
			continue
		}
		cp, err := packets.ReadPacket(r)
		if err != nil {
			p.fail(done, fmt.Errorf("connection lost: %w", err))
			return
		}
		switch c := cp.Content.(type) {
		case *packets.Puback:
			p.acked(slots, c.PacketID, c.ReasonCode)
		case *packets.Publish:
			if c.QoS == 1 {
				p.mu.Lock()
				_, err := (&packets.Puback{PacketID: c.PacketID, Properties: &packets.Properties{}}).WriteTo(p.w)
				if err == nil {
					err = p.w.Flush()
				}
				p.mu.Unlock()
				if err != nil {
					p.fail(done, fmt.Errorf("send PUBACK: %w", err))
					return
				}
			}
			if p.cfg.OnMessage != nil {
				if c.QoS < 2 {
					p.cfg.OnMessage(c.Topic, c.Payload, c.Retain)
				}
			} else if p.cfg.OnCommand != nil && !c.Retain && c.QoS < 2 {
				cmd := CloudCommand{Topic: c.Topic, Payload: c.Payload, Received: time.Now()}
				if pr := c.Properties; pr != nil {
					cmd.ResponseTopic, cmd.CorrelationData = pr.ResponseTopic, pr.CorrelationData
					if pr.MessageExpiry != nil {
						cmd.MessageExpiry = time.Duration(*pr.MessageExpiry) * time.Second
					}
				}
				p.cfg.OnCommand(cmd)
			}
		case *packets.Disconnect:
			p.fail(done, fmt.Errorf("broker disconnected: %s (reason 0x%02x)", c.Reason(), c.ReasonCode))
			return
		}
	}
}

// acked settles the message a PUBACK acknowledges (or refuses, by its
// reason code).
func (p *mqtt5) acked(slots chan struct{}, id uint16, reason byte) {
	p.mu.Lock()
	tok, ok := p.tokens[id]
	if ok {
		delete(p.tokens, id)
	}
	onAck := p.onAck
	p.mu.Unlock()
	if ok {
		<-slots
		onAck(tok, reason)
	}
}

// readPuback reads the next packet if it is a PUBACK short enough to have
// a one-byte remaining length (all but those with a long reason string),
// without allocating: a PUBACK per message is most of what a QoS 1
// publisher reads. ok is false, with nothing consumed, for any other
// packet; packets.ReadPacket reads that one.
func readPuback(r *bufio.Reader) (id uint16, reason byte, ok bool, err error) {
	h, err := r.Peek(2)
	if err != nil {
		return 0, 0, false, err
	}
	if h[0] != packets.PUBACK<<4 || h[1]&0x80 != 0 || h[1] < 2 {
		return 0, 0, false, nil
	}
	n := 2 + int(h[1])
	b, err := r.Peek(n)
	if err != nil {
		return 0, 0, false, err
	}
	id = uint16(b[2])<<8 | uint16(b[3])
	if n > 4 {
		reason = b[4] // absent: 0x00, success [MQTT-3.4.2.1]
	}
	_, _ = r.Discard(n)
	return id, reason, true, nil
}

func (p *mqtt5) pingLoop(conn net.Conn, done chan struct{}, ka uint16) {
	if ka == 0 {
		return
	}
	t := time.NewTicker(time.Duration(ka) * time.Second / 2)
	defer t.Stop()
	ping := []byte{packets.PINGREQ << 4, 0}
	for {
		select {
		case <-done:
			return
		case <-t.C:
			p.mu.Lock()
			_, err := p.w.Write(ping)
			if err == nil {
				err = p.w.Flush()
			}
			p.mu.Unlock()
			if err != nil {
				p.fail(done, fmt.Errorf("send PINGREQ: %w", err))
				return
			}
		}
	}
}

func (p *mqtt5) Publish(ctx context.Context, m *Message, token uint64) error {
	p.mu.Lock()
	done, slots, maxPacket := p.done, p.slots, p.maxPacket
	p.mu.Unlock()
	if maxPacket > 0 {
		// The broker would end the session over it (MQTT 5 §3.1.2.11.4):
		// refuse it here, the session goes on.
		if n := publishSize(m); n > maxPacket {
			return &PacketTooLargeError{Size: n, Max: maxPacket}
		}
	}
	if m.QoS > 0 {
		select {
		case slots <- struct{}{}:
		default:
			// Window full: the PUBACKs of what was written free slots.
			// What is buffered goes out in batches of an eighth of the
			// window (or once no more than half of it is written and
			// unacknowledged), not one write (and one PUBACK read) per
			// freed slot of an ack-clocked stream; the window stays
			// nearly full, and never all of it waits unwritten.
			p.mu.Lock()
			written, buffered := len(slots)-p.unflushed, p.unflushed
			p.mu.Unlock()
			if flushDue(written, buffered, cap(slots)) {
				if err := p.Flush(); err != nil {
					return err
				}
			}
			select {
			case slots <- struct{}{}:
			case <-done:
				return p.Err()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if done != p.done {
		return errClosedByUs
	}
	select {
	case <-done:
		return p.err
	default:
	}
	var id uint16
	if m.QoS > 0 {
		for {
			p.nextID++
			if p.nextID == 0 {
				p.nextID = 1
			}
			if _, busy := p.tokens[p.nextID]; !busy {
				break
			}
		}
		id = p.nextID
		p.tokens[id] = token
	}
	p.hdr = appendPublishHeader(p.hdr[:0], m, id)
	if m.QoS > 0 {
		p.unflushed++
	}
	if _, err := p.w.Write(p.hdr); err != nil {
		return err
	}
	_, err := p.w.Write(m.Payload)
	return err
}

// flushDue says whether a full window's buffered PUBLISHes go out now:
// in batches of an eighth of the window, or once no more than half of it
// is written and unacknowledged. With nothing written it is always due:
// no PUBACK would come to free a slot.
func flushDue(written, buffered, window int) bool {
	return buffered >= max(1, window/8) || written <= window/2
}

// PacketTooLargeError is a PUBLISH larger than the broker's Maximum Packet
// Size: it was not sent.
type PacketTooLargeError struct{ Size, Max int }

func (e *PacketTooLargeError) Error() string {
	return fmt.Sprintf("PUBLISH of %d bytes exceeds the broker's maximum packet size of %d", e.Size, e.Max)
}

// publishSize is the size of m's PUBLISH packet on the wire.
func publishSize(m *Message) int {
	props := 0
	if m.Historical {
		props = 1 + 2 + len("historical") + 2 + len("true")
	}
	rem := 2 + len(m.Topic) + varintLen(props) + props + len(m.Payload)
	if m.QoS > 0 {
		rem += 2
	}
	return 1 + varintLen(rem) + rem
}

// appendPublishHeader encodes everything of a PUBLISH before its payload.
func appendPublishHeader(dst []byte, m *Message, id uint16) []byte {
	props := 0
	if m.Historical {
		props = 1 + 2 + len("historical") + 2 + len("true")
	}
	rem := 2 + len(m.Topic) + varintLen(props) + props + len(m.Payload)
	if m.QoS > 0 {
		rem += 2
	}
	b0 := byte(packets.PUBLISH<<4) | m.QoS<<1
	if m.Retain {
		b0 |= 1
	}
	dst = append(dst, b0)
	dst = appendVarint(dst, rem)
	dst = append(dst, byte(len(m.Topic)>>8), byte(len(m.Topic)))
	dst = append(dst, m.Topic...)
	if m.QoS > 0 {
		dst = append(dst, byte(id>>8), byte(id))
	}
	dst = appendVarint(dst, props)
	if m.Historical {
		dst = append(dst, packets.PropUser, 0, byte(len("historical")))
		dst = append(dst, "historical"...)
		dst = append(dst, 0, byte(len("true")))
		dst = append(dst, "true"...)
	}
	return dst
}

func varintLen(n int) int {
	l := 1
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}

func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

func (p *mqtt5) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil {
		return errClosedByUs
	}
	if err := p.w.Flush(); err != nil {
		done := p.done
		p.mu.Unlock()
		p.fail(done, fmt.Errorf("write: %w", err))
		p.mu.Lock()
		return err
	}
	p.unflushed = 0
	return nil
}

func (p *mqtt5) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

func (p *mqtt5) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Abort drops the connection without DISCONNECT: the broker sends the will.
func (p *mqtt5) Abort(err error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	p.fail(done, err)
}

// Close sends DISCONNECT (normal: the broker drops the will) and closes.
func (p *mqtt5) Close() error {
	p.mu.Lock()
	done := p.done
	select {
	case <-done:
		p.mu.Unlock()
		return nil
	default:
	}
	_ = p.w.Flush()
	_ = p.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = (&packets.Disconnect{ReasonCode: 0, Properties: &packets.Properties{}}).WriteTo(p.conn)
	p.mu.Unlock()
	p.fail(done, errClosedByUs)
	return nil
}

// SubscribeRefusedError is a SUBACK that refused the command filter.
type SubscribeRefusedError struct {
	Filter  string
	Reasons []byte
}

func (e *SubscribeRefusedError) Error() string {
	return fmt.Sprintf("the broker refused the subscription to the command topics %s (reason %v): allow it in the broker's ACL or set commands = false", e.Filter, e.Reasons)
}

// subscribeCommands subscribes to the command filter at QoS 1 and waits for
// the SUBACK (within the connect deadline); a refusal fails the connect,
// saying so.
func subscribeCommands(conn net.Conn, filter string) error {
	sub := &packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: filter, QoS: 1}}}
	if _, err := sub.WriteTo(conn); err != nil {
		return fmt.Errorf("send SUBSCRIBE %s: %w", filter, err)
	}
	for {
		cp, err := packets.ReadPacket(conn)
		if err != nil {
			return fmt.Errorf("read SUBACK of %s: %w", filter, err)
		}
		sa, ok := cp.Content.(*packets.Suback)
		if !ok {
			continue // nothing else is due before it
		}
		if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
			return &SubscribeRefusedError{Filter: filter, Reasons: sa.Reasons}
		}
		return nil
	}
}

// Reply publishes a command's reply at QoS 0 with the request's
// correlation data, beside the uplink's stream (it is not buffered: a
// reply that cannot go now is stale by the next session).
func (p *mqtt5) Reply(topic string, payload, correlation []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return fmt.Errorf("upstream %s: not connected", p.cfg.Name)
	default:
	}
	pk := &packets.Publish{Topic: topic, Payload: payload, Properties: &packets.Properties{}}
	if len(correlation) > 0 {
		pk.Properties.CorrelationData = correlation
	}
	if _, err := pk.WriteTo(p.w); err != nil {
		return err
	}
	return p.w.Flush()
}
