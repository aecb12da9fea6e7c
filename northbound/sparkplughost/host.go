// Package sparkplughost is a Sparkplug B primary host application for
// tests: it connects to a real broker, publishes its retained STATE (with
// the offline STATE as its will), subscribes to one group and applies the
// host rules of specification 3.0 to every message it receives — bdSeq of
// NDEATH against the NBIRTH, seq continuity mod 256, DBIRTH before DDATA,
// aliases from the births — and, like a real host, asks the edge node for
// a Rebirth (NCMD) when a message does not fit. Tests read what it saw
// through Snapshot and WaitFor; anything it had to repair is an Event.
//
// It decodes with the generated sproto code; the independent Tahu decoder
// lives in mapping/sparkplug's tests.
package sparkplughost

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/mapping/sparkplug"
	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
)

// EventKind says what the host had to notice.
type EventKind string

// Event kinds. Gap, NotBorn, UnknownAlias and Undecodable make the host
// send a Rebirth; StaleDeath is ignored, as the specification says.
const (
	Gap          EventKind = "seq-gap"
	NotBorn      EventKind = "not-born"      // data or device message without the births it needs
	UnknownAlias EventKind = "unknown-alias" // a DDATA alias its DBIRTH did not define
	NamedData    EventKind = "named-data"    // a DDATA metric with a name (edged sends alias only)
	Undecodable  EventKind = "undecodable"   // not a Sparkplug B payload
	StaleDeath   EventKind = "stale-ndeath"  // an NDEATH whose bdSeq is not the current NBIRTH's
	// DuplicateDeath: a second NDEATH for the same NBIRTH, e.g. the will
	// after an edge node published its NDEATH and disconnected, when the
	// broker saw the connection end before the DISCONNECT packet.
	DuplicateDeath EventKind = "duplicate-ndeath"
	BadBirth       EventKind = "bad-birth" // an NBIRTH without seq 0, bdSeq or Node Control/Rebirth
	RebirthSent    EventKind = "rebirth-sent"
)

// Event is one thing the host noticed, in arrival order.
type Event struct {
	Kind   EventKind
	Node   string
	Device string
	Detail string
}

// Node is what the host knows of one edge node.
type Node struct {
	Online        bool
	BdSeq         uint64
	NextSeq       int                          // expected seq of the next message
	Devices       map[string]map[uint64]string // born devices: alias → metric name
	Births        int                          // NBIRTHs
	Deaths        int                          // NDEATHs that matched the NBIRTH
	Messages      map[string]int               // per message type
	LiveMetrics   int
	Historical    int    // metrics with is_historical
	LastHistTs    uint64 // original timestamp of the last historical metric
	Points        int    // distinct (device, metric, timestamp) received in DDATA
	points        map[point]struct{}
	awaitingBirth bool // a Rebirth was asked for: ignore data until NBIRTH
}

type point struct {
	device, metric string
	ts             uint64
}

// Seen reports whether the host received metric of device on node with
// timestamp ts (Unix ms) in a DDATA, live or historical: for checking that
// nothing was lost.
func (h *Host) Seen(node, device, metric string, ts uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[node]
	if n == nil {
		return false
	}
	_, ok := n.points[point{device, metric, ts}]
	return ok
}

// Snapshot is a copy of the host's state.
type Snapshot struct {
	Nodes  map[string]Node
	Events []Event
}

// Count returns how many events of kind were seen.
func (s Snapshot) Count(kind EventKind) int {
	n := 0
	for _, e := range s.Events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// Host is a running primary host.
type Host struct {
	t      testing.TB
	id     string
	group  string
	client *paho.Client

	mu     sync.Mutex
	nodes  map[string]*Node
	events []Event
	wake   chan struct{}
}

// Start connects host id to the broker at addr, publishes its STATE online
// (retained, QoS 1, will = offline) and subscribes to group's messages. It
// fails the test if that does not work within 5 s; t.Cleanup disconnects.
func Start(t testing.TB, addr, id, group string) *Host {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("sparkplughost: dial %s: %v", addr, err)
	}
	h := &Host{t: t, id: id, group: group, nodes: map[string]*Node{}, wake: make(chan struct{}, 1)}
	h.client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			h.receive(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}},
	})
	ts := time.Now().UnixMilli()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := h.client.Connect(ctx, &paho.Connect{
		ClientID: "sparkplughost-" + id, CleanStart: true, KeepAlive: 30,
		WillMessage: &paho.WillMessage{Topic: sparkplug.StateTopic(id), QoS: 1, Retain: true, Payload: state(false, ts)},
	})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("sparkplughost: connect %s: %v %v", addr, err, ca)
	}
	if _, err := h.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: sparkplug.Namespace + "/" + group + "/#", QoS: 1},
	}}); err != nil {
		t.Fatalf("sparkplughost: subscribe: %v", err)
	}
	h.SetState(true)
	t.Cleanup(func() { _ = h.client.Disconnect(&paho.Disconnect{}) })
	return h
}

