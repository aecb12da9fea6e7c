package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// demoCloud plays the cloud for `edged demo`: a second MQTT broker (mochi)
// on loopback, which the gateway's [[upstream]] reaches through demoLink,
// and a tally comparing what the local broker published with what arrived.
type demoCloud struct {
	srv   *mqtt.Server
	tcp   *listeners.TCP
	link  *demoLink
	tally *demoTally
}

// startCloud starts the cloud broker on listen (loopback) and the link to
// it on a free loopback port; the upstream dials link.Addr().
func startCloud(listen string, skip string) (*demoCloud, error) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil { // loopback only
		return nil, err
	}
	c := &demoCloud{srv: srv, tally: newDemoTally(skip)}
	c.tcp = listeners.NewTCP(listeners.Config{ID: "cloud", Address: listen})
	if err := srv.AddListener(c.tcp); err != nil {
		return nil, fmt.Errorf("cloud broker: listen on %s: %w", listen, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("cloud broker: %w", err)
	}
	if err := srv.Subscribe("#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		c.tally.received(pk.TopicName, pk.Payload, historicalProperty(pk.Properties.User))
	}); err != nil {
		_ = srv.Close()
		return nil, err
	}
	link, err := newDemoLink(c.tcp.Address())
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	c.link = link
	return c, nil
}

// Addr is where the cloud broker listens (for subscribers watching it).
func (c *demoCloud) Addr() string { return c.tcp.Address() }

// Close stops the link and the broker.
func (c *demoCloud) Close() {
	c.link.Close()
	_ = c.srv.Close()
}

func historicalProperty(ps []packets.UserProperty) bool {
	for _, p := range ps {
		if p.Key == "historical" && p.Val == "true" {
			return true
		}
	}
	return false
}

// demoTally numbers every message the local broker publishes on the topics
// the upstream carries (its sequence number) and checks them off as the
// cloud receives them. A message is identified by topic and payload (the
// payload holds the read's millisecond timestamp); the "hist" mark the
// replay adds is taken off before matching.
type demoTally struct {
	skip string // the gateway's own status topic: the uplink sends its own

	mu         sync.Mutex
	counting   bool
	published  uint64              // sequence numbers given out: 1…published
	want       map[string][]uint64 // message not yet (fully) received → its sequence numbers
	got        map[string]int      // message → times the cloud received it (pending ones)
	delivered  map[string]struct{} // the last tallyKeep messages fully received, to count repeats
	order      []string            // delivered, as a ring: order[next] is evicted next
	next       int
	arrived    uint64    // messages received by the cloud that the tally numbered
	historical uint64    // of those, marked historical (first arrival)
	repeats    uint64    // arrivals beyond the first of a message
	lastAt     time.Time // the cloud's last arrival, for the view
}

// tallyKeep bounds the memory of a long demo: delivered messages are
// remembered (to count a resend as such) only this many.
const tallyKeep = 1 << 16

func newDemoTally(skip string) *demoTally {
	return &demoTally{skip: skip, counting: true, want: map[string][]uint64{}, got: map[string]int{}, delivered: map[string]struct{}{}}
}

func tallyKey(topic string, payload []byte) string { return topic + "\x00" + string(payload) }

