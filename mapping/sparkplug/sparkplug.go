// Package sparkplug is edged's Sparkplug B (spBv1.0, specification 3.0) edge
// node: topics, the payloads of NBIRTH, NDEATH, DBIRTH, DDATA and DDEATH,
// the session rules (bdSeq, seq, aliases, births before data, historical
// replay), NCMD/DCMD decoding and the primary host's STATE.
//
// It owns the tag → Sparkplug message step the way mapping owns tag → JSON,
// and like mapping it does no I/O: no sockets, no clock of its own (Config.Now),
// no goroutines. The uplink that sends its messages owns the MQTT session;
// the contract between the two is:
//
//   - Connect is called for every new MQTT connection and gives the NDEATH
//     to register as the connection's will (same bdSeq as the NBIRTH after it).
//   - Births is called once connected (and, with a primary host, once it is
//     online) and on every Rebirth command; its messages go out first.
//   - Data, DeviceBirth and DeviceDeath make pending messages at poll time,
//     which may wait in the store-and-forward buffer; Next turns a pending
//     message into its wire form when it is sent, so seq and aliases belong
//     to the session that sends it, not the one that queued it.
package sparkplug

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/edged-gw/edged/mapping"
)

// Namespace is the first topic level of every Sparkplug B message.
const Namespace = "spBv1.0"

// MessageType is the third topic level: what a message is.
type MessageType string

// The message types of an edge node. STATE is the primary host's.
const (
	NBIRTH MessageType = "NBIRTH"
	NDEATH MessageType = "NDEATH"
	DBIRTH MessageType = "DBIRTH"
	DDEATH MessageType = "DDEATH"
	NDATA  MessageType = "NDATA"
	DDATA  MessageType = "DDATA"
	NCMD   MessageType = "NCMD"
	DCMD   MessageType = "DCMD"
)

// Metric names the specification gives a meaning to.
const (
	MetricBdSeq   = "bdSeq"
	MetricRebirth = "Node Control/Rebirth"
)

// Topic is spBv1.0/{group}/{type}/{node}, or …/{node}/{device} when device
// is not empty.
func Topic(group string, t MessageType, node, device string) string {
	if device == "" {
		return Namespace + "/" + group + "/" + string(t) + "/" + node
	}
	return Namespace + "/" + group + "/" + string(t) + "/" + node + "/" + device
}

// CheckID reports whether s may be a group_id, edge_node_id or device_id:
// non-empty valid UTF-8 without the MQTT separators and wildcards / + #.
func CheckID(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.ContainsAny(s, "/+#\x00"):
		return fmt.Errorf("%q contains one of / + # or NUL, which Sparkplug does not allow in an id", s)
	}
	return nil
}

// Device is one Sparkplug device of the node: an edged device and its tags.
type Device struct {
	Name string
	Tags []*mapping.Spec
}

// Config is what a Session is built from.
type Config struct {
	Group   string // group_id
	Node    string // edge_node_id (the gateway id by default, chosen by the caller)
	Devices []Device
	// BdSeq is the bdSeq of the first Connect (0..255). A caller that keeps
	// the last one across restarts passes it + 1; hosts only need NBIRTH and
	// NDEATH of one connection to agree.
	BdSeq uint8
	// Now is the clock for payload timestamps, in Unix milliseconds.
	Now func() int64
}

// Session is the edge node's Sparkplug state across MQTT connections. Its
// methods are safe for concurrent use: pollers call Data while the sender
// calls Next.
type Session struct {
	group, node string
	now         func() int64
	nodeTopics  [2]string // NBIRTH, NDEATH
	devices     []*device
	byName      map[string]*device
	byTopic     map[string]topicRef
	byAlias     map[uint64]*metricDef

	mu        sync.Mutex
	bdSeq     uint8
	connected bool // Connect was called: bdSeq is the current connection's
	nodeBorn  bool // NBIRTH issued on this connection
	seq       uint8
}

type topicRef struct {
	dev *device
	typ MessageType
}

type device struct {
	name   string
	topics map[MessageType]string
	tags   []*metricDef
	byName map[string]*metricDef
	born   bool // DBIRTH issued on this connection and no DDEATH since
	online bool // the last DeviceBirth/DeviceDeath said online
}

type metricDef struct {
	dev      *device
	spec     *mapping.Spec
	alias    uint64
	datatype DataType
	last     mapping.Sample // for births: the latest value handed to Data
}

// Node metric aliases; device metrics are numbered after them.
const aliasRebirth = 1

