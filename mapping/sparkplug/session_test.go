package sparkplug

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/edged-gw/edged/mapping"
)

// plant is a test node: one device with a tag of every type, one with
// floats. Its sender keeps a queue like the store-and-forward buffer does
// and calls Next when a message leaves it.
type plant struct {
	t     testing.TB
	s     *Session
	clock int64
	tags  map[string][]*mapping.Spec
	queue []queued // waiting for the link (the buffer)
	wire  []wireMsg
	up    bool
}

type queued struct {
	topic   string
	pending []byte
	want    []wantMetric
}

func mustSpec(t testing.TB, s mapping.Spec) *mapping.Spec {
	t.Helper()
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	return &s
}

func newPlant(t testing.TB) *plant {
	p := &plant{t: t, clock: 1_700_000_000_000, tags: map[string][]*mapping.Spec{}}
	p.tags["pump"] = []*mapping.Spec{
		mustSpec(t, mapping.Spec{Name: "running", Type: mapping.TypeBool}),
		mustSpec(t, mapping.Spec{Name: "i16", Type: mapping.TypeInt16}),
		mustSpec(t, mapping.Spec{Name: "u16", Type: mapping.TypeUint16}),
		mustSpec(t, mapping.Spec{Name: "i32", Type: mapping.TypeInt32}),
		mustSpec(t, mapping.Spec{Name: "u32", Type: mapping.TypeUint32}),
		mustSpec(t, mapping.Spec{Name: "i64", Type: mapping.TypeInt64}),
		mustSpec(t, mapping.Spec{Name: "u64", Type: mapping.TypeUint64}),
		mustSpec(t, mapping.Spec{Name: "f32", Type: mapping.TypeFloat32, Unit: "bar"}),
		mustSpec(t, mapping.Spec{Name: "f64", Type: mapping.TypeFloat64}),
		mustSpec(t, mapping.Spec{Name: "temp", Type: mapping.TypeInt16, Scale: 0.1, Unit: "°C"}),
		mustSpec(t, mapping.Spec{Name: "serial", Type: mapping.TypeString, Length: 4}),
	}
	for i := range 3 {
		p.tags["meter"] = append(p.tags["meter"], mustSpec(t, mapping.Spec{Name: "power_" + string(rune('a'+i)), Type: mapping.TypeFloat32, Unit: "kW"}))
	}
	s, err := New(Config{Group: "plant1", Node: "gw1", Now: func() int64 { p.clock++; return p.clock },
		Devices: []Device{{Name: "pump", Tags: p.tags["pump"]}, {Name: "meter", Tags: p.tags["meter"]}}})
	if err != nil {
		t.Fatal(err)
	}
	p.s = s
	return p
}

var wantTypes = map[string]string{
	"pump/running": "Boolean", "pump/i16": "Int16", "pump/u16": "UInt16", "pump/i32": "Int32",
	"pump/u32": "UInt32", "pump/i64": "Int64", "pump/u64": "UInt64", "pump/f32": "Float",
	"pump/f64": "Double", "pump/temp": "Double", "pump/serial": "String",
	"meter/power_a": "Float", "meter/power_b": "Float", "meter/power_c": "Float",
}

