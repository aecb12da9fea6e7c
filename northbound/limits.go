package northbound

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// messageOverhead is what one held message costs beyond its payload (the
// packet struct, topic, queue slot), counted so that a flood of tiny
// messages is bounded too.
const messageOverhead = 128

// stuckWrite is how long a socket write to a client may take before no
// more messages are queued for it (see guardedConn).
const stuckWrite = 100 * time.Millisecond

// Limits bounds, in bytes, what the broker holds for slow or stalled
// clients: messages queued for a client's socket plus QoS 1/2 messages it
// has not acknowledged, per client (PerClient) and for all clients
// together (Total). A message that would go beyond either is not queued
// for that client, and the drop is counted (per user name, which the
// config bounds; the client id, which clients choose, only appears in
// the log line when a client starts dropping).
//
// The library has no enqueue hook; the accounting is: a delivery admitted
// in the ACL read check adds the size of the message being published
// (recorded in OnPublish, keyed by topic) as queued; for QoS>0 the
// library's in-flight store (OnQosPublish, before queueing) moves it to
// unacknowledged until the acknowledgement (OnQosComplete/Dropped); a
// QoS 0 message is released when written (OnPacketSent). A disconnect forgets what was queued (the library drops
// it); an expired session forgets everything.
type Limits struct {
	mqtt.HookBase

	PerClient, Total int64
	MaxInflight      int // the library's per-client QoS>0 window
	log              *slog.Logger

	held atomic.Int64 // bytes, all clients

	smu   sync.Mutex
	sizes map[string]int64 // topic → size of the message being published

	cmu     sync.Mutex
	clients map[string]*clientHeld

	dmu       sync.Mutex
	dropsUser map[string]uint64
	drops     atomic.Uint64
}

type clientHeld struct {
	queued atomic.Int64
	// user is the session's user name; a client taking over the session
	// (same client id) sets it while the old connection's hooks read it.
	user atomic.Pointer[string]

	mu       sync.Mutex
	unacked  map[uint16]int64 // outbound packet id → size
	inbound  map[uint16]bool  // inbound QoS>0 packet ids (not ours to count)
	unackedN int64

	dropping  atomic.Bool
	dropped   atomic.Uint64
	lastNotic atomic.Int64 // unix nanos of the last "dropping" log line
}

func newLimits(perClient, total int64, maxInflight int, log *slog.Logger) *Limits {
	return &Limits{PerClient: perClient, Total: total, MaxInflight: maxInflight, log: log,
		sizes: map[string]int64{}, clients: map[string]*clientHeld{}, dropsUser: map[string]uint64{}}
}

func (l *Limits) ID() string { return "edged-limits" }

func (l *Limits) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPublished, mqtt.OnPacketSent, mqtt.OnQosPublish, mqtt.OnQosComplete,
		mqtt.OnQosDropped, mqtt.OnPublishDropped, mqtt.OnDisconnect, mqtt.OnSessionEstablished, mqtt.OnClientExpired:
		return true
	}
	return false
}

func heldSize(pk *packets.Packet) int64 { return int64(len(pk.Payload)) + messageOverhead }

// OnPublish records the size of the message about to be delivered.
func (l *Limits) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	l.smu.Lock()
	if len(l.sizes) > 10000 { // entries left by publishes that failed half-way
		clear(l.sizes)
	}
	l.sizes[pk.TopicName] = heldSize(&pk)
	l.smu.Unlock()
	return pk, nil
}

func (l *Limits) OnPublished(_ *mqtt.Client, pk packets.Packet) {
	l.smu.Lock()
	delete(l.sizes, pk.TopicName)
	l.smu.Unlock()
}

func (l *Limits) client(cl *mqtt.Client) *clientHeld {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	c := l.clients[cl.ID]
	if c == nil {
		c = &clientHeld{unacked: map[uint16]int64{}, inbound: map[uint16]bool{}}
		c.setUser(cl)
		l.clients[cl.ID] = c
	}
	return c
}

func (c *clientHeld) setUser(cl *mqtt.Client) {
	u := string(cl.Properties.Username)
	c.user.Store(&u)
}

func (c *clientHeld) userName() string {
	if u := c.user.Load(); u != nil {
		return *u
	}
	return ""
}

// admit is asked, from the auth hook's ACL read check, whether a message
// on topic may be queued for cl.
func (l *Limits) admit(cl *mqtt.Client, topic string) bool {
	l.smu.Lock()
	size, ok := l.sizes[topic]
	l.smu.Unlock()
	if !ok {
		return true // not a delivery (a subscription check)
	}
	if g, ok := cl.Net.Conn.(*guardedConn); ok && g.stuck(stuckWrite) {
		// Its writer is blocked in a socket write, holding the client's
		// lock: queueing a QoS 1 message would block this publisher.
		c := l.client(cl)
		l.drop(cl, c, c.queued.Load())
		return false
	}
	c := l.client(cl)
	c.mu.Lock()
	unacked := c.unackedN
	c.mu.Unlock()
	over := c.queued.Load()+unacked+size > l.PerClient || l.held.Load()+size > l.Total ||
		(l.MaxInflight > 0 && cl.State.Inflight.Len() >= l.MaxInflight)
	if over {
		l.drop(cl, c, c.queued.Load()+unacked)
		return false
	}
	if cl.Closed() {
		// Nothing is queued for a disconnected client; a QoS>0 message
		// goes to its session's in-flight store (OnQosPublish counts it),
		// so the bound above applies to vanished persistent sessions too.
		return true
	}
	c.queued.Add(size)
	l.held.Add(size)
	if c.dropping.Load() && c.queued.Load()+unacked < l.PerClient/2 {
		c.dropping.Store(false)
		l.log.Info("local client caught up", "client", cl.ID, "user", c.userName(), "dropped", c.dropped.Load())
	}
	return true
}

