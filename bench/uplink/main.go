// Command uplink measures the cloud uplink (buffer → QoS 1 publisher) against
// Debian's mosquitto on loopback (issue #5):
//
//  1. replay drain rate: a backlog of -n messages (~100 bytes, 100 topics)
//     appended to the buffer before the uplink connects, drained with
//     max_inflight 1, 100 and 1000 and replay_rate -fast-rate (high enough
//     not to limit), then a backlog of -pace-n at the default replay_rate to
//     show the pacing;
//  2. live end-to-end latency (gateway publish → mosquitto → subscriber) of
//     -live-rate messages/s for -duration, with no backlog and while a
//     backlog replays at the default replay_rate (and, as a stress case, at
//     -fast-rate);
//  3. the process's VmRSS/VmHWM during each run.
//
// Every run checks that every live and every replayed sequence number
// arrived (distinct count), and counts duplicates and per-topic reordering.
// The subscriber (paho.golang, QoS 1, same process) is counted in RSS/CPU.
//
//	go run ./bench/uplink -n 200000 -duration 15s [-tls]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"github.com/edged-gw/edged/bench/internal/benchkit"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/northbound/defaults"
)

const topics = 100

func main() {
	n := flag.Int("n", 200000, "backlog for the drain-rate runs (messages)")
	paceN := flag.Int("pace-n", 5000, "backlog for the run at the default replay_rate")
	fastRate := flag.Float64("fast-rate", 1e9, "replay_rate of the unpaced runs (messages/s; high enough not to limit)")
	windows := flag.String("windows", "1,100,1000", "max_inflight values of the drain-rate runs")
	liveRate := flag.Int("live-rate", 1000, "live messages/s in the latency runs")
	duration := flag.Duration("duration", 15*time.Second, "live publishing time of each latency run")
	latBacklog := flag.Int("lat-backlog", 0, "backlog replaying during the latency run at the default replay_rate (default -n; when it cannot drain in -duration + 5s, the run ends with the live messages and checks the replayed prefix for gaps)")
	payload := flag.Int("payload", 100, "payload size (bytes, JSON)")
	useTLS := flag.Bool("tls", false, "mqtts:// with a client certificate instead of mqtt:// (insecure_plaintext)")
	protocol := flag.String("protocol", "5", "MQTT protocol of the uplink: 5 | 3.1.1")
	rtt := flag.Duration("rtt", 0, "route the uplink through a proxy adding this round-trip time (a WAN link); the subscriber stays direct")
	flag.Parse()

	tb := &fakeTB{}
	code := 0
	func() {
		defer tb.cleanup()
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		mq := mosquittotest.Start(tb, mosquittotest.Options{})
		b := &bench{mq: mq, tls: *useTLS, protocol: *protocol, payload: *payload, dir: tb.TempDir()}
		b.addr = mq.PlainAddr()
		if b.tls {
			b.addr = mq.TLSAddr()
		}
		transport := "mqtt:// (insecure_plaintext)"
		if b.tls {
			transport = "mqtts:// (TLS, client certificate)"
		}
		if *rtt > 0 {
			addr, err := benchkit.DelayProxy(b.addr, *rtt/2)
			if err != nil {
				die("%v", err)
			}
			b.addr = addr
			transport += fmt.Sprintf(" through a proxy adding %s RTT", *rtt)
		}
		fmt.Printf("uplink → mosquitto on loopback, MQTT %s over %s, payload %d B, %d topics, buffer defaults (commit interval %s), GOMAXPROCS %s\n",
			b.protocol, transport, b.payload, topics, buffer.DefaultCommitInterval, orDefault(os.Getenv("GOMAXPROCS"), "default"))

		fmt.Printf("\n1. replay drain rate (backlog buffered before the session, replay_rate %g)\n", *fastRate)
		for _, w := range strings.Split(*windows, ",") {
			win, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil {
				tb.Fatalf("-windows: %v", err)
			}
			b.run(runSpec{name: fmt.Sprintf("max_inflight %d", win), window: win, rate: *fastRate, backlog: *n})
		}
		fmt.Printf("\n   pacing: replay_rate %d (default), max_inflight 100\n", defaults.ReplayRate)
		b.run(runSpec{name: "max_inflight 100", window: 100, rate: 0, backlog: *paceN})

		lb := *latBacklog
		if lb == 0 {
			lb = *n
		}
		fmt.Printf("\n2. live latency, %d msgs/s for %s, max_inflight 100 (publish on the local broker → subscriber on mosquitto)\n", *liveRate, *duration)
		b.run(runSpec{name: "no backlog", window: 100, liveRate: *liveRate, liveFor: *duration})
		b.run(runSpec{name: fmt.Sprintf("backlog %d at replay_rate %d", lb, defaults.ReplayRate), window: 100, backlog: lb, liveRate: *liveRate, liveFor: *duration})
		b.run(runSpec{name: fmt.Sprintf("backlog %d at replay_rate %g", *n, *fastRate), window: 100, rate: *fastRate, backlog: *n, liveRate: *liveRate, liveFor: *duration})
	}()
	os.Exit(code)
}

