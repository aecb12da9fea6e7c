package northbound

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// flushHook tells when a given message has been written to the sockets of
// the clients that were subscribed to it, so that a last message (the
// gateway going offline) is not cut off by the broker closing. It costs one
// atomic load per packet sent while nobody waits.
type flushHook struct {
	mqtt.HookBase
	active atomic.Int32
	mu     sync.Mutex
	waits  map[*flushWait]struct{}
}

type flushWait struct {
	topic, payload string
	pending        map[string]struct{} // client ids still to receive it
	done           chan struct{}
}

func (h *flushHook) ID() string { return "edged-flush" }

func (h *flushHook) Provides(b byte) bool { return b == mqtt.OnPacketSent }

func (h *flushHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if h.active.Load() == 0 || pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waits {
		if w.topic != pk.TopicName || w.payload != string(pk.Payload) {
			continue
		}
		delete(w.pending, cl.ID)
		if len(w.pending) == 0 {
			h.drop(w)
		}
	}
}

func (h *flushHook) add(w *flushWait) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waits == nil {
		h.waits = map[*flushWait]struct{}{}
	}
	h.waits[w] = struct{}{}
	h.active.Add(1)
}

// drop removes a wait; h.mu must be held.
func (h *flushHook) drop(w *flushWait) {
	if _, ok := h.waits[w]; !ok {
		return
	}
	delete(h.waits, w)
	h.active.Add(-1)
	close(w.done)
}

// PublishFlush publishes like Publish, then waits (at most timeout) until
// the message has been written to every network client subscribed to topic
// at the time of the call. It reports whether all of them got it.
func (b *Broker) PublishFlush(topic string, payload []byte, retain bool, qos byte, timeout time.Duration) (bool, error) {
	w := &flushWait{topic: topic, payload: string(payload), pending: map[string]struct{}{}, done: make(chan struct{})}
	for id := range b.srv.Topics.Subscribers(topic).Subscriptions {
		if id != mqtt.InlineClientId {
			w.pending[id] = struct{}{}
		}
	}
	if len(w.pending) == 0 {
		return true, b.Publish(topic, payload, retain, qos)
	}
	b.flush.add(w)
	if err := b.Publish(topic, payload, retain, qos); err != nil {
		b.flush.mu.Lock()
		b.flush.drop(w)
		b.flush.mu.Unlock()
		return false, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true, nil
	case <-t.C:
		b.flush.mu.Lock()
		b.flush.drop(w)
		b.flush.mu.Unlock()
		return false, nil
	}
}
