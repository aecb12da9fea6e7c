package northbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/northbound/defaults"
)

// UplinkOptions configure one bridge to a cloud broker.
type UplinkOptions struct {
	Name      string
	Publisher Publisher
	// Queue is the uplink's own buffer; the uplink owns it from here on and
	// closes it in Stop.
	Queue *buffer.Queue
	// Filters are the local topic filters that go up, e.g. "edged/#":
	// what edged itself publishes on them.
	Filters []string
	// Forward are local topic filters on which what local clients publish
	// goes up too (opt-in, e.g. "apps/#"); see AttachForward.
	Forward []string
	// LocalPrefix, when RemotePrefix is set, is replaced by RemotePrefix at
	// the start of every topic that goes up (e.g. "edged/" → "plant7/").
	LocalPrefix, RemotePrefix string
	// StatusTopic carries the retained "online" after each connect and the
	// retained "offline" will (set that in the Publisher's config).
	StatusTopic string
	// Skip lists local topics that never go up (the gateway's own status:
	// the uplink publishes its own).
	Skip []string
	// Rewrite, when set, turns each message edged itself publishes (not
	// the Forward ones) into what is buffered and sent: the payload, or
	// false for nothing (format = "value": mapping.ValuePayload). It runs
	// on the publisher's goroutine, concurrently; it must not keep payload.
	Rewrite func(payload []byte) ([]byte, bool)
	// PlainPayloads says that payloads are not edged's JSON objects (bare
	// values): replayed messages are marked only by the MQTT 5 property,
	// never with "hist":true in the payload.
	PlainPayloads bool
	// ReplayRate paces historical messages (messages/s); live messages are
	// not paced. Default defaults.ReplayRate.
	ReplayRate float64
	// ReplayOrder says whether live messages may overtake the backlog
	// (ReplayInterleave, the default) or wait for it (ReplayStrict).
	ReplayOrder ReplayOrder
	// BackoffMin/Max bound the reconnect delay (exponential, with jitter;
	// defaults defaults.BackoffMin, defaults.BackoffMax). The delay grows while
	// connects fail or sessions end early, and starts again from BackoffMin
	// after a session that stayed up at least BackoffMax. The same bounds
	// pace retries of buffer reads that fail and of messages the broker
	// refused for a reason that may pass (quota).
	BackoffMin, BackoffMax time.Duration
	// AckTimeout ends a session in which no PUBACK came for this long while
	// messages were in flight (a link that carries TCP but nothing else):
	// the uplink reconnects and sends them again, marked historical.
	// Default defaults.AckTimeout; negative turns it off (keepalive only).
	AckTimeout time.Duration
	Logger     *slog.Logger
	// Sparkplug, when set, makes the uplink a Sparkplug B edge node (see
	// SparkplugOptions); StatusTopic is then not used.
	Sparkplug *SparkplugOptions

	// newReader replaces the buffer's reader (tests inject failing reads).
	newReader func() entryReader
}

// entryReader reads the buffer (buffer.Reader).
type entryReader interface {
	Read(from, to uint64, max int) ([]buffer.Entry, uint64, error)
}

// ReplayOrder is how a session orders the backlog it found at connect
// against the messages appended while it runs.
type ReplayOrder string

const (
	// ReplayInterleave sends live messages at once, beside the paced
	// backlog: each stream is in order, but a live value can reach the
	// cloud before older historical values of the same topic.
	ReplayInterleave ReplayOrder = "interleave"
	// ReplayStrict sends one stream in append order: the backlog paced and
	// marked historical, then live messages unpaced. Per topic the cloud
	// sees append order; live data waits for the backlog.
	ReplayStrict ReplayOrder = "strict"
)

