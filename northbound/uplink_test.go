package northbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	addr        string // host:port of the cloud broker's TLS listener (or a proxy)
	protocol    string // "5" (default) or "3.1.1"
	scheme      string // "mqtts" (default) or "wss"
	dir         string // buffer directory; default a temp dir
	replayRate  float64
	replayOrder ReplayOrder
	window      int
	maxBytes    int64
	// Fault tests: zero values keep the defaults of the other tests.
	keepAlive, dialTimeout, ackTimeout time.Duration
	backoffMin, backoffMax             time.Duration
	wrapReader                         func(entryReader) entryReader
	logger                             *slog.Logger
	// publisher, when set, changes the publisher's config.
	publisher func(*PublisherConfig)
	plain     bool // UplinkOptions.PlainPayloads
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
	if s.keepAlive != 0 {
		pc.KeepAlive = s.keepAlive
	}
	pc.DialTimeout = s.dialTimeout
	if s.publisher != nil {
		s.publisher(&pc)
	}
	if s.backoffMin == 0 {
		s.backoffMin, s.backoffMax = 50*time.Millisecond, 500*time.Millisecond
	}
	o := UplinkOptions{
		Name: "cloud", Publisher: newTestPublisher(s.protocol, pc), Queue: q,
		Filters: []string{"edged/#"}, StatusTopic: "edged/gw/status", Skip: []string{"edged/gw/status"},
		ReplayRate: s.replayRate, ReplayOrder: s.replayOrder, BackoffMin: s.backoffMin, BackoffMax: s.backoffMax,
		AckTimeout: s.ackTimeout, Logger: s.logger, PlainPayloads: s.plain,
	}
	if s.wrapReader != nil {
		o.newReader = func() entryReader { return s.wrapReader(q.NewReader()) }
	}
	u := NewUplink(o)
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
	const cuts = 3
	run := runOutages(t, tu, proxy, []string{"a", "b", "c", "d"}, cuts, 700*time.Millisecond, 1500*time.Millisecond)
	msgs := sub.WaitFor(60*time.Second, fmt.Sprintf("%d messages on each of %d tags", run.produced, len(run.want)), allArrived(run.want))
	dups := checkDelivery(t, msgs, run.want)
	checkBacklogMarked(t, msgs, run.backlog)
	hist := 0
	for _, m := range msgs {
		if strings.Contains(string(m.Payload), `"hist":true`) {
			hist++
		}
	}
	st := tu.uplink.Stats()
	t.Logf("produced %d per tag, received %d, duplicates %d, historical %d, connects %d", run.produced, len(msgs), dups, hist, st.Connects)
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

// TestUplinkReplayOrder: the outage scenario with replay_order "strict"
// and "interleave". Strict: every tag reaches the cloud in the order it was
// published, historical and live together (duplicates of resent messages
// aside), and the backlog is marked historical. Interleave: the same
// scenario shows live values overtaking older historical ones, which is
// what strict exists to prevent.
func TestUplinkReplayOrder(t *testing.T) {
	for _, order := range []ReplayOrder{ReplayStrict, ReplayInterleave} {
		t.Run(string(order), func(t *testing.T) {
			t.Parallel()
			mq := mosquittotest.Start(t, mosquittotest.Options{})
			proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
			sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
			const window = 32
			// The backlog of an outage (~2,000 messages a second of it)
			// takes a good part of a second to replay: plenty of time for
			// live messages to overtake it where the order allows.
			tu := startTestUplink(t, mq, uplinkSetup{addr: proxy.Addr(), replayRate: 5000, replayOrder: order, window: window})
			const cuts = 2
			run := runOutages(t, tu, proxy, []string{"a", "b", "c", "d"}, cuts, 500*time.Millisecond, time.Second)
			msgs := sub.WaitFor(30*time.Second, fmt.Sprintf("%d messages on each of %d tags", run.produced, len(run.want)), allArrived(run.want))
			dups := checkDelivery(t, msgs, run.want)
			checkBacklogMarked(t, msgs, run.backlog)
			overtaken, example := overtakes(t, msgs)
			t.Logf("produced %d per tag, received %d, duplicates %d, backlog %d per tag, overtaken %d",
				run.produced, len(msgs), dups, len(run.backlog), overtaken)
			if dups > window*cuts {
				t.Errorf("%d duplicates, more than the window (%d) per cut (%d)", dups, window, cuts)
			}
			if len(run.backlog) == 0 {
				t.Fatalf("no message was published during the %d outages", cuts)
			}
			switch order {
			case ReplayStrict:
				if overtaken > 0 {
					t.Errorf("%d messages arrived after a newer one of their tag, first: %s", overtaken, example)
				}
			case ReplayInterleave:
				if overtaken == 0 {
					t.Errorf("no live message overtook a historical one: the scenario does not tell the orders apart")
				}
			}
		})
	}
}

// outageRun is what runOutages published.
type outageRun struct {
	produced int            // sequence numbers 0 to produced-1, on every tag
	want     map[string]int // produced, by tag (for allArrived, checkDelivery)
	// backlog holds the sequence numbers published while the path was cut
	// and before the uplink connected again: they can reach the cloud only
	// replayed, so their first arrival must be marked historical.
	backlog map[int]bool
}

