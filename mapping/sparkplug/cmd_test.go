package sparkplug

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
)

func ncmdRebirth(t testing.TB) []byte {
	t.Helper()
	b, err := proto.Marshal(&sproto.Payload{Timestamp: proto.Uint64(1), Metrics: []*sproto.Payload_Metric{{
		Name: proto.String(MetricRebirth), Datatype: proto.Uint32(uint32(TypeBoolean)),
		Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshal(t testing.TB, metrics ...*sproto.Payload_Metric) []byte {
	t.Helper()
	b, err := proto.Marshal(&sproto.Payload{Timestamp: proto.Uint64(1_700_000_000_000), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// birthAliases decodes a session's DBIRTH of dev with the generated code.
func birthAliases(t testing.TB, s *Session, dev string) map[string]uint64 {
	t.Helper()
	s.Connect()
	if _, err := s.Births(); err != nil {
		t.Fatal(err)
	}
	topic, pending, _ := s.DeviceBirth(dev)
	out, err := s.Next(nil, topic, pending, false)
	if err != nil {
		t.Fatal(err)
	}
	var p sproto.Payload
	if err := proto.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	aliases := map[string]uint64{}
	for _, m := range p.GetMetrics() {
		aliases[m.GetName()] = m.GetAlias()
	}
	return aliases
}

// TestCommand: NCMD rebirth and DCMD writes by name and by the alias of
// the device's birth, with the value typed by the tag's datatype; anything
// else is an error naming what is wrong.
func TestCommand(t *testing.T) {
	p := newPlant(t)
	aliases := birthAliases(t, p.s, "pump")
	meterAlias := birthAliases(t, p.s, "meter")["power_a"]
	dcmd := "spBv1.0/plant1/DCMD/gw1/pump"
	ncmd := "spBv1.0/plant1/NCMD/gw1"
	alias := func(tag string) *uint64 { a := aliases[tag]; return &a }
	for _, tt := range []struct {
		name    string
		topic   string
		payload []byte
		rebirth bool
		writes  []Write // Spec not compared
		err     string  // substring; "" = no error
	}{
		{name: "rebirth", topic: ncmd, payload: ncmdRebirth(t), rebirth: true},
		{name: "rebirth by alias", topic: ncmd, payload: marshal(t, &sproto.Payload_Metric{Alias: proto.Uint64(aliasRebirth), Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true}}), rebirth: true},
		{name: "rebirth false", topic: ncmd, payload: marshal(t, &sproto.Payload_Metric{Name: proto.String(MetricRebirth), Value: &sproto.Payload_Metric_BooleanValue{}}), err: "no Node Control/Rebirth = true"},
		{name: "other node command", topic: ncmd, payload: marshal(t, &sproto.Payload_Metric{Name: proto.String("Node Control/Reboot"), Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true}}), err: "unsupported"},
		{name: "rebirth as a string", topic: ncmd, payload: marshal(t, &sproto.Payload_Metric{Name: proto.String(MetricRebirth), Value: &sproto.Payload_Metric_StringValue{StringValue: "true"}}), err: "Boolean"},
		{name: "garbage NCMD", topic: ncmd, payload: []byte{0x12, 0xff, 0x01}, err: "NCMD"},
		{
			name: "by name", topic: dcmd,
			payload: marshal(t, &sproto.Payload_Metric{Name: proto.String("running"), Datatype: proto.Uint32(uint32(TypeBoolean)), Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true}}),
			writes:  []Write{{Device: "pump", Tag: "running", Value: mapping.Value{Kind: mapping.KindBool, Bool: true}, TimeMs: 1_700_000_000_000}},
		},
		{
			name: "by alias, negative Int16 from the birth's datatype", topic: dcmd,
			payload: marshal(t, &sproto.Payload_Metric{Alias: alias("i16"), Timestamp: proto.Uint64(5), Value: &sproto.Payload_Metric_IntValue{IntValue: uint32(0xFFFFFF85)}}),
			writes:  []Write{{Device: "pump", Tag: "i16", Value: mapping.Value{Kind: mapping.KindInt, Int: -123}, TimeMs: 5}},
		},
		{
			name: "many metrics, UInt32 and Float and String", topic: dcmd,
			payload: marshal(t,
				&sproto.Payload_Metric{Alias: alias("u32"), Value: &sproto.Payload_Metric_LongValue{LongValue: 4_000_000_000}},
				&sproto.Payload_Metric{Name: proto.String("f32"), Value: &sproto.Payload_Metric_FloatValue{FloatValue: 2.5}},
				&sproto.Payload_Metric{Name: proto.String("serial"), Value: &sproto.Payload_Metric_StringValue{StringValue: "X1"}}),
			writes: []Write{
				{Device: "pump", Tag: "u32", Value: mapping.Value{Kind: mapping.KindUint, Uint: 4_000_000_000}, TimeMs: 1_700_000_000_000},
				{Device: "pump", Tag: "f32", Value: mapping.Value{Kind: mapping.KindFloat, Float: 2.5}, TimeMs: 1_700_000_000_000},
				{Device: "pump", Tag: "serial", Value: mapping.Value{Kind: mapping.KindString, Str: "X1"}, TimeMs: 1_700_000_000_000},
			},
		},
		{
			name: "one bad metric keeps the good one", topic: dcmd,
			payload: marshal(t,
				&sproto.Payload_Metric{Name: proto.String("nope"), Value: &sproto.Payload_Metric_BooleanValue{}},
				&sproto.Payload_Metric{Name: proto.String("i64"), Value: &sproto.Payload_Metric_LongValue{LongValue: ^uint64(0)}}),
			writes: []Write{{Device: "pump", Tag: "i64", Value: mapping.Value{Kind: mapping.KindInt, Int: -1}, TimeMs: 1_700_000_000_000}},
			err:    `no tag "nope"`,
		},
		{name: "alias of another device", topic: dcmd, payload: marshal(t, &sproto.Payload_Metric{Alias: &meterAlias, Value: &sproto.Payload_Metric_FloatValue{FloatValue: 1}}), err: "not a tag of this device"},
		{name: "null", topic: dcmd, payload: marshal(t, &sproto.Payload_Metric{Name: proto.String("f64"), IsNull: proto.Bool(true)}), err: "is_null"},
		{name: "no value", topic: dcmd, payload: marshal(t, &sproto.Payload_Metric{Name: proto.String("f64")}), err: "no value"},
		{name: "bytes", topic: dcmd, payload: marshal(t, &sproto.Payload_Metric{Name: proto.String("f64"), Value: &sproto.Payload_Metric_BytesValue{BytesValue: []byte{1}}}), err: "booleans, numbers and strings"},
		{name: "no metrics", topic: dcmd, payload: marshal(t), err: "no metrics"},
		{name: "garbage DCMD", topic: dcmd, payload: []byte{0xff}, err: "DCMD pump"},
		{name: "foreign node", topic: "spBv1.0/plant1/DCMD/gw2/pump", payload: marshal(t), err: ErrNotCommand.Error()},
		{name: "data topic", topic: "spBv1.0/plant1/DDATA/gw1/pump", payload: marshal(t), err: ErrNotCommand.Error()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := p.s.Command(tt.topic, tt.payload)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Command error %v, want %q", err, tt.err)
			}
			if cmd.Rebirth != tt.rebirth {
				t.Errorf("Rebirth = %v, want %v", cmd.Rebirth, tt.rebirth)
			}
			if len(cmd.Writes) != len(tt.writes) {
				t.Fatalf("writes %+v, want %+v", cmd.Writes, tt.writes)
			}
			for i, w := range cmd.Writes {
				want := tt.writes[i]
				if w.Spec == nil || w.Spec.Name != want.Tag {
					t.Errorf("write %d: Spec %v, want the spec of %q", i, w.Spec, want.Tag)
				}
				w.Spec = nil
				if w != want {
					t.Errorf("write %d = %+v, want %+v", i, w, want)
				}
			}
		})
	}
}