// New checks cfg and builds a session. Aliases are numbered in config
// order, so an unchanged config gives the same aliases after a restart.
func New(cfg Config) (*Session, error) {
	if err := CheckID(cfg.Group); err != nil {
		return nil, fmt.Errorf("sparkplug group_id %w", err)
	}
	if err := CheckID(cfg.Node); err != nil {
		return nil, fmt.Errorf("sparkplug edge_node_id %w", err)
	}
	if cfg.Now == nil {
		return nil, errors.New("sparkplug: Config.Now is nil")
	}
	s := &Session{
		group: cfg.Group, node: cfg.Node, now: cfg.Now, bdSeq: cfg.BdSeq,
		byName:  map[string]*device{},
		byTopic: map[string]topicRef{},
		byAlias: map[uint64]*metricDef{},
	}
	s.nodeTopics = [2]string{Topic(cfg.Group, NBIRTH, cfg.Node, ""), Topic(cfg.Group, NDEATH, cfg.Node, "")}
	alias := uint64(aliasRebirth + 1)
	for _, d := range cfg.Devices {
		if err := CheckID(d.Name); err != nil {
			return nil, fmt.Errorf("sparkplug device_id %w", err)
		}
		if _, dup := s.byName[d.Name]; dup {
			return nil, fmt.Errorf("sparkplug device %q is listed twice", d.Name)
		}
		dev := &device{name: d.Name, topics: map[MessageType]string{}, byName: map[string]*metricDef{}}
		for _, t := range []MessageType{DBIRTH, DDEATH, DDATA, DCMD} {
			dev.topics[t] = Topic(cfg.Group, t, cfg.Node, d.Name)
			s.byTopic[dev.topics[t]] = topicRef{dev, t}
		}
		for _, spec := range d.Tags {
			if _, dup := dev.byName[spec.Name]; dup {
				return nil, fmt.Errorf("sparkplug device %q: tag %q is listed twice", d.Name, spec.Name)
			}
			m := &metricDef{dev: dev, spec: spec, alias: alias, datatype: DataTypeOf(spec)}
			m.last = mapping.Sample{Tag: spec}
			alias++
			dev.tags = append(dev.tags, m)
			dev.byName[spec.Name] = m
			s.byAlias[m.alias] = m
		}
		s.devices = append(s.devices, dev)
		s.byName[d.Name] = dev
	}
	return s, nil
}

// DataType is a Sparkplug B metric datatype (the DataType enum of the
// payload definition).
type DataType uint32

// The datatypes edged uses.
const (
	TypeUnknown DataType = 0
	TypeInt8    DataType = 1
	TypeInt16   DataType = 2
	TypeInt32   DataType = 3
	TypeInt64   DataType = 4
	TypeUInt8   DataType = 5
	TypeUInt16  DataType = 6
	TypeUInt32  DataType = 7
	TypeUInt64  DataType = 8
	TypeFloat   DataType = 9
	TypeDouble  DataType = 10
	TypeBoolean DataType = 11
	TypeString  DataType = 12
)

// DataTypeOf is the Sparkplug datatype a tag is born with: its own type
// (uint32 stays UInt32, float32 is Float, int64 Int64), except that a
// scaled or offset number is a Double, because that is what scaling makes.
func DataTypeOf(spec *mapping.Spec) DataType {
	scaled := (spec.Scale != 0 && spec.Scale != 1) || spec.Offset != 0
	switch spec.Type {
	case mapping.TypeBool:
		return TypeBoolean
	case mapping.TypeString:
		return TypeString
	}
	if scaled {
		return TypeDouble
	}
	switch spec.Type {
	case mapping.TypeInt16:
		return TypeInt16
	case mapping.TypeUint16:
		return TypeUInt16
	case mapping.TypeInt32:
		return TypeInt32
	case mapping.TypeUint32:
		return TypeUInt32
	case mapping.TypeInt64:
		return TypeInt64
	case mapping.TypeUint64:
		return TypeUInt64
	case mapping.TypeFloat32:
		return TypeFloat
	}
	return TypeDouble
}

// Message is one message ready to publish: topic and wire payload.
type Message struct {
	Topic   string
	Payload []byte
}

// Errors of Next: the pending message cannot be sent in this session yet.
var (
	// ErrNodeNotBorn: no NBIRTH since Connect. Hold the message.
	ErrNodeNotBorn = errors.New("sparkplug: edge node not born on this connection")
	// ErrDeviceNotBorn: DDATA for a device without a DBIRTH on this
	// connection (it is offline). The message cannot be sent as it is.
	ErrDeviceNotBorn = errors.New("sparkplug: device not born on this connection")
	// ErrUnknownTopic: the pending message's topic is not one of this
	// node's (the config changed while it waited).
	ErrUnknownTopic = errors.New("sparkplug: topic is not one of this edge node's")
)

// Connect starts a new MQTT connection: it takes the next bdSeq (0..255,
// wrapping), forgets every birth, and returns the NDEATH to register as the
// connection's will. Call it before connecting.
func (s *Session) Connect() Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected {
		s.bdSeq++
	}
	s.connected = true
	s.nodeBorn = false
	for _, d := range s.devices {
		d.born = false
	}
	return Message{Topic: s.nodeTopics[1], Payload: s.appendNDEATH(nil)}
}

