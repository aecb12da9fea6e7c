package northbound

// Fault injection for the uplink: a real mosquitto, reached through a
// proxy that resets, blackholes and mutes the path, or refusing a topic by
// ACL; failing buffer reads injected behind the reader interface. For each
// fault: no panic, no reconnect storm (connects counted at the proxy and by
// mosquitto, status publishes by a subscriber) and every message either
// delivered or counted as lost.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
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

// logCapture records every log line of an uplink.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count is how many lines contain s.
func (l *logCapture) count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// failingReader is a buffer reader whose reads fail while failing is set,
// as a damaged record would make them.
type failingReader struct {
	r       entryReader
	failing *atomic.Bool
	calls   *atomic.Int64
}

var errDamaged = errors.New("record is damaged (injected)")

func (f *failingReader) Read(from, to uint64, max int) ([]buffer.Entry, uint64, error) {
	if f.failing.Load() {
		f.calls.Add(1)
		return nil, from, errDamaged
	}
	return f.r.Read(from, to, max)
}

// backoffBound is the most connect attempts (or retries) a backoff between
// lo and hi allows in window: the doubling steps from lo to hi, then one
// per hi/2 at the least (the jitter's lower end), plus the first.
func backoffBound(lo, hi, window time.Duration) int {
	steps := 0
	for d := lo; d < hi; d *= 2 {
		steps++
	}
	return 1 + steps + int(window/(hi/2)) + 1
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusCount(sub *mqtttest.Subscriber, payload string) int {
	n := 0
	for _, m := range sub.On("edged/gw/status") {
		if string(m.Payload) == payload {
			n++
		}
	}
	return n
}

// TestFaultBufferReadFails: every buffer read fails for a while (a damaged
// record). The uplink keeps its one session (one connect at the proxy and
// at mosquitto, one "online", no "offline"), retries the reads with
// backoff (bounded count), logs the failure once and the recovery once,
// and delivers everything once the reads work again.
func TestFaultBufferReadFails(t *testing.T) {
	for _, protocol := range []string{"5", "3.1.1"} {
		t.Run(protocol, func(t *testing.T) {
			mq := mosquittotest.Start(t, mosquittotest.Options{})
			proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
			status := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
			sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
			var failing atomic.Bool
			var failed atomic.Int64
			var logs logCapture
			s := uplinkSetup{addr: proxy.Addr(), protocol: protocol, logger: logs.logger(),
				wrapReader: func(r entryReader) entryReader { return &failingReader{r: r, failing: &failing, calls: &failed} }}
			tu := startTestUplink(t, mq, s)
			status.WaitTopic(10*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
			for i := range 10 {
				publishSeq(t, tu.local, "a", i)
			}
			sub.WaitFor(10*time.Second, "the first 10", allArrived(map[string]int{"a": 10}))

			failing.Store(true)
			start := time.Now()
			const n = 110
			for i := 10; i < n; i++ {
				publishSeq(t, tu.local, "a", i)
				time.Sleep(20 * time.Millisecond)
			}
			deadline := time.Now().Add(10 * time.Second)
			for failed.Load() < 3 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			window := time.Since(start)
			st := tu.uplink.Stats()
			failing.Store(false)
			msgs := sub.WaitFor(20*time.Second, "every message after the reads recover", allArrived(map[string]int{"a": n}))
			checkDelivery(t, msgs, map[string]int{"a": n})

			bound := 2 * backoffBound(50*time.Millisecond, 500*time.Millisecond, window) // two streams
			t.Logf("%s of failing reads: %d read errors (bound %d), proxy connects %d, mosquitto connects %d, online %d, offline %d",
				window.Round(time.Millisecond), st.ReadErrors, bound, proxy.Accepted(), mq.Connects("edged-test-gw"), statusCount(status, "online"), statusCount(status, "offline"))
			if st.ReadErrors < 3 {
				t.Errorf("%d read errors counted, want at least the 3 injected", st.ReadErrors)
			}
			if int(st.ReadErrors) > bound {
				t.Errorf("%d read errors in %s: retried without backoff (bound %d)", st.ReadErrors, window, bound)
			}
			if got := proxy.Accepted(); got != 1 {
				t.Errorf("%d connections at the proxy, want 1: a failing read must not cost the session", got)
			}
			if got := mq.Connects("edged-test-gw"); got != 1 {
				t.Errorf("mosquitto saw %d sessions, want 1", got)
			}
			if on, off := statusCount(status, "online"), statusCount(status, "offline"); on != 1 || off != 0 {
				t.Errorf("status published %d× online and %d× offline, want once online and never offline", on, off)
			}
			if got := logs.count("buffer read failed"); got < 1 || got > 2 {
				t.Errorf("%d log lines about failing reads, want 1 (or one per stream)\n%s", got, logs.String())
			}
			if got := logs.count("buffer read recovered"); got < 1 {
				t.Errorf("no log line about the recovery\n%s", logs.String())
			}
		})
	}
}

// TestFaultFlappingLink: the path resets every 50 ms for 3 s, so every
// session ends at once. The reconnects follow the backoff (the count stays
// within what BackoffMin/BackoffMax allow in that time); after a session
// that stayed up, the next outage's backoff starts from BackoffMin again;
// everything published meanwhile arrives afterwards.
func TestFaultFlappingLink(t *testing.T) {
	for _, protocol := range []string{"5", "3.1.1"} {
		t.Run(protocol, func(t *testing.T) {
			mq := mosquittotest.Start(t, mosquittotest.Options{})
			proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
			status := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
			sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
			tu := startTestUplink(t, mq, uplinkSetup{addr: proxy.Addr(), protocol: protocol, replayRate: 5000})
			status.WaitTopic(10*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
			before := proxy.Accepted()
			start := time.Now()
			seq := 0
			for time.Since(start) < 3*time.Second {
				proxy.Reset()
				for range 5 {
					publishSeq(t, tu.local, "a", seq)
					seq++
					time.Sleep(10 * time.Millisecond)
				}
			}
			window := time.Since(start)
			attempts := int(proxy.Accepted() - before)
			bound := backoffBound(50*time.Millisecond, 500*time.Millisecond, window)
			// Then the link holds: once a session stayed up longer than
			// BackoffMax, the next outage starts again from BackoffMin.
			grown := tu.uplink.Stats().ReconnectDelay
			waitFor(t, 10*time.Second, "a session after the flapping", func() bool { return tu.uplink.Stats().State == "online" })
			c := tu.uplink.Stats().Connects
			time.Sleep(2 * 500 * time.Millisecond)
			if tu.uplink.Stats().Connects != c {
				t.Fatalf("the session did not stay up")
			}
			cutAt := proxy.Attempts()
			proxy.Cut()
			waitFor(t, 10*time.Second, "the outage noticed", func() bool { return tu.uplink.Stats().ReconnectDelay > 0 })
			// After k refused attempts the delay is at most BackoffMin·2^k
			// (k read after the delay: the bound can only loosen).
			d := tu.uplink.Stats().ReconnectDelay
			k := proxy.Attempts() - cutAt
			if limit := 50 * time.Millisecond << k; d > limit {
				t.Errorf("reconnect delay %s after a session that stayed up and %d refused attempts (%s while flapping): the backoff did not start again from BackoffMin (50ms; at most %s now)", d, k, grown, limit)
			}
			proxy.Restore()
			msgs := sub.WaitFor(30*time.Second, "every message after the link settles", allArrived(map[string]int{"a": seq}))
			checkDelivery(t, msgs, map[string]int{"a": seq})
			t.Logf("%d resets in %s: %d connects (bound %d), %d× online, %d× offline", window/(50*time.Millisecond), window.Round(time.Millisecond),
				attempts, bound, statusCount(status, "online"), statusCount(status, "offline"))
			if attempts > bound {
				t.Errorf("%d connects in %s of a flapping link: a reconnect storm (the backoff allows %d)", attempts, window, bound)
			}
			if on := statusCount(status, "online"); on > attempts+1 {
				t.Errorf("%d× online for %d connects", on, attempts)
			}
		})
	}
}

// TestFaultBlackhole: the path keeps TCP open but forwards nothing (a
// blackholed link) while data flows; keepalive is 30 s, so only the ack
// timeout (1 s) can notice it within the test. The uplink ends the session
// on the ack timeout, tries to connect no more often than the dial timeout
// and backoff allow, is at most BackoffMax away from a connect when the
// path is back, and then delivers everything, what went into the
// blackhole marked historical. How late the first live message arrives
// after the path is back is logged (a figure, not asserted).
func TestFaultBlackhole(t *testing.T) {
	for _, c := range []struct {
		protocol string
		stopAcks bool // only the broker's answers are lost
	}{{"5", false}, {"3.1.1", false}, {"5", true}, {"3.1.1", true}} {
		name := c.protocol + "/blackhole"
		if c.stopAcks {
			name = c.protocol + "/no-acks"
		}
		t.Run(name, func(t *testing.T) { testFaultBlackhole(t, c.protocol, c.stopAcks) })
	}
}

func testFaultBlackhole(t *testing.T, protocol string, stopAcks bool) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	status := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
	var logs logCapture
	const (
		backoffMax  = 500 * time.Millisecond
		dialTimeout = time.Second
		window      = 32
	)
	tu := startTestUplink(t, mq, uplinkSetup{addr: proxy.Addr(), protocol: protocol, window: window, replayRate: 5000,
		keepAlive: 30 * time.Second, ackTimeout: time.Second, dialTimeout: dialTimeout, backoffMax: backoffMax, backoffMin: 50 * time.Millisecond,
		logger: logs.logger()})
	for tu.uplink.Stats().Connects < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	// A producer every 5 ms; backlog marks the seqs published from the
	// blackhole until the uplink counted its next session (it reads its
	// backlog boundary after that).
	var (
		mu       sync.Mutex
		seq      int
		cut      atomic.Uint64 // the Connects count of the session blackholed, once it is
		backlog  = map[int]bool{}
		restored time.Time
		firstNew = -1 // the first seq published after the path was back
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			publishSeq(t, tu.local, "a", seq)
			if c := cut.Load(); c != 0 && tu.uplink.Stats().Connects == c {
				backlog[seq] = true
			}
			if !restored.IsZero() && firstNew < 0 {
				firstNew = seq
			}
			seq++
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	before := tu.uplink.Stats()
	acceptedBefore := proxy.Accepted()
	cut.Store(before.Connects)
	if stopAcks {
		proxy.StopAcks()
	} else {
		proxy.Blackhole()
	}
	start := time.Now()
	deadline := start.Add(20 * time.Second) // < 1.5 × keepalive: only the ack timeout counts
	for tu.uplink.Stats().AckTimeouts == before.AckTimeouts && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	noticed := time.Since(start)
	if tu.uplink.Stats().AckTimeouts == before.AckTimeouts {
		close(stop)
		wg.Wait()
		t.Fatalf("the blackhole was not noticed within 20 s (ack timeout 1 s)")
	}
	// The outage goes on: 6 × BackoffMax, the 60 s of a 10 s cap.
	time.Sleep(6 * backoffMax)
	outage := time.Since(start)
	st := tu.uplink.Stats()
	attempts := int(proxy.Accepted() - acceptedBefore)
	mu.Lock()
	proxy.Restore()
	restored = time.Now()
	mu.Unlock()
	for tu.uplink.Stats().Connects == before.Connects && time.Since(restored) < 20*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	reconnected := time.Since(restored)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	want := map[string]int{"a": seq}
	msgs := sub.WaitFor(30*time.Second, fmt.Sprintf("%d messages", seq), allArrived(want))
	dups := checkDelivery(t, msgs, want)
	if len(backlog) == 0 {
		t.Fatalf("nothing was published during the outage")
	}
	if !stopAcks {
		// Muted acks let the broker have them live: only a blackhole
		// leaves them to the replay.
		checkBacklogMarked(t, msgs, backlog)
	}
	var late time.Duration
	for _, m := range msgs {
		if p := string(m.Payload); strings.Contains(p, fmt.Sprintf(`"seq":%d,`, firstNew)) {
			late = m.At.Sub(restored)
			break
		}
	}
	// Attempts during the outage: each takes a dial timeout at most (the
	// path swallows the handshake) and a backoff wait at least BackoffMin/2.
	attemptBound := int(outage/dialTimeout) + 2
	t.Logf("noticed after %s (ack timeout 1s, keepalive 30s); outage %s: %d connect attempts (bound %d), reconnect delay %s at restore; reconnected %s after; first new message %s late; %d duplicates",
		noticed.Round(time.Millisecond), outage.Round(time.Millisecond), attempts, attemptBound, st.ReconnectDelay, reconnected.Round(time.Millisecond), late.Round(time.Millisecond), dups)
	if attempts > attemptBound {
		t.Errorf("%d connect attempts during a %s outage: more than one per dial timeout (%d)", attempts, outage, attemptBound)
	}
	if st.ReconnectDelay > backoffMax {
		t.Errorf("reconnect delay %s beyond BackoffMax %s", st.ReconnectDelay, backoffMax)
	}
	if got := logs.count("ack_timeout"); got < 1 {
		t.Errorf("no log line names the ack timeout:\n%s", logs.String())
	}
	final := tu.uplink.Stats()
	on, off := statusCount(status, "online"), statusCount(status, "offline")
	t.Logf("status: %d× online, %d× offline; %d connects", on, off, final.Connects)
	if on > int(final.Connects) || off > attempts+2 {
		t.Errorf("status published %d× online and %d× offline for %d sessions and %d attempts: more than one per state change", on, off, final.Connects, attempts)
	}
	if dups > window*(attempts+1) {
		t.Errorf("%d duplicates, more than the window (%d) per session", dups, window)
	}
}

// TestFaultRefusedPuback: mosquitto (MQTT 5, ACL file) refuses one topic
// with PUBACK reason 0x87. The refused messages are not counted as
// acknowledged: they are counted as lost (reason not_authorized), logged
// once (rate-limited), and leave the buffer; the allowed topic is
// delivered in full, on one session.
func TestFaultRefusedPuback(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{ACL: "user edged-test\ntopic write edged/gw/status\ntopic write edged/gw/dev/a"})
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	var logs logCapture
	tu := startTestUplink(t, mq, uplinkSetup{addr: mq.TLSAddr(), logger: logs.logger()})
	const n = 50
	for i := range n {
		publishSeq(t, tu.local, "a", i)
		publishSeq(t, tu.local, "denied", i)
	}
	sub.WaitFor(10*time.Second, "every allowed message", allArrived(map[string]int{"a": n}))
	deadline := time.Now().Add(10 * time.Second)
	for st := tu.uplink.Stats(); (st.Lost["not_authorized"] < n || st.Acked < n || st.Buffer.Depth > 0) && time.Now().Before(deadline); st = tu.uplink.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	st := tu.uplink.Stats()
	t.Logf("acked %d, refused %v, lost %v, buffer depth %d, connects %d", st.Acked, st.Refused, st.Lost, st.Buffer.Depth, st.Connects)
	if got := st.Lost["not_authorized"]; got != n {
		t.Errorf("%d messages counted lost as not_authorized, want %d", got, n)
	}
	if got := st.Refused["not_authorized"]; got != n {
		t.Errorf("%d refusals counted, want %d", got, n)
	}
	if st.Acked != n {
		t.Errorf("acked %d, want %d: a refused message is not delivered", st.Acked, n)
	}
	if st.Buffer.Depth != 0 {
		t.Errorf("buffer holds %d", st.Buffer.Depth)
	}
	if st.Connects != 1 {
		t.Errorf("%d connects: a refusal must not cost the session", st.Connects)
	}
	for _, m := range sub.Messages() {
		if strings.HasSuffix(m.Topic, "/denied") {
			t.Fatalf("mosquitto delivered a denied message: the ACL is not in force")
		}
	}
	if got := logs.count("refused a message"); got != 1 {
		t.Errorf("%d log lines about %d refusals, want 1 (rate-limited)\n%s", got, n, logs.String())
	}
	if !strings.Contains(logs.String(), "topic=edged/gw/dev/denied") || !strings.Contains(logs.String(), "code=0x87") {
		t.Errorf("the log line does not name the topic and the reason code:\n%s", logs.String())
	}
}

// TestUplinkTLSHints: a server that speaks only TLS 1.0/1.1 is refused
// with a hint about protocol versions (not client certificates), and
// mqtts:// to mosquitto's plaintext port says the server did not speak TLS
// (not just "EOF"); for both protocols.
func TestUplinkTLSHints(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	// A TLS server that offers at most TLS 1.1, with a certificate of the
	// test CA (so only the version can be the problem).
	ca := mosquittotest.NewCA(t, "old TLS CA")
	certPEM, keyPEM := ca.Issue(t, "old broker", []string{"127.0.0.1"}, false, false)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}) //nolint:gosec // the point of the test
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, addr, ca, reason, hint, not string
	}{
		{"TLS 1.1 only", ln.Addr().String(), caFile, "protocol version", "TLS 1.2", "cert_file"},
		{"plaintext port", mq.PlainAddr(), mq.CAFile, "plaintext server", "did not speak TLS", "cert_file"},
	} {
		for _, protocol := range []string{"5", "3.1.1"} {
			t.Run(c.name+"/"+protocol, func(t *testing.T) {
				tc, err := NewTLSConfig(TLSOptions{CAFile: c.ca}, "127.0.0.1")
				if err != nil {
					t.Fatal(err)
				}
				p := newTestPublisher(protocol, PublisherConfig{URL: &url.URL{Scheme: "mqtts", Host: c.addr}, ClientID: "x", KeepAlive: 5 * time.Second, Window: 8, TLS: tc})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err = p.Connect(ctx, func(uint64, byte) {})
				if err == nil {
					_ = p.Close()
					t.Fatal("connected")
				}
				t.Logf("%v", err)
				var te *TLSError
				if !errors.As(err, &te) {
					t.Fatalf("error %v (%T) is not a TLSError", err, err)
				}
				if te.Reason != c.reason || !strings.Contains(te.Hint, c.hint) || strings.Contains(te.Hint, c.not) {
					t.Fatalf("reason %q hint %q; want reason %q, a hint with %q and without %q", te.Reason, te.Hint, c.reason, c.hint, c.not)
				}
			})
		}
	}
}