// Uplink bridges local topics to one cloud broker through its buffer:
// every message matching Filters is appended to the queue on the local
// publisher's goroutine (never blocking on the network), published at QoS 1
// from the queue, and deleted from it on PUBACK.
//
// Delivery order: messages appended before a session started (the backlog
// of an outage or a restart, and whatever was in flight when the previous
// connection dropped) go out "historical": in append order, paced at
// ReplayRate, marked (MQTT 5 user property historical=true, and
// "hist":true in JSON object payloads) and with their original "ts".
// Messages appended while the session is up go out "live", in append
// order, unpaced and unmarked. With ReplayInterleave live messages go out
// at once, beside the backlog, so that live data keeps its latency: each
// stream is in order per topic, but where a topic has both, the cloud can
// see live values before older historical ones. With ReplayStrict live
// messages go out only after the whole backlog, so every topic arrives in
// append order and live data waits backlog/ReplayRate. After a reconnect
// or a restart, the messages that were in flight are sent again:
// duplicates are bounded by the in-flight window.
type Uplink struct {
	o   UplinkOptions
	pub Publisher
	q   *buffer.Queue
	log *slog.Logger

	attaching atomic.Bool
	skip      map[string]bool

	mu       sync.Mutex
	inflight map[uint64]int // seq → size, for Ack
	state    string
	lastErr  error
	// lastReason is lastErr as one of ErrorReasons, for metrics.
	lastReason string
	// busySince is when the in-flight set last became non-empty and
	// lastAck when the last PUBACK came: the ack timeout runs from the
	// later of them.
	busySince, lastAck time.Time
	refusals           refusalState
	sp                 *spState // nil unless Sparkplug

	connects, attempts, sent, replayed, acked atomic.Uint64
	readErrors, ackTimeouts                   atomic.Uint64
	replayBacklog, reconnectDelay             atomic.Int64
	handedOver                                bool

	cancel  context.CancelFunc
	stopped chan struct{}
}

const statusToken = ^uint64(0)

// NewUplink makes an uplink; nothing is subscribed or dialled until
// Attach and Start.
func NewUplink(o UplinkOptions) *Uplink {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReplayRate <= 0 {
		o.ReplayRate = defaults.ReplayRate
	}
	if o.ReplayOrder == "" {
		o.ReplayOrder = ReplayOrder(defaults.ReplayOrder)
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = defaults.BackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = defaults.BackoffMax
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.AckTimeout == 0 {
		o.AckTimeout = defaults.AckTimeout
	}
	if o.newReader == nil {
		q := o.Queue
		o.newReader = func() entryReader { return q.NewReader() }
	}
	u := &Uplink{o: o, pub: o.Publisher, q: o.Queue, log: o.Logger.With("upstream", o.Name),
		skip: map[string]bool{}, inflight: map[uint64]int{}, state: "stopped"}
	u.refusals.init(o.BackoffMin, o.BackoffMax)
	for _, s := range o.Skip {
		u.skip[s] = true
	}
	if o.Sparkplug != nil {
		u.sp, u.o.StatusTopic = newSpState(o.Sparkplug), ""
	}
	return u
}

// SubscribeFunc is how the uplink attaches to the local broker
// (Broker.Subscribe).
type SubscribeFunc func(filter string, id int, fn func(topic string, payload []byte, retained bool)) error

// Attach subscribes the uplink to its filters on the local broker. Retained
// messages the broker replays at subscription time are not taken: they
// were buffered when first published (or predate this run). Attach before
// the gateway starts publishing.
func (u *Uplink) Attach(subscribe SubscribeFunc, id int) error {
	u.attaching.Store(true)
	defer u.attaching.Store(false)
	take := u.take
	if u.o.Rewrite != nil {
		take = u.takeRewritten
	}
	for _, f := range u.o.Filters {
		if err := subscribe(f, id, take); err != nil {
			return err
		}
	}
	return nil
}

// AttachForward subscribes the uplink to its Forward filters with
// subscribe, which must deliver what local clients publish
// (Broker.SubscribeClients); Attach's filters carry only edged's own
// messages.
func (u *Uplink) AttachForward(subscribe SubscribeFunc, id int) error {
	u.attaching.Store(true)
	defer u.attaching.Store(false)
	for _, f := range u.o.Forward {
		if err := subscribe(f, id, u.take); err != nil {
			return err
		}
	}
	return nil
}

// take runs on the local publisher's goroutine: it only appends.
func (u *Uplink) take(topic string, payload []byte, _ bool) {
	if u.attaching.Load() || u.skip[topic] {
		return
	}
	if u.o.RemotePrefix != "" && strings.HasPrefix(topic, u.o.LocalPrefix) {
		u.q.AppendPrefixed(u.o.RemotePrefix, topic[len(u.o.LocalPrefix):], payload)
		return
	}
	u.q.Append(topic, payload)
}

// takeRewritten is take of what Rewrite makes of the payload.
func (u *Uplink) takeRewritten(topic string, payload []byte, retained bool) {
	if p, ok := u.o.Rewrite(payload); ok {
		u.take(topic, p, retained)
	}
}

// Start runs the connection loop until Stop.
func (u *Uplink) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	u.stopped = make(chan struct{})
	startSeq, started := u.q.NextSeq(), time.Now()
	go func() {
		defer close(u.stopped)
		u.run(ctx, startSeq, started)
	}()
}