// Death is the NDEATH of the current connection (the same bdSeq as its
// will), for an edge node that goes away on purpose: when the primary host
// goes offline, publish it, then disconnect. Nothing more is sent until the
// next Connect and Births.
func (s *Session) Death() Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodeBorn = false
	for _, d := range s.devices {
		d.born = false
	}
	return Message{Topic: s.nodeTopics[1], Payload: s.appendNDEATH(nil)}
}

// BdSeq is the bdSeq of the current (or, before Connect, the first)
// connection, for the caller to keep across restarts.
func (s *Session) BdSeq() uint8 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bdSeq
}

// Births makes the NBIRTH (seq 0) and a DBIRTH for every online device, in
// the order to publish them, and resets seq: on the first connect, after a
// primary host came online, and on a Rebirth command. Their metrics carry
// the latest values handed to Data.
func (s *Session) Births() ([]Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.connected {
		return nil, errors.New("sparkplug: Births before Connect")
	}
	now := s.now()
	s.seq = 0
	out := []Message{{Topic: s.nodeTopics[0], Payload: s.appendNBIRTH(nil, now)}}
	s.nodeBorn = true
	for _, d := range s.devices {
		d.born = false
		if d.online {
			out = append(out, Message{Topic: d.topics[DBIRTH], Payload: s.appendDBIRTH(nil, d, now)})
		}
	}
	return out, nil
}

func (s *Session) nextSeq() uint64 {
	s.seq++ // wraps 255 → 0
	return uint64(s.seq)
}

// Data records samples of one device (for its next birth) and appends to
// dst the pending DDATA carrying all of them: one metric per sample, named,
// with the sample's timestamp, quality and value. It returns the topic to
// queue it under. Pass only what should be published (by exception: the
// samples that passed mapping.Filter). Data does not allocate when dst has
// room.
func (s *Session) Data(dev string, samples []mapping.Sample, dst []byte) (topic string, pending []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byName[dev]
	if d == nil {
		return "", dst, fmt.Errorf("sparkplug: unknown device %q", dev)
	}
	for i := range samples {
		sm := &samples[i]
		if sm.Tag == nil {
			continue
		}
		m := d.byName[sm.Tag.Name]
		if m == nil {
			continue
		}
		m.last = *sm
		m.last.Err = nil // births need no error text; do not keep it alive
		dst = appendPendingMetric(dst, m, sm)
	}
	return d.topics[DDATA], dst, nil
}

// Remember records samples of one device for its next birth without
// making a message: the values a DBIRTH carries when report-by-exception
// passed nothing since the session began (a session made on a reload).
func (s *Session) Remember(dev string, samples []mapping.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byName[dev]
	if d == nil {
		return
	}
	for i := range samples {
		sm := &samples[i]
		if sm.Tag == nil {
			continue
		}
		if m := d.byName[sm.Tag.Name]; m != nil {
			m.last = *sm
			m.last.Err = nil
		}
	}
}

// DeviceBirth marks dev online and returns the pending DBIRTH to queue
// (behind its earlier data); Next builds the birth when it is sent.
func (s *Session) DeviceBirth(dev string) (topic string, pending []byte, err error) {
	return s.deviceState(dev, true)
}

// DeviceDeath marks dev offline and returns the pending DDEATH to queue.
func (s *Session) DeviceDeath(dev string) (topic string, pending []byte, err error) {
	return s.deviceState(dev, false)
}

func (s *Session) deviceState(dev string, online bool) (string, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byName[dev]
	if d == nil {
		return "", nil, fmt.Errorf("sparkplug: unknown device %q", dev)
	}
	d.online = online
	if online {
		return d.topics[DBIRTH], []byte{}, nil
	}
	return d.topics[DDEATH], []byte{}, nil
}

// Next turns a pending message (from Data, DeviceBirth or DeviceDeath) into
// its wire payload at the moment it is sent, appended to dst: the next seq,
// the current aliases instead of names, the send time as payload timestamp,
// and, when historical (replayed from the buffer), is_historical on every
// metric with its original timestamp kept.
//
// It returns dst unchanged and a nil error when there is nothing to send:
// a replayed DBIRTH or DDEATH (the births at connect already told the
// host each device's current state), or DDATA whose tags are all gone from
// the config. ErrNodeNotBorn, ErrDeviceNotBorn and ErrUnknownTopic say that
// the message cannot be sent in this session.
func (s *Session) Next(dst []byte, topic string, pending []byte, historical bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.byTopic[topic]
	if !ok {
		return dst, ErrUnknownTopic
	}
	if !s.nodeBorn {
		return dst, ErrNodeNotBorn
	}
	d := ref.dev
	switch ref.typ {
	case DBIRTH:
		if historical || !d.online || d.born {
			return dst, nil
		}
		return s.appendDBIRTH(dst, d, s.now()), nil
	case DDEATH:
		if historical || !d.born {
			return dst, nil
		}
		d.born = false
		return s.appendDDEATH(dst), nil
	case DDATA:
		if !d.born {
			return dst, ErrDeviceNotBorn
		}
		return s.transcodeDDATA(dst, d, pending, historical)
	}
	return dst, ErrUnknownTopic
}
