package sparkplug

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
)

// Command is what an NCMD or DCMD asks of the edge node.
type Command struct {
	// Rebirth: NCMD Node Control/Rebirth = true. Publish Births() again.
	Rebirth bool
	// Writes: the DCMD's metrics, each resolved to a configured tag. They
	// are requests only: the write door applies the tag's policy
	// (writable, min/max, write_interval) and audits them.
	Writes []Write
}

// Write is one DCMD metric: set Tag of Device to Value.
type Write struct {
	Device string
	Tag    string
	Spec   *mapping.Spec
	Value  mapping.Value
	// TimeMs is the metric's timestamp, or the payload's, 0 when neither
	// is set: for the write door's max_command_age.
	TimeMs int64
}

// ErrNotCommand: the topic is not an NCMD or DCMD of this edge node.
var ErrNotCommand = errors.New("sparkplug: not a command topic of this edge node")

// Command decodes an NCMD (Node Control/Rebirth) or a DCMD (metric writes,
// by name or alias) sent to this node. Anything a broker can deliver gives
// either a Command or an error, never a panic; a DCMD with some metrics
// that cannot be resolved returns the ones that can, with an error naming
// the others.
func (s *Session) Command(topic string, payload []byte) (Command, error) {
	var p sproto.Payload
	if topic == Topic(s.group, NCMD, s.node, "") {
		if err := proto.Unmarshal(payload, &p); err != nil {
			return Command{}, fmt.Errorf("sparkplug NCMD: %w", err)
		}
		return nodeCommand(&p)
	}
	ref, ok := s.byTopic[topic] // written only by New: no lock needed
	if !ok || ref.typ != DCMD {
		return Command{}, ErrNotCommand
	}
	if err := proto.Unmarshal(payload, &p); err != nil {
		return Command{}, fmt.Errorf("sparkplug DCMD %s: %w", ref.dev.name, err)
	}
	var cmd Command
	var errs []error
	for i, pm := range p.GetMetrics() {
		m, err := s.resolve(ref.dev, pm)
		if err != nil {
			errs = append(errs, fmt.Errorf("sparkplug DCMD %s metric %d: %w", ref.dev.name, i, err))
			continue
		}
		v, err := metricValue(pm, m.datatype)
		if err != nil {
			errs = append(errs, fmt.Errorf("sparkplug DCMD %s tag %q: %w", ref.dev.name, m.spec.Name, err))
			continue
		}
		ts := pm.GetTimestamp()
		if ts == 0 {
			ts = p.GetTimestamp()
		}
		cmd.Writes = append(cmd.Writes, Write{Device: ref.dev.name, Tag: m.spec.Name, Spec: m.spec, Value: v, TimeMs: clampMs(ts)})
	}
	if len(cmd.Writes) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("sparkplug DCMD %s: no metrics", ref.dev.name))
	}
	return cmd, errors.Join(errs...)
}

func clampMs(ts uint64) int64 {
	if ts > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(ts)
}

func nodeCommand(p *sproto.Payload) (Command, error) {
	var cmd Command
	var errs []error
	for i, pm := range p.GetMetrics() {
		if pm.GetName() != MetricRebirth && !(pm.Name == nil && pm.Alias != nil && pm.GetAlias() == aliasRebirth) {
			errs = append(errs, fmt.Errorf("sparkplug NCMD metric %d (%q): unsupported, edged understands only %q", i, pm.GetName(), MetricRebirth))
			continue
		}
		b, ok := pm.GetValue().(*sproto.Payload_Metric_BooleanValue)
		if !ok {
			errs = append(errs, fmt.Errorf("sparkplug NCMD %s: want a Boolean value", MetricRebirth))
			continue
		}
		cmd.Rebirth = cmd.Rebirth || b.BooleanValue
	}
	if !cmd.Rebirth && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("sparkplug NCMD: no %s = true in it", MetricRebirth))
	}
	return cmd, errors.Join(errs...)
}

// resolve finds the tag a DCMD metric names (name wins over alias).
func (s *Session) resolve(d *device, pm *sproto.Payload_Metric) (*metricDef, error) {
	if pm.Name != nil {
		if m := d.byName[pm.GetName()]; m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("no tag %q on this device", pm.GetName())
	}
	if pm.Alias != nil {
		if m := s.byAlias[pm.GetAlias()]; m != nil && m.dev == d {
			return m, nil
		}
		return nil, fmt.Errorf("alias %d is not a tag of this device", pm.GetAlias())
	}
	return nil, errors.New("neither name nor alias")
}

// metricValue is a DCMD metric's value as a mapping.Value, read by the
// metric's datatype when it has one and by the tag's otherwise.
func metricValue(pm *sproto.Payload_Metric, tagType DataType) (mapping.Value, error) {
	dt := tagType
	if pm.Datatype != nil {
		dt = DataType(pm.GetDatatype())
	}
	if pm.GetIsNull() {
		return mapping.Value{}, errors.New("is_null: a write needs a value")
	}
	switch v := pm.GetValue().(type) {
	case *sproto.Payload_Metric_BooleanValue:
		return mapping.Value{Kind: mapping.KindBool, Bool: v.BooleanValue}, nil
	case *sproto.Payload_Metric_IntValue:
		switch dt {
		case TypeInt8:
			return mapping.Value{Kind: mapping.KindInt, Int: int64(int8(v.IntValue))}, nil
		case TypeInt16:
			return mapping.Value{Kind: mapping.KindInt, Int: int64(int16(v.IntValue))}, nil
		case TypeInt32, TypeInt64:
			return mapping.Value{Kind: mapping.KindInt, Int: int64(int32(v.IntValue))}, nil
		}
		return mapping.Value{Kind: mapping.KindUint, Uint: uint64(v.IntValue)}, nil
	case *sproto.Payload_Metric_LongValue:
		switch dt {
		case TypeInt8, TypeInt16, TypeInt32, TypeInt64:
			return mapping.Value{Kind: mapping.KindInt, Int: int64(v.LongValue)}, nil
		}
		return mapping.Value{Kind: mapping.KindUint, Uint: v.LongValue}, nil
	case *sproto.Payload_Metric_FloatValue:
		return mapping.Value{Kind: mapping.KindFloat, Float: float64(v.FloatValue)}, nil
	case *sproto.Payload_Metric_DoubleValue:
		return mapping.Value{Kind: mapping.KindFloat, Float: v.DoubleValue}, nil
	case *sproto.Payload_Metric_StringValue:
		return mapping.Value{Kind: mapping.KindString, Str: v.StringValue}, nil
	case nil:
		return mapping.Value{}, errors.New("no value")
	}
	return mapping.Value{}, fmt.Errorf("value of type %T: edged writes booleans, numbers and strings only", pm.GetValue())
}
