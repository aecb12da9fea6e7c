package northbound

import (
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/edged-gw/edged/buffer"
)

// refusingBroker is a minimal MQTT 5 server on a loopback socket that
// answers QoS 1 PUBLISHes with the reason code refuse returns (mosquitto
// never answers 0x97 or 0x80, which AWS IoT and EMQX do for quotas and
// errors). It records what it accepted and how often it saw each message.
type refusingBroker struct {
	ln     net.Listener
	refuse func(topic string, n int) byte // n: how often this payload came before

	mu       sync.Mutex
	sessions int
	seen     map[string]int // topic and seq → times received
	accepted map[string]bool
}

func startRefusingBroker(t *testing.T, refuse func(topic string, n int) byte) *refusingBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &refusingBroker{ln: ln, refuse: refuse, seen: map[string]int{}, accepted: map[string]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *refusingBroker) serve(c net.Conn) {
	defer c.Close()
	cp, err := packets.ReadPacket(c)
	if err != nil || cp.Type != packets.CONNECT {
		return
	}
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
		return
	}
	for {
		cp, err := packets.ReadPacket(c)
		if err != nil {
			return
		}
		switch p := cp.Content.(type) {
		case *packets.Publish:
			if p.QoS == 0 {
				continue
			}
			b.mu.Lock()
			// {"seq":N,... : the same message, live or resent (marked historical)
			seq, _, _ := strings.Cut(string(p.Payload), ",")
			key := p.Topic + " " + seq
			code := b.refuse(p.Topic, b.seen[key])
			b.seen[key]++
			if code < 0x80 {
				b.accepted[key] = true
			}
			b.mu.Unlock()
			if _, err := (&packets.Puback{PacketID: p.PacketID, ReasonCode: code, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
				return
			}
		case *packets.Pingreq:
			if _, err := c.Write([]byte{packets.PINGRESP << 4, 0}); err != nil {
				return
			}
		case *packets.Disconnect:
			return
		}
	}
}

func (b *refusingBroker) counts() (sessions int, seen map[string]int, accepted int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen = map[string]int{}
	for k, v := range b.seen {
		seen[k] = v
	}
	return b.sessions, seen, len(b.accepted)
}

// TestFaultRefusalsRetried: a broker refuses every message with 0x97
// (quota exceeded) the first two times and one topic always with 0x80
// (unspecified error). Quota refusals are sent again after a pause until
// they pass: nothing lost, all acknowledged. The message that never
// passes is sent maxRefusedTries times, then counted as lost
// (unspecified_error), never as acknowledged. One session throughout.
func TestFaultRefusalsRetried(t *testing.T) {
	rb := startRefusingBroker(t, func(topic string, n int) byte {
		switch {
		case strings.HasSuffix(topic, "/broken"):
			return 0x80
		case n < 2:
			return 0x97
		}
		return 0
	})
	q, err := buffer.Open(buffer.Options{Dir: filepath.Join(t.TempDir(), "buffer"), MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	local := NewBroker(BrokerOptions{})
	if err := local.Start(); err != nil {
		t.Fatal(err)
	}
	defer local.Stop()
	var logs logCapture
	u := NewUplink(UplinkOptions{
		Name: "cloud", Queue: q, Filters: []string{"edged/#"}, Logger: logs.logger(),
		Publisher:  NewMQTT5(PublisherConfig{URL: &url.URL{Scheme: "mqtt", Host: rb.ln.Addr().String()}, ClientID: "q", KeepAlive: 5 * time.Second, Window: 8}),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
	if err := u.Attach(local.Subscribe, 1); err != nil {
		t.Fatal(err)
	}
	u.Start()
	defer u.Stop(t.Context())
	const n = 30
	for i := range n {
		publishSeq(t, local, "a", i)
	}
	publishSeq(t, local, "broken", 0)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := u.Stats()
		if st.Acked == n && st.Lost["unspecified_error"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked %d of %d, lost %v, refused %v\n%s", st.Acked, n, st.Lost, st.Refused, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := u.Stats()
	sessions, seen, accepted := rb.counts()
	broken := 0
	for k, v := range seen {
		if strings.HasPrefix(k, "edged/gw/dev/broken ") {
			broken += v
		}
	}
	t.Logf("acked %d, refused %v, lost %v, sessions %d, broken sent %d times, depth %d", st.Acked, st.Refused, st.Lost, sessions, broken, st.Buffer.Depth)
	if accepted != n {
		t.Errorf("the broker accepted %d distinct messages, want %d", accepted, n)
	}
	if got := st.Refused["quota_exceeded"]; got != 2*n {
		t.Errorf("%d quota refusals counted, want %d", got, 2*n)
	}
	if st.Lost["quota_exceeded"] != 0 {
		t.Errorf("%d messages lost to the quota: they must be retried", st.Lost["quota_exceeded"])
	}
	if broken != maxRefusedTries {
		t.Errorf("the always-refused message was sent %d times, want %d", broken, maxRefusedTries)
	}
	if sessions != 1 || st.Connects != 1 {
		t.Errorf("%d sessions (%d connects): refusals must not cost the session", sessions, st.Connects)
	}
	if st.Buffer.Depth != 0 {
		t.Errorf("buffer holds %d", st.Buffer.Depth)
	}
	if got := logs.count("refused a message"); got > 3 {
		t.Errorf("%d log lines about refusals: not rate-limited\n%s", got, logs.String())
	}
}

// TestRefusalBackoff: the pause after refusals grows while they go on,
// stays within BackoffMax, and starts over after a quiet spell.
func TestRefusalBackoff(t *testing.T) {
	var r refusalState
	r.init(100*time.Millisecond, time.Second)
	now := time.Now()
	var last time.Duration
	for i := range 10 {
		v := r.refuse(now, uint64(i), 0x97)
		if v.lost {
			t.Fatalf("a quota refusal counted as lost")
		}
		if v.retryIn > time.Second {
			t.Fatalf("pause %s beyond BackoffMax", v.retryIn)
		}
		last = v.retryIn
		now = now.Add(10 * time.Millisecond)
	}
	if last < 500*time.Millisecond {
		t.Errorf("pause %s after 10 refusals in a row: not growing", last)
	}
	v := r.refuse(now.Add(2*time.Second), 99, 0x97)
	if v.retryIn > 100*time.Millisecond {
		t.Errorf("pause %s after a quiet spell: not reset", v.retryIn)
	}
	for _, c := range []struct {
		code  byte
		label string
	}{{0x87, "not_authorized"}, {0x90, "topic_name_invalid"}, {0x99, "payload_format_invalid"}} {
		if v := r.refuse(now, 1000+uint64(c.code), c.code); !v.lost || v.label != c.label {
			t.Errorf("0x%02x: lost %v label %q, want lost as %q", c.code, v.lost, v.label, c.label)
		}
	}
}
