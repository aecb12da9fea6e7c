//go:build soak

package northbound

// The long variants of the fault tests, with edged's real defaults
// (reconnect backoff 500ms–10s, ack_timeout 10s, keepalive 30s): `make
// soak` (SOAKFLAGS="-soak.outage=1h -soak.cycles=1" for hour-long
// outages). Each kind of fault is repeated; the figures are logged.

import (
	"encoding/json"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/northbound/defaults"
)

var (
	soakOutage = flag.Duration("soak.outage", 30*time.Second, "how long each outage lasts")
	soakCycles = flag.Int("soak.cycles", 2, "outages per kind of fault")
	soakKinds  = flag.String("soak.kinds", "cut,blackhole,noacks,reset", "kinds of fault")
)

func TestSoakOutages(t *testing.T) {
	for _, kind := range splitComma(*soakKinds) {
		t.Run(kind, func(t *testing.T) { soakOutages(t, kind) })
	}
}

func splitComma(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func soakOutages(t *testing.T, kind string) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	status := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
	tu := startTestUplink(t, mq, uplinkSetup{addr: proxy.Addr(), keepAlive: 30 * time.Second,
		backoffMin: defaults.BackoffMin, backoffMax: defaults.BackoffMax, window: 100})
	for tu.uplink.Stats().Connects < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	var mu sync.Mutex
	seq := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 20 messages a second, each with its publish time
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			publishSeq(t, tu.local, "a", seq)
			seq++
			mu.Unlock()
		}
	}()
	type cycle struct {
		attempts          int64
		reconnect, newLag time.Duration
		firstNew          int
		restored          time.Time
	}
	var cycles []cycle
	for range *soakCycles {
		time.Sleep(5 * time.Second)
		before := tu.uplink.Stats().Connects
		acc := proxy.Attempts()
		switch kind {
		case "cut":
			proxy.Cut()
		case "blackhole":
			proxy.Blackhole()
		case "noacks":
			proxy.StopAcks()
		case "reset":
			// a reset every second: a flapping link
		}
		end := time.Now().Add(*soakOutage)
		for time.Now().Before(end) {
			if kind == "reset" {
				proxy.Reset()
			}
			time.Sleep(time.Second)
		}
		c := cycle{attempts: proxy.Attempts() - acc}
		proxy.Restore()
		mu.Lock()
		c.restored, c.firstNew = time.Now(), seq
		mu.Unlock()
		for tu.uplink.Stats().Connects == before && time.Since(c.restored) < 2*time.Minute {
			time.Sleep(10 * time.Millisecond)
		}
		c.reconnect = time.Since(c.restored)
		cycles = append(cycles, c)
	}
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	want := map[string]int{"a": seq}
	msgs := sub.WaitFor(5*time.Minute, fmt.Sprintf("%d messages", seq), allArrived(want))
	dups := checkDelivery(t, msgs, want)
	arrived := map[int]time.Time{}
	var worst time.Duration
	for _, m := range msgs {
		var s sample
		if json.Unmarshal(m.Payload, &s) != nil {
			continue
		}
		if _, ok := arrived[s.Seq]; !ok {
			arrived[s.Seq] = m.At
			worst = max(worst, m.At.Sub(time.UnixMilli(s.TS)))
		}
	}
	st := tu.uplink.Stats()
	for i, c := range cycles {
		lag := arrived[c.firstNew].Sub(c.restored)
		t.Logf("%s outage %d (%s): %d connect attempts during it; reconnected %s after the path was back; the first message published then arrived %s after",
			kind, i+1, *soakOutage, c.attempts, c.reconnect.Round(time.Millisecond), lag.Round(time.Millisecond))
	}
	t.Logf("%s: %d messages, %d duplicates, worst lateness %s, connects %d, ack timeouts %d, status online %d / offline %d",
		kind, seq, dups, worst.Round(time.Millisecond), st.Connects, st.AckTimeouts, statusCount(status, "online"), statusCount(status, "offline"))
}
