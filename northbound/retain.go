package northbound

import (
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainStore keeps the last retained message of every topic edged itself
// publishes, instead of the library's topic index. Two reasons, both
// measured: the library reads a topic node's retained path without the lock
// its writer holds while it scans retained messages for a new wildcard
// subscription (a data race the race detector reports whenever a client
// subscribes while values are being published), and its per-publish retain
// copy cost ~15% of the CPU of a per-tag publish. Here an update copies into
// the topic's existing buffer (no allocation in steady state).
//
// New subscribers get the matching retained messages right after their
// SUBACK has been written (QoS 0, retain flag set), as a broker would. What
// they get is what was retained when the subscription was added; a topic
// published again since then is left out, because that newer message
// reaches the subscriber live. So a subscriber never sees a value twice
// because it subscribed while values were being published, and never an
// older retained copy after a newer live one.
type retainStore struct {
	mqtt.HookBase

	mu   sync.RWMutex
	msgs map[string]*retained
	ver  uint64 // updates so far, all topics: a deleted and re-set topic never repeats a version

	pmu     sync.Mutex
	pending map[string][]retainedMsg // client id → snapshot awaiting delivery after SUBACK
}

// retained is one topic's retained message; ver is the store's update
// count when it was set.
type retained struct {
	payload []byte
	ver     uint64
}

func newRetainStore() *retainStore {
	return &retainStore{msgs: map[string]*retained{}, pending: map[string][]retainedMsg{}}
}

// set stores payload as the retained message of topic; an empty payload
// deletes it, as in MQTT.
func (r *retainStore) set(topic string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(payload) == 0 {
		delete(r.msgs, topic)
		return
	}
	m := r.msgs[topic]
	if m == nil {
		m = new(retained)
		r.msgs[topic] = m
	}
	m.payload = append(m.payload[:0], payload...)
	r.ver++
	m.ver = r.ver
}

func (r *retainStore) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.msgs)
}

// get returns a copy of the retained message of topic.
func (r *retainStore) get(topic string) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.msgs[topic]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), m.payload...), true
}

func (r *retainStore) ID() string { return "edged-retain" }

func (r *retainStore) Provides(b byte) bool {
	return b == mqtt.OnSubscribed || b == mqtt.OnPacketSent || b == mqtt.OnDisconnect
}

// OnSubscribed runs once the granted filters are subscribed: it copies the
// retained messages they match, to be sent once the SUBACK is on the wire
// (OnPacketSent).
func (r *retainStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	var snap []retainedMsg
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		if mqtt.IsSharedFilter(sub.Filter) || sub.RetainHandling == 2 {
			continue // no retained messages for shared subscriptions or when the client asks for none
		}
		snap = r.appendMatching(snap, sub.Filter)
	}
	if len(snap) == 0 {
		return
	}
	r.pmu.Lock()
	r.pending[cl.ID] = append(r.pending[cl.ID], snap...)
	r.pmu.Unlock()
}

func (r *retainStore) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Suback {
		return
	}
	r.pmu.Lock()
	snap := r.pending[cl.ID]
	delete(r.pending, cl.ID)
	r.pmu.Unlock()
	for _, m := range snap {
		if !r.unchanged(m) {
			continue // published again since the snapshot: the subscriber gets that one live
		}
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   m.topic,
			Payload:     m.payload,
		})
	}
}

// unchanged reports whether m is still the retained message of its topic.
func (r *retainStore) unchanged(m retainedMsg) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cur, ok := r.msgs[m.topic]
	return ok && cur.ver == m.ver
}

func (r *retainStore) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	r.pmu.Lock()
	delete(r.pending, cl.ID)
	r.pmu.Unlock()
}

type retainedMsg struct {
	topic   string
	payload []byte
	ver     uint64
}

// appendMatching appends copies of the retained messages whose topic
// matches filter.
func (r *retainStore) appendMatching(out []retainedMsg, filter string) []retainedMsg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for topic, m := range r.msgs {
		if matchFilter(filter, topic) {
			out = append(out, retainedMsg{topic, append([]byte(nil), m.payload...), m.ver})
		}
	}
	return out
}

// matchFilter reports whether an MQTT topic filter (with + and #) matches a
// topic name. Wildcards at the first level do not match topics starting with
// '$' [MQTT-4.7.2-1].
func matchFilter(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fmore && !tmore {
			return true
		}
		if !tmore {
			// "a/#" matches "a": the remaining filter is exactly "#".
			return fmore && frest == "#"
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
}
