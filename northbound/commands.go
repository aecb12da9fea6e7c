package northbound

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// LocalCommand is a message a local client published on a command topic,
// with who sent it and the MQTT 5 request properties a reply needs. The
// broker's ACL and namespace rules have admitted it already (commands on,
// the client's publish ACL allows the topic, not retained).
type LocalCommand struct {
	Topic   string
	Payload []byte
	// ClientID and Username identify the sender (for the audit line);
	// Username is "" for anonymous clients (which cannot publish) and the
	// certificate identity for certificate logins.
	ClientID, Username string
	// ProtocolVersion is 4 (3.1.1) or 5; a 3.1.1 sender has no
	// ResponseTopic and gets its reply on the topic's /reply.
	ProtocolVersion byte
	ResponseTopic   string
	CorrelationData []byte
	// MessageExpiry is the MQTT 5 Message Expiry Interval (0: none).
	MessageExpiry time.Duration
	Received      time.Time
}

// SubscribeCommands registers fn for what local clients publish on
// filter (e.g. "edged/gw1/+/+/set"). fn runs on the sender's goroutine and
// must not block (hand the command to a queue). Unsubscribe(filter, id)
// removes it.
func (b *Broker) SubscribeCommands(filter string, id int, fn func(LocalCommand)) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		if pk.Origin == mqtt.InlineClientId || pk.Origin == replyClientID {
			return // edged's own messages are not commands
		}
		c := LocalCommand{Topic: pk.TopicName, Payload: append([]byte(nil), pk.Payload...), ClientID: pk.Origin,
			ResponseTopic: pk.Properties.ResponseTopic, CorrelationData: append([]byte(nil), pk.Properties.CorrelationData...),
			MessageExpiry: time.Duration(pk.Properties.MessageExpiryInterval) * time.Second, Received: time.Now()}
		if cl, ok := b.srv.Clients.Get(pk.Origin); ok {
			c.Username = string(cl.Properties.Username)
			c.ProtocolVersion = cl.Properties.ProtocolVersion
		}
		fn(c)
	})
}

// OnRefusedCommand registers fn for the command topics' publishes the
// broker refused (commands off, the client's publish ACL, anonymous), with
// why; retained ones are not told. The client got its refusal from the
// broker (MQTT 5 QoS 1: PUBACK 0x87; otherwise acknowledged and dropped)
// and the message went nowhere; fn audits and answers it. It runs on the
// sender's goroutine and must not block.
func (b *Broker) OnRefusedCommand(fn func(c LocalCommand, why string)) {
	h := func(cl *mqtt.Client, pk packets.Packet, why string) {
		c := LocalCommand{Topic: pk.TopicName, Payload: append([]byte(nil), pk.Payload...), ClientID: cl.ID,
			Username: string(cl.Properties.Username), ProtocolVersion: cl.Properties.ProtocolVersion,
			ResponseTopic: pk.Properties.ResponseTopic, CorrelationData: append([]byte(nil), pk.Properties.CorrelationData...),
			MessageExpiry: time.Duration(pk.Properties.MessageExpiryInterval) * time.Second, Received: time.Now()}
		fn(c, why)
	}
	b.auth.refusedCommand.Store(&h)
}

const replyClientID = "edged-reply"

// PublishReply publishes a command's reply to local subscribers at QoS 1,
// not retained, with the request's correlation data (MQTT 5 subscribers
// receive it as the Correlation Data property). Replies are edged's own
// messages for the ACL (clients cannot forge them) but are not handed to
// the uplinks' Subscribe handlers.
func (b *Broker) PublishReply(topic string, payload, correlation []byte) error {
	b.rmu.Lock()
	if b.reply == nil {
		b.reply = b.srv.NewClient(nil, "local", replyClientID, true)
		b.reply.Properties.ProtocolVersion = 5
	}
	cl := b.reply
	b.rmu.Unlock()
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    1,
	}
	if len(correlation) > 0 {
		pk.Properties.CorrelationData = correlation
	}
	return b.srv.InjectPacket(cl, pk)
}