// poll makes one sample of every tag of dev, with values derived from n,
// and queues the pending DDATA.
func (p *plant) poll(dev string, n int) {
	p.clock += 1000
	var samples []mapping.Sample
	var want []wantMetric
	for _, spec := range p.tags[dev] {
		s := mapping.Sample{Tag: spec, TimeMs: p.clock}
		var w any
		switch spec.Name {
		case "running":
			s.Value, w = mapping.Value{Kind: mapping.KindBool, Bool: n%2 == 1}, n%2 == 1
		case "i16", "i32":
			s.Value, w = mapping.Value{Kind: mapping.KindInt, Int: int64(-n * 7)}, int64(-n*7)
		case "i64":
			v := int64(-1) << 40 * int64(n+1)
			s.Value, w = mapping.Value{Kind: mapping.KindInt, Int: v}, v
		case "u16":
			s.Value, w = mapping.Value{Kind: mapping.KindUint, Uint: uint64(n)}, uint64(n)
		case "u32":
			v := math.MaxUint32 - uint64(n)
			s.Value, w = mapping.Value{Kind: mapping.KindUint, Uint: v}, v
		case "u64":
			v := math.MaxUint64 - uint64(n)
			s.Value, w = mapping.Value{Kind: mapping.KindUint, Uint: v}, v
		case "f32", "power_a", "power_b", "power_c":
			f := float32(n) + 0.25
			s.Value, w = mapping.Value{Kind: mapping.KindFloat, Float: float64(f)}, f
		case "f64":
			s.Value, w = mapping.Value{Kind: mapping.KindFloat, Float: 1.0 / float64(n+3)}, 1.0/float64(n+3)
		case "temp":
			f := float64(int16(n*3)) * 0.1
			s.Value, w = mapping.Value{Kind: mapping.KindFloat, Float: f}, f
		case "serial":
			if n%5 == 0 { // a failed read: bad quality, no value
				s.Quality, w = mapping.Bad, nil
			} else {
				s.Value, w = mapping.Value{Kind: mapping.KindString, Str: "SN\"" + string(rune('A'+n%26))}, "SN\""+string(rune('A'+n%26))
			}
		}
		samples = append(samples, s)
		want = append(want, wantMetric{tag: spec.Name, value: w, ts: p.clock})
	}
	topic, pending, err := p.s.Data(dev, samples, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.queue = append(p.queue, queued{topic: topic, pending: pending, want: want})
	p.flush(false)
}

func (p *plant) device(dev string, online bool) {
	var topic string
	var pending []byte
	var err error
	if online {
		topic, pending, err = p.s.DeviceBirth(dev)
	} else {
		topic, pending, err = p.s.DeviceDeath(dev)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.queue = append(p.queue, queued{topic: topic, pending: pending})
	p.flush(false)
}

// connect: a new MQTT connection — the will, births, then the backlog
// replayed as historical.
func (p *plant) connect() {
	will := p.s.Connect()
	p.wire = append(p.wire, wireMsg{Topic: will.Topic, Payload: will.Payload})
	p.births()
	p.up = true
	p.flush(true)
}

func (p *plant) births() {
	msgs, err := p.s.Births()
	if err != nil {
		p.t.Fatal(err)
	}
	for _, m := range msgs {
		p.wire = append(p.wire, wireMsg{Topic: m.Topic, Payload: m.Payload})
	}
}

func (p *plant) flush(historical bool) {
	if !p.up {
		return
	}
	for _, q := range p.queue {
		out, err := p.s.Next(nil, q.topic, q.pending, historical)
		if err != nil {
			p.t.Fatalf("Next(%s): %v", q.topic, err)
		}
		if len(out) == 0 {
			continue // nothing to send (a replayed device birth or death)
		}
		want := q.want
		for i := range want {
			want[i].historical = historical
		}
		p.wire = append(p.wire, wireMsg{Topic: q.topic, Payload: out, want: want})
	}
	p.queue = p.queue[:0]
}

// TestSessionThroughTahu: a session with a seq wrap, two uplink outages
// with backlogs replayed across new births, a Rebirth command and a device
// outage gives a message sequence that Tahu decodes and that keeps every
// host rule: NBIRTH bdSeq = its NDEATH's, seq continuous mod 256, DBIRTH
// before DDATA, aliases from the birth only, datatypes per tag type,
// is_historical and original timestamps on replayed data.
func TestSessionThroughTahu(t *testing.T) {
	p := newPlant(t)
	p.device("pump", true)
	p.device("meter", true)
	p.connect()
	for n := range 150 { // 300 DDATA + births: seq wraps
		p.poll("pump", n)
		p.poll("meter", n)
	}
	for outage := range 2 {
		p.up = false
		for n := range 7 {
			p.poll("pump", 1000+n)
			p.poll("meter", 1000+n)
		}
		if outage == 1 { // the meter dies and comes back while the link is down
			p.device("meter", false)
			p.poll("pump", 2000)
			p.device("meter", true)
		}
		p.connect()
		p.poll("pump", 3000)
	}
	cmd, err := p.s.Command("spBv1.0/plant1/NCMD/gw1", ncmdRebirth(t))
	if err != nil || !cmd.Rebirth {
		t.Fatalf("Command(NCMD rebirth) = %+v, %v", cmd, err)
	}
	p.births()
	p.poll("pump", 4000)
	p.device("meter", false) // a live device outage
	p.poll("pump", 4001)
	p.device("meter", true)
	p.poll("meter", 4002)

	got := tahuDecode(t, p.wire)
	h := newHostCheck(t, wantTypes)
	h.run(p.wire, got)
	for typ, want := range map[string]int{"NDEATH": 3, "NBIRTH": 4, "DBIRTH": 9, "DDEATH": 1, "DDATA": 334} {
		if h.counts[typ] != want {
			t.Errorf("%d %s messages, want %d", h.counts[typ], typ, want)
		}
	}
	// Replayed: 2 outages × 7 polls × (11 pump + 3 meter tags), and the
	// pump poll made while the meter was dead.
	if want := 2*7*(11+3) + 11; h.hist != want {
		t.Errorf("%d historical metrics, want %d (every replayed one)", h.hist, want)
	}
	// The units are properties of the birth metrics, and only of those:
	// 4 pump births × (f32, temp) + 5 meter births × 3 power tags.
	units := 0
	for i, m := range got {
		for _, mt := range m.Payload.Metrics {
			if u, ok := mt.Properties[PropertyUnit]; ok {
				if u.Type != "String" || strings.Contains(m.Topic, "DDATA") {
					t.Errorf("message %d %s: %s %s", i, m.Topic, PropertyUnit, u.Type)
				}
				units++
			}
		}
	}
	if want := 4*2 + 5*3; units != want {
		t.Errorf("%d metrics with %s, want %d", units, PropertyUnit, want)
	}
}

// TestNextBeforeBirth: nothing goes out before the NBIRTH of the
// connection, and no DDATA before its device's DBIRTH.
func TestNextBeforeBirth(t *testing.T) {
	p := newPlant(t)
	topic, pending, err := p.s.Data("pump", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.s.Connect()
	if _, err := p.s.Next(nil, topic, pending, false); !errors.Is(err, ErrNodeNotBorn) {
		t.Errorf("Next before Births = %v, want ErrNodeNotBorn", err)
	}
	if _, err := p.s.Births(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.s.Next(nil, topic, pending, false); !errors.Is(err, ErrDeviceNotBorn) {
		t.Errorf("Next of an offline device's DDATA = %v, want ErrDeviceNotBorn", err)
	}
	if _, err := p.s.Next(nil, "spBv1.0/plant1/DDATA/gw1/nope", pending, false); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("Next of a foreign topic = %v, want ErrUnknownTopic", err)
	}
	bt, bp, _ := p.s.DeviceBirth("pump")
	if out, err := p.s.Next(nil, bt, bp, false); err != nil || len(out) == 0 {
		t.Fatalf("Next(DBIRTH) = %d bytes, %v", len(out), err)
	}
	if _, err := p.s.Next(nil, topic, []byte{0x12, 0x7f}, false); err == nil {
		t.Error("Next of a damaged pending DDATA = nil error")
	}
}

// TestBdSeqWraps: every Connect takes the next bdSeq, 255 → 0.
func TestBdSeqWraps(t *testing.T) {
	s, err := New(Config{Group: "g", Node: "n", BdSeq: 254, Now: func() int64 { return 1 }})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint8
	for range 3 {
		s.Connect()
		got = append(got, s.BdSeq())
	}
	if got[0] != 254 || got[1] != 255 || got[2] != 0 {
		t.Errorf("bdSeq over three connects = %v, want [254 255 0]", got)
	}
}

func TestTopic(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{Topic("g", NBIRTH, "n", ""), "spBv1.0/g/NBIRTH/n"},
		{Topic("g", DDATA, "n", "d"), "spBv1.0/g/DDATA/n/d"},
		{StateTopic("scada"), "spBv1.0/STATE/scada"},
	} {
		if tt.got != tt.want {
			t.Errorf("topic %q, want %q", tt.got, tt.want)
		}
	}
	for _, bad := range []string{"", "a/b", "a+", "#", "\xff"} {
		if CheckID(bad) == nil {
			t.Errorf("CheckID(%q) = nil, want an error", bad)
		}
	}
	if _, err := New(Config{Group: "g", Node: "n/1", Now: func() int64 { return 1 }}); err == nil {
		t.Error("New accepted edge_node_id n/1")
	}
}