// firstConnectGrace is how soon after Start a first connection must come
// up for what was queued meanwhile to count as live: the few milliseconds
// of a normal start are not an outage, and their messages are neither
// marked historical nor paced. A first connect that takes longer (the
// cloud was down at boot) replays what waited, marked, as after any outage.
const firstConnectGrace = 5 * time.Second

// Stop announces "offline" (when connected), waits briefly for messages in
// flight to be acknowledged, disconnects and closes the buffer. Safe
// without Start. After Handover it does not close the buffer again.
func (u *Uplink) Stop(ctx context.Context) error {
	err := u.disconnect(ctx)
	if u.handedOver {
		return err
	}
	return errors.Join(err, u.q.Close())
}

// Handover ends the connection as Stop does but leaves the buffer open and
// returns it: the caller owns it from then on (typically a successor
// uplink with new settings, made with it as its Queue). Until the caller
// removes this uplink's subscriptions from the local broker, what they
// deliver is still appended, so nothing published during the switch is
// lost; messages not acknowledged stay in the buffer and are sent again by
// the successor.
func (u *Uplink) Handover(ctx context.Context) (*buffer.Queue, error) {
	err := u.disconnect(ctx)
	u.handedOver = true
	return u.q, err
}

// Filters are the local topic filters the uplink subscribes to (Forward
// included).
func (u *Uplink) Filters() []string {
	return append(u.o.Filters[:len(u.o.Filters):len(u.o.Filters)], u.o.Forward...)
}

// Alive reports an error when the uplink's buffer writer is stuck (see
// buffer.Queue.Alive); the watchdog then withholds its keep-alive.
func (u *Uplink) Alive() error { return u.q.Alive() }

func (u *Uplink) disconnect(ctx context.Context) error {
	if u.cancel != nil {
		u.cancel()
		<-u.stopped
		u.cancel = nil
	}
	var err error
	select {
	case <-u.pub.Done():
	default:
		if u.sp != nil {
			u.spDeath(ctx)
		}
		m := Message{Topic: []byte(u.o.StatusTopic), Payload: []byte("offline"), QoS: 1, Retain: true}
		if u.o.StatusTopic != "" && u.pub.Publish(ctx, &m, statusToken) == nil && u.pub.Flush() == nil {
			u.waitInflight(ctx, 2*time.Second)
		}
		err = u.pub.Close()
	}
	u.setState("stopped", nil)
	return err
}