func (l *Limits) drop(cl *mqtt.Client, c *clientHeld, held int64) {
	c.dropped.Add(1)
	l.drops.Add(1)
	l.dmu.Lock()
	l.dropsUser[c.userName()]++
	l.dmu.Unlock()
	if c.dropping.CompareAndSwap(false, true) {
		now := time.Now().UnixNano()
		if now-c.lastNotic.Load() > int64(10*time.Second) {
			c.lastNotic.Store(now)
			l.log.Warn("local client too slow: dropping messages for it", "client", cl.ID, "user", c.userName(),
				"held_bytes", held, "client_queue_bytes", l.PerClient, "all_clients_bytes", l.held.Load(), "queue_bytes", l.Total)
		}
	}
}

func (l *Limits) release(c *clientHeld, queued *atomic.Int64, n int64) {
	if v := queued.Add(-n); v < 0 {
		// Retained deliveries are written without being queued: never
		// count below zero.
		queued.Add(-v)
		n += v
	}
	l.held.Add(-n)
}

// OnPacketSent: a QoS 0 message left the queue (QoS>0 ones were moved to
// unacknowledged in OnQosPublish, before they were queued).
func (l *Limits) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos > 0 || cl.Net.Inline {
		return
	}
	c := l.client(cl)
	l.release(c, &c.queued, heldSize(&pk))
}

// OnQosPublish runs when the library stores a QoS>0 message in a client's
// in-flight window, right after admit and before the message is queued
// (or on a resend): its bytes count as unacknowledged from now until the
// acknowledgement, which cannot overtake this. Inbound QoS>0 packet ids
// are marked so their completion does not release an outbound message.
func (l *Limits) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if cl.Net.Inline {
		return
	}
	c := l.client(cl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if pk.FixedHeader.Type != packets.Publish {
		c.inbound[pk.PacketID] = true
		return
	}
	size := heldSize(&pk)
	if old, ok := c.unacked[pk.PacketID]; ok {
		c.unackedN -= old
		l.held.Add(-old)
	}
	if resends == 0 {
		l.release(c, &c.queued, size) // admitted as queued a moment ago
	}
	c.unacked[pk.PacketID] = size
	c.unackedN += size
	l.held.Add(size)
}

func (l *Limits) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { l.acked(cl, pk.PacketID) }
func (l *Limits) OnQosDropped(cl *mqtt.Client, pk packets.Packet)  { l.acked(cl, pk.PacketID) }

func (l *Limits) acked(cl *mqtt.Client, id uint16) {
	if cl.Net.Inline {
		return
	}
	c := l.client(cl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inbound[id] {
		delete(c.inbound, id)
		return
	}
	if n, ok := c.unacked[id]; ok {
		delete(c.unacked, id)
		c.unackedN -= n
		l.held.Add(-n)
	}
}

// OnPublishDropped: the library's own queue was full; undo the admit.
func (l *Limits) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	c := l.client(cl)
	l.release(c, &c.queued, heldSize(&pk))
	l.drop(cl, c, c.queued.Load())
}

// OnSessionEstablished: a new connection starts with an empty queue (a
// taken-over session's queue went with the old connection).
func (l *Limits) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	c := l.client(cl)
	c.setUser(cl)
	l.release(c, &c.queued, c.queued.Load())
}

func (l *Limits) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline {
		return
	}
	l.cmu.Lock()
	c := l.clients[cl.ID]
	if expire {
		delete(l.clients, cl.ID)
	}
	l.cmu.Unlock()
	if c == nil {
		return
	}
	l.release(c, &c.queued, c.queued.Load())
	if expire {
		c.mu.Lock()
		l.held.Add(-c.unackedN)
		c.unackedN = 0
		clear(c.unacked)
		c.mu.Unlock()
	}
}

func (l *Limits) OnClientExpired(cl *mqtt.Client) {
	l.cmu.Lock()
	c := l.clients[cl.ID]
	delete(l.clients, cl.ID)
	l.cmu.Unlock()
	if c != nil {
		c.mu.Lock()
		l.held.Add(-c.unackedN)
		c.unackedN = 0
		c.mu.Unlock()
	}
}

// HeldStats are the byte budget's figures.
type HeldStats struct {
	HeldBytes     int64             // held for all clients now
	Dropped       uint64            // messages not queued because of a byte or in-flight bound
	DroppedByUser map[string]uint64 // by user name; "" is anonymous
	Dropping      int               // clients dropping now
}

func (l *Limits) stats() HeldStats {
	s := HeldStats{HeldBytes: l.held.Load(), Dropped: l.drops.Load(), DroppedByUser: map[string]uint64{}}
	l.dmu.Lock()
	for u, n := range l.dropsUser {
		s.DroppedByUser[u] = n
	}
	l.dmu.Unlock()
	l.cmu.Lock()
	for _, c := range l.clients {
		if c.dropping.Load() {
			s.Dropping++
		}
	}
	l.cmu.Unlock()
	return s
}

// heldBy returns what is held for client id (tests).
func (l *Limits) heldBy(id string) int64 {
	l.cmu.Lock()
	c := l.clients[id]
	l.cmu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued.Load() + c.unackedN
}
