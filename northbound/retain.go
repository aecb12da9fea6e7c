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
// SUBACK has been written (QoS 0, retain flag set), as a broker would.
type retainStore struct {
	mqtt.HookBase

	mu   sync.RWMutex
	msgs map[string][]byte

	pmu     sync.Mutex
	pending map[string][]packets.Subscription // client id → filters awaiting retained delivery after SUBACK
}

func newRetainStore() *retainStore {
	return &retainStore{msgs: map[string][]byte{}, pending: map[string][]packets.Subscription{}}
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
	r.msgs[topic] = append(r.msgs[topic][:0], payload...)
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
	p, ok := r.msgs[topic]
	return append([]byte(nil), p...), ok
}

func (r *retainStore) ID() string { return "edged-retain" }

func (r *retainStore) Provides(b byte) bool {
	return b == mqtt.OnSubscribed || b == mqtt.OnPacketSent || b == mqtt.OnDisconnect
}

// OnSubscribed notes which granted filters want retained messages; they are
// sent once the SUBACK is on the wire (OnPacketSent).
func (r *retainStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	var subs []packets.Subscription
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		if mqtt.IsSharedFilter(sub.Filter) || sub.RetainHandling == 2 {
			continue // no retained messages for shared subscriptions or when the client asks for none
		}
		subs = append(subs, sub)
	}
	if len(subs) == 0 {
		return
	}
	r.pmu.Lock()
	r.pending[cl.ID] = append(r.pending[cl.ID], subs...)
	r.pmu.Unlock()
}

func (r *retainStore) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Suback {
		return
	}
	r.pmu.Lock()
	subs := r.pending[cl.ID]
	delete(r.pending, cl.ID)
	r.pmu.Unlock()
	for _, sub := range subs {
		for _, m := range r.matching(sub.Filter) {
			_ = cl.WritePacket(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
				TopicName:   m.topic,
				Payload:     m.payload,
			})
		}
	}
}

func (r *retainStore) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	r.pmu.Lock()
	delete(r.pending, cl.ID)
	r.pmu.Unlock()
}

type retainedMsg struct {
	topic   string
	payload []byte
}

// matching copies the retained messages whose topic matches filter.
func (r *retainStore) matching(filter string) []retainedMsg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []retainedMsg
	for topic, p := range r.msgs {
		if matchFilter(filter, topic) {
			out = append(out, retainedMsg{topic, append([]byte(nil), p...)})
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