func (u *Uplink) waitInflight(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		u.mu.Lock()
		n := len(u.inflight)
		u.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-u.pub.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (u *Uplink) setState(s string, err error) {
	u.mu.Lock()
	changed := u.state != s || (err != nil && (u.lastErr == nil || err.Error() != u.lastErr.Error()))
	u.state = s
	if err != nil || s == "online" {
		u.lastErr = err // kept while reconnecting: it says why the uplink is not online
		u.lastReason = ErrorReason(err)
	}
	u.mu.Unlock()
	if !changed {
		return
	}
	switch {
	case err != nil:
		u.log.Warn("upstream "+s, "err", err)
	default:
		u.log.Info("upstream " + s)
	}
}

// run connects, runs sessions and waits between them. Every way a session
// or a connect can end is followed by a backoff wait: a fault that repeats
// at once (a broker that drops the session, a link that dies on every
// connect) costs one connect and one status publish per wait, never a
// storm.
func (u *Uplink) run(ctx context.Context, startSeq uint64, started time.Time) {
	bo := newBackoff(u.o.BackoffMin, u.o.BackoffMax)
	first := true
	for ctx.Err() == nil {
		u.setState("connecting", nil)
		u.attempts.Add(1)
		if u.sp != nil {
			u.spConnect()
		}
		err := u.pub.Connect(ctx, u.onAck)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			u.connects.Add(1)
			u.reconnectDelay.Store(0)
			u.setState("online", nil)
			start := time.Now()
			boundary := u.q.NextSeq() // below: historical
			if first && start.Sub(started) <= firstConnectGrace {
				boundary = startSeq // only what predates this run
			}
			err = u.session(ctx, boundary)
			u.replayBacklog.Store(0)
			if ctx.Err() != nil {
				return // Stop waits for the acknowledgements still in flight
			}
			// Whatever ended the session, the connection goes too, without
			// DISCONNECT: the broker publishes the will ("offline"), once.
			u.pub.Abort(err)
			u.mu.Lock()
			clear(u.inflight) // resent from the buffer on the next connection
			u.mu.Unlock()
			if time.Since(start) >= u.o.BackoffMax {
				bo.reset() // it stayed up: the next outage starts from BackoffMin
			}
		}
		first = false
		u.setState("offline", err)
		wait := bo.next()
		u.reconnectDelay.Store(int64(wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// backoff is an exponential delay with jitter between min and max.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(lo, hi time.Duration) backoff { return backoff{min: lo, max: max(lo, hi), cur: lo} }

// next returns the wait to use now, in [cur/2, cur] (full jitter over the
// upper half: many gateways behind one NAT must not reconnect in
// lockstep after a cloud outage), and doubles cur up to max.
func (b *backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

// onAck takes a PUBACK: a success removes the message from the buffer; a
// refusal (reason ≥ 0x80) never does as delivered: see refuse.
func (u *Uplink) onAck(token uint64, reason byte) {
	now := time.Now()
	if token == statusToken {
		u.mu.Lock()
		u.lastAck = now
		u.mu.Unlock()
		return
	}
	u.mu.Lock()
	u.lastAck = now
	size, ok := u.inflight[token]
	delete(u.inflight, token)
	if ok && reason >= 0x80 {
		v := u.refusals.refuse(now, token, reason)
		u.mu.Unlock()
		if v.log {
			u.logRefusal(token, reason, v)
		}
		if v.lost {
			u.q.Ack(token, size) // given up: out of the buffer, counted as lost
		}
		return
	}
	if ok {
		u.refusals.passed(token)
	}
	u.mu.Unlock()
	if ok {
		u.q.Ack(token, size)
		u.acked.Add(1)
	}
}

const readBatch = 256

// session publishes from the queue until the connection ends. A buffer
// read that fails does not end it (the link is fine): that stream's reads
// are retried with backoff while the other stream goes on.
//
// Entries below boundary are the backlog: sent marked historical and
// paced; from boundary on they are live.
func (u *Uplink) session(ctx context.Context, boundary uint64) error {
	if u.o.StatusTopic != "" {
		m := Message{Topic: []byte(u.o.StatusTopic), Payload: []byte("online"), QoS: 1, Retain: true}
		if err := u.pub.Publish(ctx, &m, statusToken); err != nil {
			return err
		}
	}
	done := u.pub.Done()
	var spWake chan struct{} // nil unless Sparkplug
	if u.sp != nil {
		waited, err := u.spBegin(ctx)
		if err != nil {
			return err
		}
		if waited {
			boundary = u.q.NextSeq() // what waited for the host is backlog
		}
		spWake = u.sp.wake
	}
	if u.o.AckTimeout > 0 {
		stop := make(chan struct{})
		defer close(stop)
		go u.watchAcks(done, stop)
	}
	u.mu.Lock()
	u.refusals.newSession()
	u.mu.Unlock()
	replayFrom := u.q.Oldest()
	live := boundary
	liveR, replayR, retryR := u.o.newReader(), u.o.newReader(), u.o.newReader()
	liveGate := readGate{stream: "live", bo: newBackoff(u.o.BackoffMin, u.o.BackoffMax)}
	replayGate := readGate{stream: "replay", bo: liveGate.bo}
	// strict: live is read only once the backlog is sent, so the cloud
	// gets one stream in append order.
	strict := u.o.ReplayOrder == ReplayStrict
	rate := u.o.ReplayRate
	burst := max(1, rate/10)
	tokens, last := burst, time.Now()
	var scratch []byte
	var m Message
	m.QoS = 1

	send := func(es []buffer.Entry, hist bool) error {
		for i := range es {
			e := &es[i]
			m.Topic, m.Payload, m.Historical = e.Topic, e.Payload, hist
			if u.sp != nil {
				out, ok, err := u.spNext(scratch[:0], e, hist)
				if err != nil {
					return err
				}
				scratch = out
				if !ok {
					continue
				}
				m.Payload = out
			} else if hist && !u.o.PlainPayloads {
				scratch = markHistorical(scratch[:0], e.Payload)
				m.Payload = scratch
			}
			u.mu.Lock()
			if len(u.inflight) == 0 {
				u.busySince = time.Now()
			}
			u.inflight[e.Seq] = e.Size
			u.mu.Unlock()
			if err := u.pub.Publish(ctx, &m, e.Seq); err != nil {
				var tl *PacketTooLargeError
				if errors.As(err, &tl) {
					// It can never pass on this broker: lost, as if refused.
					u.onAck(e.Seq, reasonPacketTooLarge)
					continue
				}
				return err
			}
		}
		n := uint64(len(es))
		u.sent.Add(n)
		if hist {
			u.replayed.Add(n)
		}
		return nil
	}
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-done:
			return u.pub.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	u.replayBacklog.Store(int64(boundary - replayFrom))
	if replayFrom < boundary {
		u.log.Info("replaying buffered messages", "messages", u.q.Stats().Depth, "rate", rate, "order", string(u.o.ReplayOrder))
	}
	for {
		select {
		case <-done:
			return u.pub.Err()
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if u.sp != nil {
			if err := u.spEvents(ctx, true); err != nil {
				return err
			}
		}
		// After a refusal that may pass (quota), nothing is sent for a
		// while; then the refused messages go again, marked historical.
		cool, retry := u.takeRetries(time.Now())
		if cool > 0 {
			if err := u.pub.Flush(); err != nil {
				return err
			}
			if err := wait(cool); err != nil {
				return err
			}
			continue
		}
		for _, seq := range retry {
			es, _, err := retryR.Read(seq, seq+1, 1)
			if err != nil {
				continue // sent again by the next session's replay
			}
			if err := send(es, true); err != nil {
				return err
			}
		}
		worked := false
		now := time.Now()
		liveOpen := !strict || replayFrom >= boundary
		// Live first, a batch at a time. A read may return fewer entries
		// than asked, even none while it moves on: moving on is work too.
		if liveOpen && liveGate.open(now) {
			es, next, err := liveR.Read(live, 0, readBatch)
			if err != nil {
				u.readFailed(&liveGate, now, live, err)
			} else {
				u.readOK(&liveGate)
				if err := send(es, false); err != nil {
					return err
				}
				worked = len(es) > 0 || next != live
				live = next
			}
		}
		// Then as much of the backlog as the pace allows.
		if replayFrom < boundary && replayGate.open(now) {
			tokens = min(burst, tokens+now.Sub(last).Seconds()*rate)
			last = now
			if n := int(tokens); n > 0 {
				es, next, err := replayR.Read(replayFrom, boundary, min(n, readBatch))
				if err != nil {
					u.readFailed(&replayGate, now, replayFrom, err)
				} else {
					u.readOK(&replayGate)
					if err := send(es, true); err != nil {
						return err
					}
					tokens -= float64(len(es))
					worked = worked || len(es) > 0 || next != replayFrom
					replayFrom = next
					u.replayBacklog.Store(int64(boundary - min(replayFrom, boundary)))
					if replayFrom >= boundary {
						u.log.Info("replay complete")
					}
				}
			}
		}
		if worked {
			continue
		}
		if err := u.pub.Flush(); err != nil {
			return err
		}
		var pace <-chan time.Time
		if replayFrom < boundary {
			d := time.Duration(float64(time.Second) / rate)
			if !replayGate.open(now) {
				d = replayGate.until.Sub(now)
			}
			pace = time.After(d)
		}
		var committed <-chan struct{} // nil while strict holds live back
		var gate <-chan time.Time     // while live reads are failing
		switch {
		case liveOpen && liveGate.open(now):
			committed = u.q.Committed(live)
		case liveOpen:
			gate = time.After(liveGate.until.Sub(now))
		}
		select {
		case <-committed:
		case <-pace:
		case <-gate:
		case <-u.refusals.wake: // a refusal to wait out and send again
		case <-spWake: // a Rebirth request or a STATE
		case <-done:
			return u.pub.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// watchAcks ends the session (Abort) when messages are in flight and no
// PUBACK came for AckTimeout: TCP may still be open, but the broker is no
// longer reached. It returns when done or stop is closed.
func (u *Uplink) watchAcks(done <-chan struct{}, stop <-chan struct{}) {
	to := u.o.AckTimeout
	t := time.NewTicker(max(10*time.Millisecond, to/8))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-stop:
			return
		case <-t.C:
		}
		u.mu.Lock()
		n := len(u.inflight)
		since := u.busySince
		if u.lastAck.After(since) {
			since = u.lastAck
		}
		u.mu.Unlock()
		if n > 0 && time.Since(since) >= to {
			u.ackTimeouts.Add(1)
			u.pub.Abort(fmt.Errorf("no PUBACK for %s with %d messages in flight: the link to the broker looks dead (ack_timeout)", to, n))
			return
		}
	}
}

// readGate holds back one stream's reads after a failed read, with
// backoff, and logs the first failure and the recovery (not each retry).
type readGate struct {
	stream   string
	bo       backoff
	until    time.Time
	failures int
	loggedAt time.Time
}

func (g *readGate) open(now time.Time) bool { return !now.Before(g.until) }

func (u *Uplink) readFailed(g *readGate, now time.Time, at uint64, err error) {
	u.readErrors.Add(1)
	g.failures++
	wait := g.bo.next()
	g.until = now.Add(wait)
	if g.failures == 1 || now.Sub(g.loggedAt) >= logEvery {
		g.loggedAt = now
		u.log.Warn("buffer read failed; retrying with backoff", "stream", g.stream, "seq", at, "failures", g.failures, "retry_in", wait.Round(time.Millisecond), "err", err)
	}
}

func (u *Uplink) readOK(g *readGate) {
	if g.failures == 0 {
		return
	}
	u.log.Info("buffer read recovered", "stream", g.stream, "failures", g.failures)
	g.failures = 0
	g.bo.reset()
}

// logEvery is how often a repeating fault is logged again.
const logEvery = time.Minute

// markHistorical appends payload to dst with "hist":true inserted before
// the closing brace of a JSON object; other payloads are unchanged (the
// MQTT 5 user property still marks them).
func markHistorical(dst, payload []byte) []byte {
	n := len(payload)
	if n < 2 || payload[0] != '{' || payload[n-1] != '}' {
		return append(dst, payload...)
	}
	dst = append(dst, payload[:n-1]...)
	if n > 2 {
		dst = append(dst, ',')
	}
	return append(dst, `"hist":true}`...)
}

// UplinkStats are an uplink's figures (for metrics and status displays).
type UplinkStats struct {
	Name    string
	State   string // connecting, online, offline, stopped
	LastErr string
	// LastErrReason is LastErr as one of ErrorReasons (a label value).
	LastErrReason string
	// Connects counts sessions established; ConnectAttempts every dial,
	// failed ones included.
	Connects        uint64
	ConnectAttempts uint64
	Sent            uint64 // PUBLISHes written (live + replayed, resends included)
	Replayed        uint64
	Acked           uint64
	// InFlight is how many messages were handed to the publisher and are
	// not yet acknowledged: the window's (max_inflight) and the one that
	// may be waiting for a free slot.
	InFlight int
	// ReplayBacklog is how many sequence numbers of the backlog the current
	// session has still to replay (an upper bound: some may have been
	// acknowledged or dropped already); 0 between sessions.
	ReplayBacklog int64
	// ReadErrors counts buffer reads that failed (each retried with
	// backoff, the session kept); AckTimeouts the sessions ended because
	// no PUBACK came for AckTimeout with messages in flight.
	ReadErrors, AckTimeouts uint64
	// ReconnectDelay is the wait before the next connect attempt while
	// not connected (0 while connected).
	ReconnectDelay time.Duration
	// Refused counts PUBACKs that refused a message, Lost the messages
	// given up after a refusal (dropped from the buffer), by reason
	// (RefusalReasons).
	Refused, Lost map[string]uint64
	Buffer        buffer.Stats
}

// Stats returns the uplink's figures.
func (u *Uplink) Stats() UplinkStats {
	u.mu.Lock()
	s := UplinkStats{Name: u.o.Name, State: u.state, InFlight: len(u.inflight)}
	if u.lastErr != nil {
		s.LastErr, s.LastErrReason = u.lastErr.Error(), u.lastReason
	}
	s.Refused, s.Lost = maps.Clone(u.refusals.refused), maps.Clone(u.refusals.lost)
	u.mu.Unlock()
	s.ReadErrors, s.AckTimeouts = u.readErrors.Load(), u.ackTimeouts.Load()
	s.ReconnectDelay = time.Duration(u.reconnectDelay.Load())
	s.Connects, s.Sent, s.Replayed, s.Acked = u.connects.Load(), u.sent.Load(), u.replayed.Load(), u.acked.Load()
	s.ConnectAttempts, s.ReplayBacklog = u.attempts.Load(), u.replayBacklog.Load()
	s.Buffer = u.q.Stats()
	return s
}