func state(online bool, ts int64) []byte {
	b, _ := json.Marshal(map[string]any{"online": online, "timestamp": ts})
	return b
}

// SetState publishes the host's STATE (retained, QoS 1), as a host does
// when it starts (online) or goes away cleanly (offline).
func (h *Host) SetState(online bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.client.Publish(ctx, &paho.Publish{Topic: sparkplug.StateTopic(h.id), QoS: 1, Retain: true,
		Payload: state(online, time.Now().UnixMilli())}); err != nil {
		h.t.Fatalf("sparkplughost: publish STATE: %v", err)
	}
}

// Snapshot copies what the host knows.
func (h *Host) Snapshot() Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Snapshot{Nodes: map[string]Node{}, Events: append([]Event(nil), h.events...)}
	for id, n := range h.nodes {
		c := *n
		c.Devices = map[string]map[uint64]string{}
		for d, a := range n.Devices {
			c.Devices[d] = a
		}
		c.points = nil
		c.Messages = map[string]int{}
		for k, v := range n.Messages {
			c.Messages[k] = v
		}
		s.Nodes[id] = c
	}
	return s
}

// WaitFor waits until cond holds, failing the test with the host's events
// if it does not within timeout.
func (h *Host) WaitFor(timeout time.Duration, what string, cond func(Snapshot) bool) Snapshot {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s := h.Snapshot()
		if cond(s) {
			return s
		}
		select {
		case <-h.wake:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			h.t.Fatalf("sparkplughost: timed out after %v waiting for %s; nodes %+v; events %+v", timeout, what, s.Nodes, s.Events)
			return s
		}
	}
}

func (h *Host) event(e Event) {
	h.events = append(h.events, e)
}

