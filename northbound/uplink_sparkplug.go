package northbound

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/sparkplug"
)

// SparkplugOptions make an uplink a Sparkplug B edge node (UplinkOptions
// .Sparkplug). Its buffer then holds the session's pending messages
// (sparkplug.Session.Data, DeviceBirth, DeviceDeath), queued by
// SparkplugSamples and SparkplugState rather than by local-broker
// subscriptions, and turned into wire payloads by Session.Next when sent:
// seq and aliases belong to the connection that sends a message, and what
// is replayed from the buffer goes out with is_historical = true and its
// original timestamps, after the births.
//
// Per connection: the NDEATH (Session.Connect) is the MQTT will; with a
// PrimaryHost nothing is sent until its STATE says online on this
// connection (data stays in the buffer; what waited is replayed as
// historical); then the NBIRTH and DBIRTHs, then the buffer. An NCMD
// Node Control/Rebirth publishes the births again; the host going offline
// ends the connection (the broker sends the NDEATH) and the uplink waits
// for it to come back. Stop publishes the NDEATH before disconnecting.
type SparkplugOptions struct {
	Session *sparkplug.Session
	// PrimaryHost is the host to wait for (sparkplug.NewPrimaryHost); nil
	// births at once.
	PrimaryHost *sparkplug.PrimaryHost
	// OnWrites takes the writes of a DCMD (and the error of the metrics
	// that could not be read); it runs on the connection's reader and must
	// not block. Nil: DCMDs are ignored (commands off).
	OnWrites func(topic string, writes []sparkplug.Write, err error)
	// OnError is told of NCMD/DCMD/STATE payloads that could not be read.
	OnError func(topic string, err error)
	// SaveBdSeq, when set, is given the bdSeq of every new connection
	// before it is dialled, for the next start of edged to continue from
	// (sparkplug.Config.BdSeq = saved + 1): a late will of the previous
	// run then never matches the new NBIRTH.
	SaveBdSeq func(bdSeq uint8)
}

// SparkplugFilters are the cloud topics a Sparkplug uplink subscribes to
// (PublisherConfig.Subscriptions): its NCMD, its devices' DCMD and, with a
// primary host, the host's STATE.
func SparkplugFilters(group, node, primaryHost string, dcmd bool) []string {
	f := []string{sparkplug.Topic(group, sparkplug.NCMD, node, "")}
	if dcmd {
		f = append(f, sparkplug.Topic(group, sparkplug.DCMD, node, "+"))
	}
	if primaryHost != "" {
		f = append(f, sparkplug.StateTopic(primaryHost))
	}
	return f
}

// errHostOffline ends a session when the primary host goes offline.
var errHostOffline = errors.New("sparkplug primary host went offline: data stays in the buffer until it is back")

type spEvent struct {
	rebirth bool
	state   []byte
}

type spState struct {
	o         SparkplugOptions
	sess      *sparkplug.Session
	host      *sparkplug.PrimaryHost // nil without PrimaryHost
	stateTopc string

	evMu   sync.Mutex
	events []spEvent
	wake   chan struct{}

	tapMu   sync.Mutex // the pollers' side: scratch and online
	scratch []byte
	online  map[string]bool

	dropped, births atomic.Uint64
}

func newSpState(o *SparkplugOptions) *spState {
	s := &spState{o: *o, sess: o.Session, wake: make(chan struct{}, 1), online: map[string]bool{}}
	if o.PrimaryHost != nil {
		s.host, s.stateTopc = o.PrimaryHost, o.PrimaryHost.Topic()
	}
	return s
}

func (s *spState) push(e spEvent) {
	s.evMu.Lock()
	s.events = append(s.events, e)
	s.evMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *spState) take() []spEvent {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	e := s.events
	s.events = nil
	return e
}

// SparkplugMessage takes what the cloud broker sent on SparkplugFilters
// (PublisherConfig.OnMessage): on the reader goroutine, never blocking.
func (u *Uplink) SparkplugMessage(topic string, payload []byte, retained bool) {
	s := u.sp
	if s == nil {
		return
	}
	if topic == s.stateTopc && s.host != nil {
		s.push(spEvent{state: append([]byte(nil), payload...)})
		return
	}
	if retained {
		return // a retained command would be replayed at every connect
	}
	cmd, err := s.sess.Command(topic, payload)
	if err != nil && s.o.OnError != nil {
		s.o.OnError(topic, err)
	}
	if cmd.Rebirth {
		s.push(spEvent{rebirth: true})
	}
	if len(cmd.Writes) > 0 && s.o.OnWrites != nil {
		s.o.OnWrites(topic, cmd.Writes, err)
	}
}

// SparkplugSamples takes one poll of device: all its samples and those
// that passed report-by-exception, queued as one pending DDATA. A device
// not yet online in this session with a good sample is born first, with
// the poll's values (a session made on a reload learns the devices that
// were already running this way). It runs on the device's poller and
// only appends to the buffer.
func (u *Uplink) SparkplugSamples(device string, all, passed []mapping.Sample) {
	s := u.sp
	if s == nil {
		return
	}
	s.tapMu.Lock()
	defer s.tapMu.Unlock()
	if !s.online[device] {
		for i := range all {
			if all[i].Quality == mapping.Good {
				s.sess.Remember(device, all)
				s.setOnline(u.q, device, true)
				break
			}
		}
	}
	if len(passed) == 0 {
		return
	}
	topic, pending, err := s.sess.Data(device, passed, s.scratch[:0])
	if err != nil {
		return // not a device of this session: the uplink is rebuilt with the next config
	}
	s.scratch = pending
	u.q.Append(topic, pending)
}

