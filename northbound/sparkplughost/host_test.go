package sparkplughost

import (
	"log/slog"
	"testing"
	"time"

	pahomqtt "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/sparkplug"
)

// startBroker runs mochi (the library edged embeds) on a loopback port.
func startBroker(t *testing.T) (*mqtt.Server, string) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, tcp.Address()
}

const edgeClientID = "edged-gw1"

// edge drives a sparkplug.Session over a plain paho (MQTT 3.1.1) client the
// way the uplink will: will = NDEATH, clean session, STATE before births,
// pending messages held while not born and replayed as historical, seq
// and aliases assigned by Next at send time.
type edge struct {
	t       *testing.T
	addr    string
	broker  *mqtt.Server
	s       *sparkplug.Session
	host    *sparkplug.PrimaryHost
	tags    []*mapping.Spec
	c       pahomqtt.Client
	state   chan []byte
	cmds    chan pahomqtt.Message
	born    bool
	backlog [][2]string // topic, pending
	n       int
	sent    []int64 // sample timestamps of every poll not deliberately lost
}

// newEdge is an edged process; bdSeq is what it kept from its last run.
func newEdge(t *testing.T, broker *mqtt.Server, addr string, bdSeq uint8) *edge {
	e := &edge{t: t, addr: addr, broker: broker, state: make(chan []byte, 64), cmds: make(chan pahomqtt.Message, 64)}
	for _, name := range []string{"flow", "pressure", "level"} {
		s := mapping.Spec{Name: name, Type: mapping.TypeFloat32, Unit: "bar"}
		if err := s.Init(); err != nil {
			t.Fatal(err)
		}
		e.tags = append(e.tags, &s)
	}
	var err error
	e.s, err = sparkplug.New(sparkplug.Config{Group: "plant1", Node: "gw1", BdSeq: bdSeq, Now: func() int64 { return time.Now().UnixMilli() },
		Devices: []sparkplug.Device{{Name: "pump", Tags: e.tags}}})
	if err != nil {
		t.Fatal(err)
	}
	if e.host, err = sparkplug.NewPrimaryHost("scada"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.DeviceBirth("pump"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *edge) connect() {
	e.t.Helper()
	// mochi removes a dead client's subscriptions by client id when it is
	// done with it; a reconnect with the same id before then would lose its
	// new subscriptions. Wait until the broker has let go of the old one.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := e.broker.Clients.Get(edgeClientID); !ok {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatal("edge: the broker still holds the previous connection after 10 s")
		}
	}
	will := e.s.Connect()
	e.host.NewConnection()
	e.born = false
	opts := pahomqtt.NewClientOptions().AddBroker("tcp://"+e.addr).SetClientID(edgeClientID).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true).
		SetBinaryWill(will.Topic, will.Payload, 1, false)
	e.c = pahomqtt.NewClient(opts)
	c := e.c
	e.t.Cleanup(func() { c.Disconnect(0) })
	if tok := e.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("edge connect: %v", tok.Error())
	}
	subs := map[string]byte{
		e.host.Topic():              1,
		"spBv1.0/plant1/NCMD/gw1":   0,
		"spBv1.0/plant1/DCMD/gw1/+": 0,
	}
	tok := e.c.SubscribeMultiple(subs, func(_ pahomqtt.Client, m pahomqtt.Message) {
		if m.Topic() == e.host.Topic() {
			e.state <- append([]byte(nil), m.Payload()...)
			return
		}
		e.cmds <- m
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("edge subscribe: %v", tok.Error())
	}
}

func (e *edge) publish(topic string, payload []byte) {
	e.t.Helper()
	tok := e.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("edge publish %s: %v", topic, tok.Error())
	}
}

// births publishes NBIRTH and DBIRTHs, then replays the backlog.
func (e *edge) births() {
	e.t.Helper()
	msgs, err := e.s.Births()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range msgs {
		e.publish(m.Topic, m.Payload)
	}
	e.born = true
	for _, q := range e.backlog {
		out, err := e.s.Next(nil, q[0], []byte(q[1]), true)
		if err != nil {
			e.t.Fatalf("replay %s: %v", q[0], err)
		}
		if len(out) > 0 {
			e.publish(q[0], out)
		}
	}
	e.backlog = e.backlog[:0]
}

