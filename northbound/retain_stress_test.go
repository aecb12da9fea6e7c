package northbound

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mqtttest"
)

// A retained message reaches every new wildcard subscriber even while
// edged publishes live values under the same filter as fast as it can (the
// live messages race the SUBACK and the retained delivery that follows it).
func TestRetainedArrivesDuringLiveTraffic(t *testing.T) {
	b := startBroker(t)
	if err := b.Publish("e/g/status", []byte("online"), true, 1); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			_ = b.Publish(fmt.Sprintf("e/g/d/t%d", i%20), []byte(`{"v":1}`), false, 1)
		}
	}()
	t.Cleanup(func() { stop.Store(true); <-done })
	for i := range 50 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			sub := mqtttest.Subscribe(t, b.Addr(), "e/g/#")
			sub.WaitTopic(10*time.Second, "e/g/d/t1", nil)
			m := sub.WaitTopic(10*time.Second, "e/g/status", nil)
			if string(m.Payload) != "online" || !m.Retain {
				t.Fatalf("status %q retain=%v", m.Payload, m.Retain)
			}
		})
	}
}
