package northbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
)

// testUplink is a local broker bridged to a cloud broker at addr.
type testUplink struct {
	local  *Broker
	uplink *Uplink
	queue  *buffer.Queue
}

type uplinkSetup struct {
	addr       string // host:port of the cloud broker's TLS listener (or a proxy)
	protocol   string // "5" (default) or "3.1.1"
	scheme     string // "mqtts" (default) or "wss"
	dir        string // buffer directory; default a temp dir
	replayRate float64
	window     int
	maxBytes   int64
}

func tlsPublisherConfig(t *testing.T, mq *mosquittotest.Broker, addr string, window int) PublisherConfig {
	t.Helper()
	tc, err := NewTLSConfig(TLSOptions{CAFile: mq.CAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if window == 0 {
		window = 64
	}
	return PublisherConfig{
		Name: "cloud", URL: &url.URL{Scheme: "mqtts", Host: addr}, ClientID: "edged-test-gw", KeepAlive: 5 * time.Second,
		Window: window, TLS: tc, WillTopic: "edged/gw/status", WillPayload: []byte("offline"),
	}
}

// newTestPublisher is the Publisher for protocol ("5" or "3.1.1").
func newTestPublisher(protocol string, cfg PublisherConfig) Publisher {
	if protocol == "3.1.1" {
		return NewMQTT311(cfg)
	}
	return NewMQTT5(cfg)
}

func startTestUplink(t *testing.T, mq *mosquittotest.Broker, s uplinkSetup) *testUplink {
	t.Helper()
	if s.dir == "" {
		s.dir = filepath.Join(t.TempDir(), "buffer")
	}
	q, err := buffer.Open(buffer.Options{Dir: s.dir, MemTableSize: 1 << 20, MaxBytes: s.maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	local := NewBroker(BrokerOptions{})
	if err := local.Start(); err != nil {
		t.Fatal(err)
	}
	pc := tlsPublisherConfig(t, mq, s.addr, s.window)
	if s.scheme != "" {
		pc.URL.Scheme = s.scheme
	}
	u := NewUplink(UplinkOptions{
		Name: "cloud", Publisher: newTestPublisher(s.protocol, pc), Queue: q,
		Filters: []string{"edged/#"}, StatusTopic: "edged/gw/status", Skip: []string{"edged/gw/status"},
		ReplayRate: s.replayRate, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err := u.Attach(local.Subscribe, 1); err != nil {
		t.Fatal(err)
	}
	u.Start()
	tu := &testUplink{local: local, uplink: u, queue: q}
	t.Cleanup(func() { tu.stop(t) })
	return tu
}

func (tu *testUplink) stop(t *testing.T) {
	if tu.uplink == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tu.uplink.Stop(ctx); err != nil {
		t.Errorf("uplink stop: %v", err)
	}
	_ = tu.local.Stop()
	tu.uplink = nil
}

// sample is the test payload: a sequence number per tag.
type sample struct {
	Seq  int   `json:"seq"`
	TS   int64 `json:"ts"`
	Hist bool  `json:"hist"`
}

func publishSeq(t *testing.T, b *Broker, tag string, seq int) {
	t.Helper()
	p := fmt.Appendf(nil, `{"seq":%d,"ts":%d}`, seq, time.Now().UnixMilli())
	if err := b.Publish("edged/gw/dev/"+tag, p, true, 0); err != nil {
		t.Fatal(err)
	}
}

// delivery checks what a cloud subscriber got on each tag: every sequence
// number below want[tag], the live and the historical stream each in
// order, and it returns the number of duplicates.
func checkDelivery(t *testing.T, msgs []mqtttest.Message, want map[string]int) (dups int) {
	t.Helper()
	seen := map[string]map[int]bool{}
	lastLive, lastHist := map[string]int{}, map[string]int{}
	for _, m := range msgs {
		tag, ok := strings.CutPrefix(m.Topic, "edged/gw/dev/")
		if !ok {
			continue
		}
		var s sample
		if err := json.Unmarshal(m.Payload, &s); err != nil {
			t.Fatalf("payload %q: %v", m.Payload, err)
		}
		if seen[tag] == nil {
			seen[tag] = map[int]bool{}
			lastLive[tag], lastHist[tag] = -1, -1
		}
		if seen[tag][s.Seq] {
			dups++
			continue
		}
		seen[tag][s.Seq] = true
		last := lastLive
		if s.Hist {
			last = lastHist
		}
		if s.Seq < last[tag] {
			t.Errorf("tag %s: seq %d (hist=%v) after %d: out of order", tag, s.Seq, s.Hist, last[tag])
		}
		last[tag] = s.Seq
	}
	for tag, n := range want {
		var missing []int
		for i := range n {
			if !seen[tag][i] {
				missing = append(missing, i)
			}
		}
		if len(missing) > 0 {
			t.Errorf("tag %s: %d of %d sequence numbers never arrived, first %v", tag, len(missing), n, missing[:min(10, len(missing))])
		}
	}
	return dups
}

func allArrived(want map[string]int) func([]mqtttest.Message) bool {
	return func(ms []mqtttest.Message) bool {
		got := map[string]map[int]bool{}
		for _, m := range ms {
			tag, ok := strings.CutPrefix(m.Topic, "edged/gw/dev/")
			if !ok {
				continue
			}
			var s sample
			if json.Unmarshal(m.Payload, &s) != nil {
				continue
			}
			if got[tag] == nil {
				got[tag] = map[int]bool{}
			}
			got[tag][s.Seq] = true
		}
		for tag, n := range want {
			if len(got[tag]) < n {
				return false
			}
		}
		return true
	}
}

// TestUplinkDeliversOverMTLS: values published locally reach mosquitto
// over TLS with a client certificate, in order, with the retained status
// online and, after Stop, offline; for MQTT 5 and 3.1.1, over mqtts:// and
// over wss:// (MQTT over WebSocket over TLS).
func TestUplinkDeliversOverMTLS(t *testing.T) {
	for _, c := range []struct{ protocol, scheme string }{
		{"5", "mqtts"}, {"3.1.1", "mqtts"}, {"5", "wss"}, {"3.1.1", "wss"},
	} {
		t.Run(c.protocol+"/"+c.scheme, func(t *testing.T) {
			mq := mosquittotest.Start(t, mosquittotest.Options{WebSockets: c.scheme == "wss"})
			addr := mq.TLSAddr()
			if c.scheme == "wss" {
				addr = mq.WSSAddr()
			}
			sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/#")
			tu := startTestUplink(t, mq, uplinkSetup{addr: addr, protocol: c.protocol, scheme: c.scheme})
			sub.WaitTopic(10*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
			want := map[string]int{"a": 200, "b": 200}
			for i := range 200 {
				publishSeq(t, tu.local, "a", i)
				publishSeq(t, tu.local, "b", i)
			}
			msgs := sub.WaitFor(10*time.Second, "every message", allArrived(want))
			if dups := checkDelivery(t, msgs, want); dups != 0 {
				t.Errorf("%d duplicates without any outage", dups)
			}
			for _, m := range msgs {
				if strings.Contains(string(m.Payload), "hist") {
					t.Fatalf("live message marked historical: %s", m.Payload)
				}
			}
			tu.stop(t)
			sub.WaitTopic(10*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "offline" })
			if st := tu.queue.Stats(); st.Depth != 0 {
				t.Errorf("buffer holds %d after every message was acknowledged", st.Depth)
			}
		})
	}
}

// TestUplinkWill: when the path to the cloud broker breaks, the broker
// publishes the connection's will (retained "offline"); after the path is
// back the uplink announces "online" again.
func TestUplinkWill(t *testing.T) {
	for _, protocol := range []string{"5", "3.1.1"} {
		t.Run(protocol, func(t *testing.T) {
			mq := mosquittotest.Start(t, mosquittotest.Options{})
			proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
			sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
			startTestUplink(t, mq, uplinkSetup{addr: proxy.Addr(), protocol: protocol})
			status := func(want string) func([]mqtttest.Message) bool {
				return func(ms []mqtttest.Message) bool {
					return len(ms) > 0 && string(ms[len(ms)-1].Payload) == want
				}
			}
			sub.WaitFor(10*time.Second, "online", status("online"))
			proxy.Cut()
			sub.WaitFor(10*time.Second, "offline (the will)", status("offline"))
			proxy.Restore()
			sub.WaitFor(10*time.Second, "online again", status("online"))
		})
	}
}

// TestUplinkOutages: a producer runs continuously while the path to the
// cloud broker is cut three times; the cloud sees every sequence number of
// every tag, each stream (live, historical) in order, duplicates bounded by
// the window per cut, replayed messages marked.
func TestUplinkOutages(t *testing.T) {
	for _, protocol := range []string{"5", "3.1.1"} {
		t.Run(protocol, func(t *testing.T) { testUplinkOutages(t, protocol) })
	}
}

func testUplinkOutages(t *testing.T, protocol string) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	const window = 32
	tu := startTestUplink(t, mq, uplinkSetup{addr: proxy.Addr(), protocol: protocol, replayRate: 5000, window: window})
	tags := []string{"a", "b", "c", "d"}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var produced int
	wg.Add(1)
	go func() { // ~2000 messages/s in total
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				produced = seq
				return
			case <-tick.C:
			}
			for _, tag := range tags {
				publishSeq(t, tu.local, tag, seq)
			}
		}
	}()
	waitConnects := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for tu.uplink.Stats().Connects < n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if c := tu.uplink.Stats().Connects; c < n {
			t.Fatalf("uplink connected %d times, want %d", c, n)
		}
	}
	waitConnects(1) // the first cut must interrupt a session, not the first connect
	const cuts = 3
	for range cuts {
		// Each cut must be an outage of its own: wait until the uplink is
		// back (its backoff may have grown during the previous cut) and has
		// sent live data for a while.
		before := tu.uplink.Stats().Connects
		time.Sleep(700 * time.Millisecond)
		proxy.Cut()
		time.Sleep(1500 * time.Millisecond)
		proxy.Restore()
		waitConnects(before + 1)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	want := map[string]int{}
	for _, tag := range tags {
		want[tag] = produced
	}
	msgs := sub.WaitFor(60*time.Second, fmt.Sprintf("%d messages on each of %d tags", produced, len(tags)), allArrived(want))
	dups := checkDelivery(t, msgs, want)
	hist := 0
	for _, m := range msgs {
		if strings.Contains(string(m.Payload), `"hist":true`) {
			hist++
		}
	}
	st := tu.uplink.Stats()
	t.Logf("produced %d per tag, received %d, duplicates %d, historical %d, connects %d", produced, len(msgs), dups, hist, st.Connects)
	if dups > window*cuts {
		t.Errorf("%d duplicates, more than the window (%d) per cut (%d)", dups, window, cuts)
	}
	if hist == 0 {
		t.Errorf("no message was marked historical after %d outages", cuts)
	}
	if st.Connects < cuts+1 {
		t.Errorf("connected %d times, want at least %d", st.Connects, cuts+1)
	}
}

// TestUplinkTLSRefusals: a wrong CA, a host name that is not in the
// certificate, an expired certificate and a missing client certificate are
// each refused with an error that says which, and nothing is sent in
// plaintext instead; for both protocols, over mqtts:// and wss://.
func TestUplinkTLSRefusals(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{WebSockets: true})
	expired := mosquittotest.Start(t, mosquittotest.Options{ServerExpired: true})
	cases := []struct {
		name     string
		mq       *mosquittotest.Broker
		tls      TLSOptions
		reason   string
		protocol string // default "5"
		scheme   string // default "mqtts"
	}{
		{"wrong CA", mq, TLSOptions{CAFile: mq.OtherCAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey}, "unknown authority", "", ""},
		{"hostname mismatch", mq, TLSOptions{CAFile: mq.CAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey, ServerName: "cloud.example.com"}, "hostname mismatch", "", ""},
		{"expired", expired, TLSOptions{CAFile: expired.CAFile, CertFile: expired.ClientCert, KeyFile: expired.ClientKey}, "expired", "", ""},
		{"no client certificate", mq, TLSOptions{CAFile: mq.CAFile}, "client certificate refused", "", ""},
		{"3.1.1 wrong CA", mq, TLSOptions{CAFile: mq.OtherCAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey}, "unknown authority", "3.1.1", ""},
		{"3.1.1 no client certificate", mq, TLSOptions{CAFile: mq.CAFile}, "client certificate refused", "3.1.1", ""},
		{"wss wrong CA", mq, TLSOptions{CAFile: mq.OtherCAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey}, "unknown authority", "5", "wss"},
		{"3.1.1 wss wrong CA", mq, TLSOptions{CAFile: mq.OtherCAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey}, "unknown authority", "3.1.1", "wss"},
		{"wss no client certificate", mq, TLSOptions{CAFile: mq.CAFile}, "client certificate refused", "5", "wss"},
		{"3.1.1 wss no client certificate", mq, TLSOptions{CAFile: mq.CAFile}, "client certificate refused", "3.1.1", "wss"},
		{"wss hostname mismatch", mq, TLSOptions{CAFile: mq.CAFile, CertFile: mq.ClientCert, KeyFile: mq.ClientKey, ServerName: "cloud.example.com"}, "hostname mismatch", "5", "wss"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc, err := NewTLSConfig(c.tls, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			u := &url.URL{Scheme: "mqtts", Host: c.mq.TLSAddr()}
			if c.scheme == "wss" {
				u = &url.URL{Scheme: "wss", Host: c.mq.WSSAddr()}
			}
			p := newTestPublisher(c.protocol, PublisherConfig{URL: u, ClientID: "x", KeepAlive: 5 * time.Second, Window: 8, TLS: tc})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = p.Connect(ctx, func(uint64) {})
			if err == nil {
				_ = p.Close()
				t.Fatal("connected")
			}
			var te *TLSError
			if !errors.As(err, &te) {
				t.Fatalf("error %v (%T) is not a TLSError", err, err)
			}
			if te.Reason != c.reason {
				t.Fatalf("reason %q, want %q: %v", te.Reason, c.reason, err)
			}
			t.Logf("%v", err)
		})
	}
}