// TestFaultPacketTooLarge: mosquitto with max_packet_size 2048 announces
// it in CONNACK and would end the session over a bigger PUBLISH, every
// time it is replayed (a message that wedges the uplink). MQTT 5: the
// uplink never sends it; it is counted lost as packet_too_large, and
// the messages around it are delivered on one session.
func TestFaultPacketTooLarge(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{Global: "max_packet_size 2048"})
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	var logs logCapture
	tu := startTestUplink(t, mq, uplinkSetup{addr: mq.TLSAddr(), logger: logs.logger()})
	for tu.uplink.Stats().Connects < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	const n = 20
	for i := range n {
		publishSeq(t, tu.local, "a", i)
		if i == n/2 {
			big := fmt.Appendf(nil, `{"seq":0,"blob":"%s"}`, strings.Repeat("x", 4000))
			if err := tu.local.Publish("edged/gw/dev/big", big, false, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	sub.WaitFor(10*time.Second, "the messages around the big one", allArrived(map[string]int{"a": n}))
	deadline := time.Now().Add(10 * time.Second)
	for st := tu.uplink.Stats(); (st.Lost["packet_too_large"] < 1 || st.Acked < n || st.Buffer.Depth > 0) && time.Now().Before(deadline); st = tu.uplink.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	st := tu.uplink.Stats()
	t.Logf("lost %v, acked %d, connects %d, mosquitto sessions %d", st.Lost, st.Acked, st.Connects, mq.Connects("edged-test-gw"))
	if st.Lost["packet_too_large"] != 1 {
		t.Errorf("lost %v, want the big message counted as packet_too_large", st.Lost)
	}
	if st.Connects != 1 || mq.Connects("edged-test-gw") != 1 {
		t.Errorf("%d connects (%d at mosquitto): the big message cost the session", st.Connects, mq.Connects("edged-test-gw"))
	}
	if st.Buffer.Depth != 0 {
		t.Errorf("buffer holds %d", st.Buffer.Depth)
	}
	if !strings.Contains(logs.String(), "topic=edged/gw/dev/big") {
		t.Errorf("no log line names the big message's topic:\n%s", logs.String())
	}
}