// awaitHost handles STATE messages until the event want (births on
// HostOnline).
func (e *edge) awaitHost(want sparkplug.HostEvent) {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case p := <-e.state:
			ev, err := e.host.Observe(p)
			if err != nil {
				e.t.Fatalf("edge: STATE: %v", err)
			}
			seen = append(seen, string(p)+" → "+ev.String())
			if ev == want {
				if ev == sparkplug.HostOnline {
					e.births()
				}
				return
			}
		case <-deadline:
			e.t.Fatalf("edge: no STATE %v within 10 s; STATE messages seen: %q", want, seen)
		}
	}
}

// poll publishes one sample of every tag, or holds it while not born.
// lose drops the message after Next, as a broken link would.
func (e *edge) poll(lose bool) {
	e.t.Helper()
	e.n++
	now := time.Now().UnixMilli()
	if len(e.sent) > 0 && now <= e.sent[len(e.sent)-1] {
		now = e.sent[len(e.sent)-1] + 1 // distinct timestamps, so that each poll can be found
	}
	if lose {
		now++ // keep the lost poll's timestamp out of e.sent's sequence
	}
	samples := make([]mapping.Sample, len(e.tags))
	for i, s := range e.tags {
		samples[i] = mapping.Sample{Tag: s, Value: mapping.Value{Kind: mapping.KindFloat, Float: float64(e.n) + 0.5}, TimeMs: now}
	}
	topic, pending, err := e.s.Data("pump", samples, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if !lose {
		e.sent = append(e.sent, now)
	}
	if !e.born {
		e.backlog = append(e.backlog, [2]string{topic, string(pending)})
		return
	}
	out, err := e.s.Next(nil, topic, pending, false)
	if err != nil {
		e.t.Fatal(err)
	}
	if !lose {
		e.publish(topic, out)
	}
}

// serveRebirth waits for an NCMD and answers a Rebirth with new births.
func (e *edge) serveRebirth() {
	e.t.Helper()
	select {
	case m := <-e.cmds:
		cmd, err := e.s.Command(m.Topic(), m.Payload())
		if err != nil || !cmd.Rebirth {
			e.t.Fatalf("edge: command %s: %+v %v", m.Topic(), cmd, err)
		}
		e.births()
	case <-time.After(10 * time.Second):
		e.t.Fatal("edge: no NCMD within 10 s")
	}
}

// TestHostThroughOutages: an edge node that waits for its primary host,
// loses its connection five times (the broker sends its will), restarts
// with its backlog, sees the host go offline and back, and loses one
// message, is followed by the host with exactly the repairs those explain:
// NDEATHs that match their NBIRTHs, one seq gap answered by one Rebirth,
// historical replays, no other event.
func TestHostThroughOutages(t *testing.T) {
	broker, addr := startBroker(t)
	link := mosquittotest.NewProxy(t, addr) // the edge's uplink path, which the test can cut
	e := newEdge(t, broker, link.Addr(), 0)
	e.connect()
	for range 4 { // no primary host yet: nothing may be born
		e.poll(false)
	}
	if e.born || len(e.backlog) != 4 {
		t.Fatalf("edge born=%v with %d held before the host came online", e.born, len(e.backlog))
	}
	h := Start(t, addr, "scada", "plant1")
	e.awaitHost(sparkplug.HostOnline)
	for range 10 {
		e.poll(false)
	}
	h.WaitFor(10*time.Second, "births, 4 replayed and 10 live polls", func(s Snapshot) bool {
		n := s.Nodes["gw1"]
		return n.Births == 1 && n.Historical == 4*3 && n.LiveMetrics == 10*3
	})

	const outages = 5
	for outage := 1; outage <= outages; outage++ {
		link.Cut() // the broker sees the connection die and publishes the will
		h.WaitFor(10*time.Second, "the NDEATH will", func(s Snapshot) bool { return s.Nodes["gw1"].Deaths == outage })
		e.born = false
		for range 3 {
			e.poll(false)
		}
		link.Restore()
		e.connect()
		e.awaitHost(sparkplug.HostOnline) // the retained STATE again
		e.poll(false)
	}
	h.WaitFor(10*time.Second, "the replays after the outages", func(s Snapshot) bool {
		n := s.Nodes["gw1"]
		return n.Births == 1+outages && n.Historical == (4+3*outages)*3 && n.LiveMetrics == (10+outages)*3
	})

	// A restart: the process dies (the will goes out), a new one starts
	// with the next bdSeq and the buffered backlog of the old one, whose
	// pending messages carry names, not the old session's aliases or seq.
	link.Cut()
	h.WaitFor(10*time.Second, "the NDEATH of the dying process", func(s Snapshot) bool { return s.Nodes["gw1"].Deaths == outages+1 })
	e.born = false
	e.poll(false)
	e.poll(false)
	restarted := newEdge(t, broker, link.Addr(), e.s.BdSeq()+1)
	restarted.backlog, restarted.n, restarted.sent = e.backlog, e.n, e.sent
	e = restarted
	link.Restore()
	e.connect()
	e.awaitHost(sparkplug.HostOnline)
	h.WaitFor(10*time.Second, "the births and replay after the restart", func(s Snapshot) bool {
		n := s.Nodes["gw1"]
		return n.Births == outages+2 && n.Historical == (4+3*outages+2)*3
	})

	// The primary host goes offline: the edge node sends its death,
	// disconnects and holds its data until the host is back.
	h.SetState(false)
	e.awaitHost(sparkplug.HostOffline)
	death := e.s.Death()
	e.publish(death.Topic, death.Payload)
	e.c.Disconnect(250)
	h.WaitFor(10*time.Second, "the NDEATH sent before disconnecting", func(s Snapshot) bool { return s.Nodes["gw1"].Deaths == outages+2 })
	e.born = false
	for range 2 {
		e.poll(false)
	}
	h.SetState(true)
	e.connect()
	e.awaitHost(sparkplug.HostOnline)

	// A lost message: the host sees the gap and asks for a Rebirth.
	e.poll(true)
	e.poll(false)
	e.serveRebirth()
	e.poll(false)
	s := h.WaitFor(10*time.Second, "the rebirth and the poll after it", func(s Snapshot) bool {
		n := s.Nodes["gw1"]
		return n.Births == outages+4 && n.LiveMetrics == (10+outages+1)*3
	})
	n := s.Nodes["gw1"]
	if !n.Online || n.Devices["pump"] == nil {
		t.Errorf("node %+v: want online with pump born", n)
	}
	if want := (4 + 3*outages + 2 + 2) * 3; n.Historical != want {
		t.Errorf("%d historical metrics, want %d", n.Historical, want)
	}
	// At least once: every poll not deliberately lost reached the host,
	// except the one after the lost one, which the host discarded with the
	// gap (the Rebirth's DBIRTH carries its values as the current ones).
	missing := 0
	for _, ts := range e.sent {
		for _, tag := range e.tags {
			if !h.Seen("gw1", "pump", tag.Name, uint64(ts)) {
				missing++
			}
		}
	}
	if missing != 3 || n.Points != (len(e.sent)-1)*3 {
		t.Errorf("%d points missing, host has %d distinct: want exactly the 3 of the poll discarded with the gap, and %d", missing, n.Points, (len(e.sent)-1)*3)
	}
	// The only events: the injected gap, its Rebirth, and perhaps the will
	// of the connection closed after its explicit NDEATH (the test's proxy
	// may close the path before the DISCONNECT packet is through).
	if s.Count(Gap) != 1 || s.Count(RebirthSent) != 1 || len(s.Events) != 2+s.Count(DuplicateDeath) || s.Count(DuplicateDeath) > 1 {
		t.Errorf("events %+v: want exactly the one injected seq gap and its Rebirth", s.Events)
	}
}