// local is the local broker's in-process subscription: it runs on the
// publisher's goroutine and must not block.
func (t *demoTally) local(topic string, payload []byte, _ bool) {
	if topic == t.skip {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.counting {
		return
	}
	t.published++
	k := tallyKey(topic, payload)
	t.want[k] = append(t.want[k], t.published)
}

var histMark = []byte(`"hist":true}`)

// received counts one message arriving at the cloud.
func (t *demoTally) received(topic string, payload []byte, histProp bool) {
	hist := histProp
	if bytes.HasSuffix(payload, histMark) { // {…,"hist":true} → {…}
		hist = true
		p := payload[:len(payload)-len(histMark)]
		p = bytes.TrimSuffix(p, []byte(","))
		payload = append(p[:len(p):len(p)], '}')
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := tallyKey(topic, payload)
	seqs, ok := t.want[k]
	if !ok {
		if _, ok := t.delivered[k]; ok {
			t.repeats++
		}
		return // else the uplink's own status, or published before the tally began
	}
	t.lastAt = time.Now()
	t.arrived++
	if hist {
		t.historical++
	}
	if t.got[k]++; t.got[k] < len(seqs) {
		return
	}
	delete(t.want, k)
	delete(t.got, k)
	if len(t.order) < tallyKeep {
		t.order = append(t.order, k)
	} else {
		delete(t.delivered, t.order[t.next])
		t.order[t.next] = k
		t.next = (t.next + 1) % tallyKeep
	}
	t.delivered[k] = struct{}{}
}

// freeze stops numbering new local messages (the gateway is stopping).
func (t *demoTally) freeze() {
	t.mu.Lock()
	t.counting = false
	t.mu.Unlock()
}

// demoSummary is what the tally found.
type demoSummary struct {
	Published, Arrived, Historical, Repeats uint64
	Missing                                 []uint64 // sequence numbers not (yet) received, ascending
	// Examples are the first missing messages: "seq N: topic payload".
	Examples []string
}

func (t *demoTally) summary() demoSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := demoSummary{Published: t.published, Arrived: t.arrived, Historical: t.historical, Repeats: t.repeats}
	what := map[uint64]string{}
	for k, seqs := range t.want {
		for _, q := range seqs[t.got[k]:] {
			s.Missing = append(s.Missing, q)
			what[q] = strings.Replace(k, "\x00", " ", 1)
		}
	}
	sort.Slice(s.Missing, func(i, j int) bool { return s.Missing[i] < s.Missing[j] })
	for _, q := range s.Missing[:min(len(s.Missing), 3)] {
		s.Examples = append(s.Examples, fmt.Sprintf("seq %d: %s", q, what[q]))
	}
	return s
}

// String is the line `edged demo` prints at exit (tests read it).
func (s demoSummary) String() string {
	line := fmt.Sprintf("cloud: received %d of the %d messages the uplink took (sequence 1-%d): %d lost, %d marked historical, %d sent twice",
		s.Arrived, s.Published, s.Published, len(s.Missing), s.Historical, s.Repeats)
	if len(s.Missing) > 0 {
		show := s.Missing[:min(len(s.Missing), 10)]
		line += fmt.Sprintf("; missing %v", show)
		if len(s.Missing) > len(show) {
			line += " …"
		}
		line += " (" + strings.Join(s.Examples, "; ") + ")"
	}
	return line
}

// demoLink is the demo's network between the gateway and the cloud: a TCP
// relay that can be cut. Cutting drops the connections it carries; while
// cut, new connections are held unanswered, like a black-holed route, and
// are put through when the link comes back, so the uplink reconnects at
// once rather than after its backoff.
type demoLink struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	since  time.Time
	conns  map[net.Conn]struct{}
	held   []net.Conn
	closed bool
}

func newDemoLink(target string) (*demoLink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cloud link: %w", err)
	}
	k := &demoLink{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go k.serve()
	return k, nil
}

// Addr is the link's gateway side.
func (k *demoLink) Addr() string { return k.l.Addr().String() }

func (k *demoLink) serve() {
	for {
		c, err := k.l.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		switch {
		case k.closed:
			c.Close()
		case k.cut:
			k.held = append(k.held, c)
		default:
			go k.relay(c)
		}
		k.mu.Unlock()
	}
}

func (k *demoLink) relay(c net.Conn) {
	s, err := net.DialTimeout("tcp", k.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	k.mu.Lock()
	if k.cut || k.closed {
		k.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	k.conns[c], k.conns[s] = struct{}{}, struct{}{}
	k.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done // one side ended: end both
	c.Close()
	s.Close()
	<-done
	k.mu.Lock()
	delete(k.conns, c)
	delete(k.conns, s)
	k.mu.Unlock()
}

// SetCut cuts the link (true) or restores it (false).
func (k *demoLink) SetCut(cut bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if cut == k.cut || k.closed {
		return
	}
	k.cut = cut
	if cut {
		k.since = time.Now()
		for c := range k.conns {
			c.Close()
		}
		return
	}
	// Only the newest held connection can still be waiting for its answer:
	// the uplink gave up on the older ones (its CONNACK deadline), and
	// putting them through would let a dead attempt take over its session.
	if n := len(k.held); n > 0 {
		for _, c := range k.held[:n-1] {
			c.Close()
		}
		go k.relay(k.held[n-1])
	}
	k.held = nil
}

// Cut says whether the link is cut, and since when.
func (k *demoLink) Cut() (bool, time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cut, k.since
}

// Close stops the link and drops every connection.
func (k *demoLink) Close() {
	k.mu.Lock()
	k.closed = true
	for c := range k.conns {
		c.Close()
	}
	for _, c := range k.held {
		c.Close()
	}
	k.held = nil
	k.mu.Unlock()
	k.l.Close()
}