// receive applies the host rules to one message. Runs on paho's goroutine.
func (h *Host) receive(topic string, payload []byte) {
	defer func() {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}()
	levels := strings.Split(topic, "/")
	if len(levels) < 4 || len(levels) > 5 || levels[0] != sparkplug.Namespace || levels[1] != h.group {
		return
	}
	typ, nodeID, dev := levels[2], levels[3], ""
	if len(levels) == 5 {
		dev = levels[4]
	}
	if typ == string(sparkplug.NCMD) || typ == string(sparkplug.DCMD) {
		return // our own commands
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[nodeID]
	if n == nil {
		n = &Node{Devices: map[string]map[uint64]string{}, Messages: map[string]int{}, points: map[point]struct{}{}}
		h.nodes[nodeID] = n
	}
	n.Messages[typ]++
	var p sproto.Payload
	if err := proto.Unmarshal(payload, &p); err != nil {
		h.rebirth(n, nodeID, Event{Kind: Undecodable, Node: nodeID, Device: dev, Detail: err.Error()})
		return
	}
	switch sparkplug.MessageType(typ) {
	case sparkplug.NBIRTH:
		bd, ok := bdSeq(&p)
		hasRebirth := false
		for _, m := range p.GetMetrics() {
			hasRebirth = hasRebirth || m.GetName() == sparkplug.MetricRebirth
		}
		if !ok || p.Seq == nil || p.GetSeq() != 0 || !hasRebirth {
			h.event(Event{Kind: BadBirth, Node: nodeID, Detail: fmt.Sprintf("seq %d (set %v) bdSeq ok %v rebirth %v", p.GetSeq(), p.Seq != nil, ok, hasRebirth)})
		}
		n.Online, n.BdSeq, n.NextSeq, n.awaitingBirth = true, bd, 1, false
		n.Devices = map[string]map[uint64]string{}
		n.Births++
		return
	case sparkplug.NDEATH:
		bd, ok := bdSeq(&p)
		if ok && !n.Online && bd == n.BdSeq {
			// The will of a connection whose NDEATH was already sent on purpose.
			h.event(Event{Kind: DuplicateDeath, Node: nodeID, Detail: fmt.Sprintf("bdSeq %d", bd)})
			return
		}
		if !ok || !n.Online || bd != n.BdSeq {
			h.event(Event{Kind: StaleDeath, Node: nodeID, Detail: fmt.Sprintf("bdSeq %d, NBIRTH had %d (online %v)", bd, n.BdSeq, n.Online)})
			return
		}
		n.Online = false
		n.Devices = map[string]map[uint64]string{}
		n.Deaths++
		return
	}
	if n.awaitingBirth {
		return
	}
	if !n.Online {
		h.rebirth(n, nodeID, Event{Kind: NotBorn, Node: nodeID, Device: dev, Detail: typ + " before NBIRTH"})
		return
	}
	if p.Seq == nil || int(p.GetSeq()) != n.NextSeq {
		h.rebirth(n, nodeID, Event{Kind: Gap, Node: nodeID, Device: dev, Detail: fmt.Sprintf("%s seq %d (set %v), want %d", typ, p.GetSeq(), p.Seq != nil, n.NextSeq)})
		return
	}
	n.NextSeq = (n.NextSeq + 1) % 256
	switch sparkplug.MessageType(typ) {
	case sparkplug.DBIRTH:
		aliases := map[uint64]string{}
		for _, m := range p.GetMetrics() {
			aliases[m.GetAlias()] = m.GetName()
		}
		n.Devices[dev] = aliases
	case sparkplug.DDEATH:
		if n.Devices[dev] == nil {
			h.rebirth(n, nodeID, Event{Kind: NotBorn, Node: nodeID, Device: dev, Detail: "DDEATH of a device not born"})
			return
		}
		delete(n.Devices, dev)
	case sparkplug.DDATA:
		aliases := n.Devices[dev]
		if aliases == nil {
			h.rebirth(n, nodeID, Event{Kind: NotBorn, Node: nodeID, Device: dev, Detail: "DDATA before DBIRTH"})
			return
		}
		for _, m := range p.GetMetrics() {
			if m.Name != nil {
				h.event(Event{Kind: NamedData, Node: nodeID, Device: dev, Detail: m.GetName()})
			}
			name, ok := aliases[m.GetAlias()]
			if !ok {
				h.rebirth(n, nodeID, Event{Kind: UnknownAlias, Node: nodeID, Device: dev, Detail: fmt.Sprint(m.GetAlias())})
				return
			}
			n.points[point{dev, name, m.GetTimestamp()}] = struct{}{}
			n.Points = len(n.points)
			if m.GetIsHistorical() {
				n.Historical++
				n.LastHistTs = m.GetTimestamp()
			} else {
				n.LiveMetrics++
			}
		}
	}
}

func bdSeq(p *sproto.Payload) (uint64, bool) {
	for _, m := range p.GetMetrics() {
		if m.GetName() == sparkplug.MetricBdSeq {
			if v, ok := m.GetValue().(*sproto.Payload_Metric_LongValue); ok {
				return v.LongValue, true
			}
		}
	}
	return 0, false
}

// rebirth records e and asks the node for a Rebirth, as a host does when
// it cannot trust its view of the node any more. Called with h.mu held.
func (h *Host) rebirth(n *Node, nodeID string, e Event) {
	h.event(e)
	n.awaitingBirth = true
	h.event(Event{Kind: RebirthSent, Node: nodeID})
	payload, _ := proto.Marshal(&sproto.Payload{
		Timestamp: proto.Uint64(uint64(time.Now().UnixMilli())),
		Metrics: []*sproto.Payload_Metric{{
			Name: proto.String(sparkplug.MetricRebirth), Datatype: proto.Uint32(uint32(sparkplug.TypeBoolean)),
			Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true},
		}},
	})
	topic := sparkplug.Topic(h.group, sparkplug.NCMD, nodeID, "")
	// Not on paho's receive goroutine: a publish from there could wait on
	// the very loop that is running this handler.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = h.client.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: payload})
	}()
}