// runOutages publishes a sequence number on every tag each 2 ms (~500 per
// second per tag) while it cuts the path to the cloud broker through proxy
// cuts times: each time it lets the uplink send live data for live, cuts
// for down, restores and waits until the uplink is connected again. It
// stops publishing live after the last reconnect.
func runOutages(t *testing.T, tu *testUplink, proxy *mosquittotest.Proxy, tags []string, cuts int, live, down time.Duration) outageRun {
	t.Helper()
	run := outageRun{want: map[string]int{}, backlog: map[int]bool{}}
	// outage is the Connects count of the session the current cut ended,
	// stored once the cut is done; 0 before the first cut.
	var outage atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				run.produced = seq
				return
			case <-tick.C:
			}
			cut := outage.Load()
			for _, tag := range tags {
				publishSeq(t, tu.local, tag, seq)
			}
			// Appended after the cut, and the next session had not
			// counted itself (it reads its backlog boundary after that):
			// this seq is in its backlog.
			if cut != 0 && tu.uplink.Stats().Connects == cut {
				run.backlog[seq] = true
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
			close(stop)
			wg.Wait()
			t.Fatalf("uplink connected %d times, want %d", c, n)
		}
	}
	waitConnects(1) // the first cut must interrupt a session, not the first connect
	for range cuts {
		// Each cut must be an outage of its own: wait until the uplink is
		// back (its backoff may have grown during the previous cut) and has
		// sent live data for a while.
		before := tu.uplink.Stats().Connects
		time.Sleep(live)
		proxy.Cut()
		outage.Store(before)
		time.Sleep(down)
		proxy.Restore()
		waitConnects(before + 1)
	}
	time.Sleep(live)
	close(stop)
	wg.Wait()
	for _, tag := range tags {
		run.want[tag] = run.produced
	}
	return run
}

// firstArrivals calls fn with each tag's messages in arrival order, each
// sequence number once (resent duplicates left out).
func firstArrivals(t *testing.T, msgs []mqtttest.Message, fn func(tag string, s sample)) {
	t.Helper()
	seen := map[string]map[int]bool{}
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
		}
		if !seen[tag][s.Seq] {
			seen[tag][s.Seq] = true
			fn(tag, s)
		}
	}
}

// checkBacklogMarked checks that the first arrival of each backlog
// sequence number, on every tag, is marked historical.
func checkBacklogMarked(t *testing.T, msgs []mqtttest.Message, backlog map[int]bool) {
	t.Helper()
	unmarked := 0
	firstArrivals(t, msgs, func(tag string, s sample) {
		if backlog[s.Seq] && !s.Hist {
			if unmarked == 0 {
				t.Errorf("tag %s: seq %d was published during an outage but arrived unmarked", tag, s.Seq)
			}
			unmarked++
		}
	})
	if unmarked > 1 {
		t.Errorf("%d backlog messages in all arrived unmarked", unmarked)
	}
}

// overtakes counts the messages that first arrived after a newer message
// of their tag, and describes the first.
func overtakes(t *testing.T, msgs []mqtttest.Message) (n int, example string) {
	t.Helper()
	newest := map[string]sample{}
	firstArrivals(t, msgs, func(tag string, s sample) {
		last, ok := newest[tag]
		if !ok || s.Seq > last.Seq {
			newest[tag] = s
			return
		}
		if n == 0 {
			example = fmt.Sprintf("tag %s: seq %d (hist=%v) after seq %d (hist=%v)", tag, s.Seq, s.Hist, last.Seq, last.Hist)
		}
		n++
	})
	return n, example
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
			err = p.Connect(ctx, func(uint64, byte) {})
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

// TestFirstConnectIsNotAnOutage: what is published in the moments between
// an uplink's start and its first connection is live, not a replay; what
// a previous run left in the buffer is. Before, every start sent its first
// messages marked historical (issue 13).
func TestFirstConnectIsNotAnOutage(t *testing.T) {
	for _, protocol := range []string{"5", "3.1.1"} {
		t.Run(protocol, func(t *testing.T) {
			mq := mosquittotest.Start(t, mosquittotest.Options{})
			dir := filepath.Join(t.TempDir(), "buffer")
			q, err := buffer.Open(buffer.Options{Dir: dir, MemTableSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 { // left undelivered by a previous run
				q.Append("edged/gw/dev/old", fmt.Appendf(nil, `{"seq":%d,"ts":1}`, i))
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
			tu := startTestUplink(t, mq, uplinkSetup{addr: mq.TLSAddr(), protocol: protocol, dir: dir})
			for i := range 50 { // published while the first connection comes up
				publishSeq(t, tu.local, "new", i)
			}
			want := map[string]int{"old": 20, "new": 50}
			msgs := sub.WaitFor(10*time.Second, "every message", allArrived(want))
			checkDelivery(t, msgs, want)
			for _, m := range msgs {
				hist := strings.Contains(string(m.Payload), `"hist":true`)
				switch {
				case m.Topic == "edged/gw/dev/new" && hist:
					t.Fatalf("message published after start marked historical: %s", m.Payload)
				case m.Topic == "edged/gw/dev/old" && !hist:
					t.Fatalf("message of a previous run not marked historical: %s", m.Payload)
				}
			}
		})
	}
}

// TestPlainPayloadsAreReplayedUnchanged: an uplink of bare values (format
// = "value") replays its backlog without writing "hist":true into a value
// that happens to be a JSON object.
func TestPlainPayloadsAreReplayedUnchanged(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	dir := filepath.Join(t.TempDir(), "buffer")
	q, err := buffer.Open(buffer.Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	q.Append("edged/gw/dev/obj", []byte(`{"x":1}`)) // left by a previous run: replayed
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	startTestUplink(t, mq, uplinkSetup{addr: mq.TLSAddr(), dir: dir, plain: true})
	if m := sub.WaitTopic(10*time.Second, "edged/gw/dev/obj", nil); string(m.Payload) != `{"x":1}` {
		t.Fatalf("replayed %s, want the value unchanged", m.Payload)
	}
}