// SparkplugState queues a DBIRTH (online) or DDEATH for device when its
// state changes.
func (u *Uplink) SparkplugState(device string, online bool) {
	s := u.sp
	if s == nil {
		return
	}
	s.tapMu.Lock()
	defer s.tapMu.Unlock()
	if s.online[device] != online {
		s.setOnline(u.q, device, online)
	}
}

func (s *spState) setOnline(q *buffer.Queue, device string, online bool) {
	var topic string
	var pending []byte
	var err error
	if online {
		topic, pending, err = s.sess.DeviceBirth(device)
	} else {
		topic, pending, err = s.sess.DeviceDeath(device)
	}
	if err != nil {
		return
	}
	s.online[device] = online
	q.Append(topic, pending)
}

// IsSparkplug reports whether the uplink is a Sparkplug edge node.
func (u *Uplink) IsSparkplug() bool { return u.sp != nil }

// willSetter is a Publisher whose will can change between connections.
type willSetter interface {
	SetWill(topic string, payload []byte, retain bool)
}

// spConnect starts a new Sparkplug connection: the NDEATH becomes the will.
func (u *Uplink) spConnect() {
	death := u.sp.sess.Connect()
	if u.sp.o.SaveBdSeq != nil {
		u.sp.o.SaveBdSeq(u.sp.sess.BdSeq())
	}
	u.sp.take() // what the previous connection received is stale now
	if ws, ok := u.pub.(willSetter); ok {
		ws.SetWill(death.Topic, death.Payload, false)
	}
	if u.sp.host != nil {
		u.sp.host.NewConnection()
	}
}

// spBegin waits for the primary host (if any) and publishes the births.
// waited says that it had to wait: what was queued meanwhile is backlog.
func (u *Uplink) spBegin(ctx context.Context) (waited bool, err error) {
	s := u.sp
	done := u.pub.Done()
	for s.host != nil && !s.host.Online() {
		if !waited {
			u.log.Info("sparkplug: waiting for the primary host to be online", "topic", s.stateTopc)
		}
		waited = true
		select {
		case <-s.wake:
			if err := u.spEvents(ctx, false); err != nil {
				return waited, err
			}
		case <-done:
			return waited, u.pub.Err()
		case <-ctx.Done():
			return waited, ctx.Err()
		}
	}
	return waited, u.spBirths(ctx)
}

func (u *Uplink) spBirths(ctx context.Context) error {
	births, err := u.sp.sess.Births()
	if err != nil {
		return err
	}
	var m Message
	m.QoS = 1
	for i := range births {
		m.Topic, m.Payload = []byte(births[i].Topic), births[i].Payload
		if err := u.pub.Publish(ctx, &m, statusToken); err != nil {
			return err
		}
	}
	u.sp.births.Add(1)
	return u.pub.Flush()
}

// spEvents applies what the reader queued: STATE changes and Rebirth
// requests (births only once born: before, the coming births serve).
func (u *Uplink) spEvents(ctx context.Context, born bool) error {
	rebirth := false
	for _, e := range u.sp.take() {
		if e.rebirth {
			rebirth = true
			continue
		}
		ev, err := u.sp.host.Observe(e.state)
		if err != nil {
			u.log.Warn("sparkplug: primary host STATE not understood", "err", err)
			continue
		}
		if ev == sparkplug.HostOffline {
			return errHostOffline
		}
	}
	if rebirth && born {
		u.log.Info("sparkplug: rebirth requested")
		return u.spBirths(ctx)
	}
	return nil
}

// spNext turns a buffered entry into its wire payload (appended to dst).
// ok false: nothing to send for it (it is taken out of the buffer).
func (u *Uplink) spNext(dst []byte, e *buffer.Entry, hist bool) ([]byte, bool, error) {
	out, err := u.sp.sess.Next(dst, string(e.Topic), e.Payload, hist)
	switch {
	case errors.Is(err, sparkplug.ErrNodeNotBorn):
		return dst, false, err
	case err != nil:
		// DDATA of a device that is dead now, or a topic the config no
		// longer has: it cannot be sent in this session.
		u.sp.dropped.Add(1)
		u.q.Ack(e.Seq, e.Size)
		return dst, false, nil
	case len(out) == len(dst):
		u.q.Ack(e.Seq, e.Size) // a replayed birth or death: the births at connect told it
		return dst, false, nil
	}
	return out, true, nil
}

// spDeath publishes the NDEATH before a clean disconnect.
func (u *Uplink) spDeath(ctx context.Context) {
	d := u.sp.sess.Death()
	m := Message{Topic: []byte(d.Topic), Payload: d.Payload, QoS: 1}
	if u.pub.Publish(ctx, &m, statusToken) == nil && u.pub.Flush() == nil {
		u.waitInflight(ctx, 2*time.Second)
	}
}

// SparkplugDropped counts buffered messages that could not be sent in
// their session (DDATA of a device that died meanwhile).
func (u *Uplink) SparkplugDropped() uint64 {
	if u.sp == nil {
		return 0
	}
	return u.sp.dropped.Load()
}
