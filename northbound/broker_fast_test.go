package northbound

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mqtttest"
)

// edged's own publishes reach the in-process subscribers exactly once
// whether or not a network client subscribes, and while none does they
// do not go through the library at all (no topic-index scan, no maps per
// message: BenchmarkBrokerPublishInline).
func TestBrokerOwnPublishFastPath(t *testing.T) {
	b := startBroker(t)
	var mu sync.Mutex
	got := map[string]int{}
	if err := b.Subscribe("plant/#", 7, func(topic string, payload []byte, retained bool) {
		mu.Lock()
		got[topic+"="+string(payload)]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	var other atomic.Int64
	if err := b.Subscribe("other/+", 8, func(string, []byte, bool) { other.Add(1) }); err != nil {
		t.Fatal(err)
	}
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return got[k] }
	received := func() int64 { return atomic.LoadInt64(&b.srv.Info.MessagesReceived) }

	r0 := received()
	if err := b.Publish("plant/a", []byte("1"), false, 0); err != nil {
		t.Fatal(err)
	}
	if n := count("plant/a=1"); n != 1 {
		t.Fatalf("in-process handler got plant/a %d times, want 1", n)
	}
	if other.Load() != 0 {
		t.Fatal("a handler of another filter got plant/a")
	}
	if r := received() - r0; r != 0 {
		t.Fatalf("with no network subscription the library handled %d messages, want 0 (the fast path)", r)
	}

	sub := mqtttest.Subscribe(t, b.Addr(), "plant/#")
	if err := b.Publish("plant/a", []byte("2"), false, 0); err != nil {
		t.Fatal(err)
	}
	sub.WaitTopic(10*time.Second, "plant/a", nil)
	if n := count("plant/a=2"); n != 1 {
		t.Fatalf("with a network subscriber the in-process handler got it %d times, want 1", n)
	}

	// Unsubscribed: the handler gets nothing more (the client's
	// subscription keeps the publishes on the library's path).
	if err := b.Unsubscribe("plant/#", 7); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("plant/a", []byte("3"), false, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("other/x", []byte("4"), false, 0); err != nil {
		t.Fatal(err)
	}
	if n := count("plant/a=3"); n != 0 || other.Load() != 1 {
		t.Fatalf("after Unsubscribe: plant/a delivered %d times (want 0), other/x %d (want 1)", n, other.Load())
	}
}