type bench struct {
	mq       *mosquittotest.Broker
	tls      bool
	protocol string
	payload  int
	dir      string
	addr     string // where the uplink connects
	runs     int
}

type runSpec struct {
	name     string
	window   int
	rate     float64 // 0: defaults.ReplayRate
	backlog  int
	liveRate int
	liveFor  time.Duration
}

// partial: the backlog cannot drain while live messages are published (by
// design of the pacing), so the run ends with them.
func (s runSpec) partial() bool {
	rate := s.rate
	if rate == 0 {
		rate = defaults.ReplayRate
	}
	return s.liveRate > 0 && float64(s.backlog)/rate > s.liveFor.Seconds()+5
}

// run makes a fresh buffer, appends the backlog, starts an uplink on it
// (the backlog is then historical: it predates the session), publishes live
// messages on the local broker if asked, and waits until the subscriber
// has every sequence number (or a timeout).
func (b *bench) run(s runSpec) {
	b.runs++
	prefix := fmt.Sprintf("bench/r%d/", b.runs)
	sub, err := subscribe(b.mq.PlainAddr(), prefix, s.backlog, s.liveRate*int(s.liveFor.Seconds()+1))
	if err != nil {
		die("subscribe: %v", err)
	}
	defer sub.close()

	q, err := buffer.Open(buffer.Options{Dir: filepath.Join(b.dir, fmt.Sprintf("buf%d", b.runs)), MaxBytes: 1 << 30})
	if err != nil {
		die("buffer: %v", err)
	}
	pad := b.payload - len(`{"seq":0000000,"ts":0000000000000000000,"v":""}`)
	fill := strings.Repeat("x", max(0, pad))
	var p []byte
	t0 := time.Now()
	for i := range s.backlog {
		p = fmt.Appendf(p[:0], `{"seq":%07d,"ts":%d,"v":"%s"}`, i, time.Now().UnixNano(), fill)
		q.Append(fmt.Sprintf("%sh/t%03d", prefix, i%topics), p)
	}
	q.Flush()
	fillDur := time.Since(t0)
	if st := q.Stats(); st.Depth != int64(s.backlog) || st.Dropped != 0 {
		die("buffer after fill: depth %d dropped %d, want %d and 0", st.Depth, st.Dropped, s.backlog)
	}

	local := northbound.NewBroker(northbound.BrokerOptions{})
	if err := local.Start(); err != nil {
		die("local broker: %v", err)
	}
	defer local.Stop()
	u := northbound.NewUplink(northbound.UplinkOptions{
		Name: "bench", Publisher: b.publisher(s.window), Queue: q, Filters: []string{prefix + "#"},
		ReplayRate: s.rate, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err := u.Attach(local.Subscribe, 1); err != nil {
		die("attach: %v", err)
	}

	mem := startMemSampler()
	start := time.Now()
	u.Start()
	for u.Stats().State != "online" {
		if time.Since(start) > 10*time.Second {
			die("uplink not online after 10s: %+v", u.Stats())
		}
		time.Sleep(time.Millisecond)
	}

	liveSent := 0
	if s.liveRate > 0 {
		liveSent = publishLive(local, prefix, s.liveRate, s.liveFor, fill)
	}
	sub.setWantLive(liveSent, s.partial())

	rate := s.rate
	if rate == 0 {
		rate = defaults.ReplayRate
	}
	timeout := 60*time.Second + time.Duration(float64(s.backlog)/min(rate, 2000)*float64(time.Second))
	if s.partial() {
		timeout = 30 * time.Second
	}
	complete := sub.wait(timeout)
	end := time.Now()
	rss, hwm := mem.stop()
	ust := u.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = u.Stop(ctx)
	cancel()

	r := sub.result()
	fmt.Printf("   %-40s", s.name+":")
	switch {
	case s.partial():
		fmt.Printf(" replayed %d in %.2fs = %.0f msgs/s (not drained, by design);", r.histDistinct, r.lastHist.Sub(start).Seconds(), float64(r.histDistinct)/r.lastHist.Sub(start).Seconds())
	case s.backlog > 0:
		d := r.lastHist.Sub(start)
		fmt.Printf(" drained %d in %.2fs = %.0f msgs/s (fill %.0f msgs/s);", s.backlog, d.Seconds(), float64(r.histDistinct)/d.Seconds(), float64(s.backlog)/fillDur.Seconds())
	}
	if s.liveRate > 0 {
		fmt.Printf(" live p50 %s p99 %s max %s (%d msgs);", r.p(50), r.p(99), r.p(100), len(r.lat))
	}
	fmt.Printf(" RSS %.0f MB (peak %.0f)\n", rss, hwm)
	fmt.Printf("   %-40s  arrived: replayed %d/%d distinct, live %d/%d distinct; duplicates %d, out of order %d; uplink sent %d acked %d replayed %d, buffer depth %d dropped %d; %.1fs\n",
		"", r.histDistinct, s.backlog, r.liveDistinct, liveSent, r.dups, r.reordered, ust.Sent, ust.Acked, ust.Replayed, ust.Buffer.Depth, ust.Buffer.Dropped, end.Sub(start).Seconds())
	if s.partial() {
		fmt.Printf("   %-40s  replay prefix: highest seq arrived %d, missing below it %d (must be 0)\n", "", r.histHigh, r.histHigh+1-r.histDistinct)
	}
	if !complete || (!s.partial() && r.histDistinct != s.backlog) || r.liveDistinct != liveSent || (s.partial() && r.histHigh+1 != r.histDistinct) {
		fmt.Printf("   LOSS or TIMEOUT: not every sequence number arrived within %s\n", timeout)
	}
	if r.badHistMark > 0 {
		fmt.Printf("   MARKING: %d messages with the wrong historical mark\n", r.badHistMark)
	}
}

func (b *bench) publisher(window int) northbound.Publisher {
	pc := northbound.PublisherConfig{
		Name: "bench", URL: &url.URL{Scheme: "mqtt", Host: b.addr}, ClientID: fmt.Sprintf("edged-bench-%d", b.runs),
		KeepAlive: 30 * time.Second, Window: window,
	}
	if b.tls {
		tc, err := northbound.NewTLSConfig(northbound.TLSOptions{CAFile: b.mq.CAFile, CertFile: b.mq.ClientCert, KeyFile: b.mq.ClientKey}, "127.0.0.1")
		if err != nil {
			die("tls: %v", err)
		}
		pc.URL.Scheme = "mqtts"
		pc.TLS = tc
	}
	if b.protocol == "3.1.1" {
		return northbound.NewMQTT311(pc)
	}
	return northbound.NewMQTT5(pc)
}

// publishLive publishes rate messages/s on the local broker for d, each
// with its send time (Unix ns) in "ts", and returns how many it published.
func publishLive(local *northbound.Broker, prefix string, rate int, d time.Duration, fill string) int {
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	var p []byte
	for {
		el := time.Since(start)
		if el >= d {
			return sent
		}
		for due := int(el.Seconds() * float64(rate)); sent < due; sent++ {
			p = fmt.Appendf(p[:0], `{"seq":%07d,"ts":%d,"v":"%s"}`, sent, time.Now().UnixNano(), fill)
			if err := local.Publish(fmt.Sprintf("%sl/t%03d", prefix, sent%topics), p, false, 0); err != nil {
				die("local publish: %v", err)
			}
		}
		<-tick.C
	}
}

// subscriber counts what arrives on prefix/h/# (historical) and
// prefix/l/# (live) by sequence number.
type subscriber struct {
	client *paho.Client
	prefix string

	mu                         sync.Mutex
	hist, live                 []bool
	histDistinct, liveDistinct int
	wantLive                   int // -1 until live publishing ended
	partial                    bool
	dups, reordered            int
	badHistMark                int
	lastSeq                    map[string]int
	lat                        []time.Duration
	lastHist                   time.Time
	wake                       chan struct{}
}

func subscribe(addr, prefix string, hist, live int) (*subscriber, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	s := &subscriber{prefix: prefix, hist: make([]bool, hist), live: make([]bool, live), wantLive: -1,
		lastSeq: map[string]int{}, wake: make(chan struct{}, 1)}
	s.client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				s.on(pr.Packet.Topic, pr.Packet.Payload)
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.client.Connect(ctx, &paho.Connect{ClientID: "bench-sub-" + strings.ReplaceAll(prefix, "/", "-"), CleanStart: true, KeepAlive: 30}); err != nil {
		return nil, err
	}
	if _, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "#", QoS: 1}}}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *subscriber) on(topic string, payload []byte) {
	now := time.Now()
	rest, ok := strings.CutPrefix(topic, s.prefix)
	if !ok || len(rest) < 2 {
		return
	}
	seq, ts, hist, ok := parse(payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.badHistMark++
		return
	}
	isHist := rest[0] == 'h'
	if hist != isHist {
		s.badHistMark++
	}
	seen := s.live
	if isHist {
		seen = s.hist
	}
	if seq < 0 || seq >= len(seen) {
		s.badHistMark++
		return
	}
	if seen[seq] {
		s.dups++
		return
	}
	seen[seq] = true
	if last, ok := s.lastSeq[rest]; ok && seq < last {
		s.reordered++
	}
	s.lastSeq[rest] = seq
	if isHist {
		s.histDistinct++
		s.lastHist = now
	} else {
		s.liveDistinct++
		s.lat = append(s.lat, now.Sub(time.Unix(0, ts)))
	}
	if s.doneLocked() {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// parse reads {"seq":N,"ts":T,...,"hist":true}.
func parse(p []byte) (seq int, ts int64, hist, ok bool) {
	field := func(name string) (int64, bool) {
		i := bytes.Index(p, []byte(`"`+name+`":`))
		if i < 0 {
			return 0, false
		}
		j := i + len(name) + 3
		k := j
		for k < len(p) && p[k] >= '0' && p[k] <= '9' {
			k++
		}
		v, err := strconv.ParseInt(string(p[j:k]), 10, 64)
		return v, err == nil
	}
	sq, ok1 := field("seq")
	t, ok2 := field("ts")
	return int(sq), t, bytes.HasSuffix(p, []byte(`,"hist":true}`)), ok1 && ok2
}

func (s *subscriber) doneLocked() bool {
	return (s.partial || s.histDistinct == len(s.hist)) && s.wantLive >= 0 && s.liveDistinct == s.wantLive
}

func (s *subscriber) setWantLive(n int, partial bool) {
	s.mu.Lock()
	s.wantLive, s.partial = n, partial
	done := s.doneLocked()
	s.mu.Unlock()
	if done {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *subscriber) wait(timeout time.Duration) bool {
	select {
	case <-s.wake:
		time.Sleep(200 * time.Millisecond) // late duplicates
		return true
	case <-time.After(timeout):
		return false
	}
}

type result struct {
	histDistinct, liveDistinct, dups, reordered, badHistMark int
	histHigh                                                 int
	lat                                                      []time.Duration
	lastHist                                                 time.Time
}

func (s *subscriber) result() result {
	s.mu.Lock()
	defer s.mu.Unlock()
	lat := slices.Clone(s.lat)
	slices.Sort(lat)
	high := -1
	for i, ok := range s.hist {
		if ok {
			high = i
		}
	}
	return result{s.histDistinct, s.liveDistinct, s.dups, s.reordered, s.badHistMark, high, lat, s.lastHist}
}

func (r result) p(pc int) string {
	if len(r.lat) == 0 {
		return "-"
	}
	i := min(len(r.lat)-1, len(r.lat)*pc/100)
	d := r.lat[i]
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
	}
	return d.Round(100 * time.Microsecond).String()
}

func (s *subscriber) close() { _ = s.client.Disconnect(&paho.Disconnect{}) }

// memSampler records the highest VmRSS while a run lasts.
type memSampler struct {
	stopc chan struct{}
	done  chan struct{}
	max   atomic.Uint64 // MB × 1000
}

func startMemSampler() *memSampler {
	m := &memSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			rss, _ := benchkit.Memory(0)
			if v := uint64(rss * 1000); v > m.max.Load() {
				m.max.Store(v)
			}
			select {
			case <-m.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// stop returns the highest VmRSS seen during the run and VmHWM (the
// process's peak so far), in MB.
func (m *memSampler) stop() (rss, hwm float64) {
	close(m.stopc)
	<-m.done
	_, hwm = benchkit.Memory(0)
	rss = float64(m.max.Load()) / 1000
	return rss, max(rss, hwm) // VmHWM can lag VmRSS by a counter batch
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "uplink bench: "+f+"\n", a...)
	panic(fatal{})
}

// fakeTB lets a program use mosquittotest (which takes a testing.TB):
// Fatal ends the program after the cleanups.
type fakeTB struct {
	testing.TB // nil: only the methods below are used
	mu         sync.Mutex
	cleanups   []func()
	dirs       []string
}

type fatal struct{}

func (t *fakeTB) Helper() {}
func (t *fakeTB) Fatal(a ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"uplink bench:"}, a...)...)
	panic(fatal{})
}
func (t *fakeTB) Fatalf(f string, a ...any) { die(f, a...) }
func (t *fakeTB) Errorf(f string, a ...any) { fmt.Fprintf(os.Stderr, "uplink bench: "+f+"\n", a...) }
func (t *fakeTB) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (t *fakeTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}
func (t *fakeTB) TempDir() string {
	d, err := os.MkdirTemp("", "edged-bench-uplink-")
	if err != nil {
		die("tempdir: %v", err)
	}
	t.mu.Lock()
	t.dirs = append(t.dirs, d)
	t.mu.Unlock()
	return d
}
func (t *fakeTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		_ = os.RemoveAll(d)
	}
}
