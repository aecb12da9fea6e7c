package sparkplug

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
)

// Payloads are written with protowire, field by field, into the caller's
// buffer: the generated structs (package sproto) box every proto2 optional
// field in a pointer, which would cost several allocations per metric on
// the hot path. The tests decode everything written here with both the
// generated code and Eclipse Tahu's JavaScript decoder.

// Field numbers of the spBv1.0 payload (sproto/sparkplug_b.proto).
const (
	fPayloadTimestamp protowire.Number = 1
	fPayloadMetrics   protowire.Number = 2
	fPayloadSeq       protowire.Number = 3

	fMetricName         protowire.Number = 1
	fMetricAlias        protowire.Number = 2
	fMetricTimestamp    protowire.Number = 3
	fMetricDatatype     protowire.Number = 4
	fMetricIsHistorical protowire.Number = 5
	fMetricIsNull       protowire.Number = 7
	fMetricProperties   protowire.Number = 9
	fMetricInt          protowire.Number = 10
	fMetricLong         protowire.Number = 11
	fMetricFloat        protowire.Number = 12
	fMetricDouble       protowire.Number = 13
	fMetricBool         protowire.Number = 14
	fMetricString       protowire.Number = 15

	fSetKeys   protowire.Number = 1
	fSetValues protowire.Number = 2

	fPropType   protowire.Number = 1
	fPropInt    protowire.Number = 3
	fPropString protowire.Number = 8
)

// Property names on metrics. engUnit is what Ignition's MQTT Engine and
// Tahu's examples use for engineering units.
const (
	PropertyUnit    = "engUnit"
	PropertyQuality = "Quality"
)

// Quality codes of the Quality property (OPC DA, as Sparkplug hosts read
// them): only non-good samples carry the property.
const (
	QualityBad       = 0
	QualityUncertain = 64
	QualityGood      = 192
)

// beginLen starts a length-delimited field; endLen closes it by inserting
// the length in front of what was appended since (no allocation when dst
// has room: the body moves by the few bytes of its length).
func beginLen(dst []byte, f protowire.Number) ([]byte, int) {
	dst = protowire.AppendTag(dst, f, protowire.BytesType)
	return dst, len(dst)
}

func endLen(dst []byte, at int) []byte {
	n := len(dst) - at
	k := protowire.SizeVarint(uint64(n))
	dst = append(dst, make([]byte, k)...)
	copy(dst[at+k:], dst[at:at+n])
	protowire.AppendVarint(dst[at:at], uint64(n))
	return dst
}

func appendVarintField(dst []byte, f protowire.Number, v uint64) []byte {
	dst = protowire.AppendTag(dst, f, protowire.VarintType)
	return protowire.AppendVarint(dst, v)
}

func appendStringField(dst []byte, f protowire.Number, s string) []byte {
	dst = protowire.AppendTag(dst, f, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

// appendValue writes v as datatype dt: the value field Tahu's decoders
// read for that datatype (UInt32 in long_value, which Tahu's JavaScript
// decoder requires and its Java decoder accepts), or is_null when v has
// no value or none of that type.
func appendValue(dst []byte, dt DataType, v mapping.Value) []byte {
	if v.Kind == mapping.KindNone {
		return appendVarintField(dst, fMetricIsNull, 1)
	}
	switch dt {
	case TypeBoolean:
		b, ok := asBool(v)
		if !ok {
			break
		}
		return appendVarintField(dst, fMetricBool, protowire.EncodeBool(b))
	case TypeInt8, TypeInt16, TypeInt32:
		i, ok := asInt(v)
		if !ok {
			break
		}
		return appendVarintField(dst, fMetricInt, uint64(uint32(int32(i))))
	case TypeUInt8, TypeUInt16:
		i, ok := asInt(v)
		if !ok {
			break
		}
		return appendVarintField(dst, fMetricInt, uint64(uint32(i)))
	case TypeUInt32, TypeUInt64:
		if v.Kind == mapping.KindUint {
			return appendVarintField(dst, fMetricLong, v.Uint)
		}
		i, ok := asInt(v)
		if !ok {
			break
		}
		return appendVarintField(dst, fMetricLong, uint64(i))
	case TypeInt64:
		i, ok := asInt(v)
		if !ok {
			break
		}
		return appendVarintField(dst, fMetricLong, uint64(i))
	case TypeFloat:
		f, ok := v.Float64()
		if !ok {
			break
		}
		dst = protowire.AppendTag(dst, fMetricFloat, protowire.Fixed32Type)
		return protowire.AppendFixed32(dst, math.Float32bits(float32(f)))
	case TypeDouble:
		f, ok := v.Float64()
		if !ok {
			break
		}
		dst = protowire.AppendTag(dst, fMetricDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, math.Float64bits(f))
	case TypeString:
		if v.Kind == mapping.KindString || v.Kind == mapping.KindJSON {
			return appendStringField(dst, fMetricString, v.Str)
		}
	}
	return appendVarintField(dst, fMetricIsNull, 1)
}

func asBool(v mapping.Value) (bool, bool) {
	if v.Kind == mapping.KindBool {
		return v.Bool, true
	}
	f, ok := v.Float64()
	return f != 0, ok
}

func asInt(v mapping.Value) (int64, bool) {
	switch v.Kind {
	case mapping.KindInt:
		return v.Int, true
	case mapping.KindUint:
		return int64(v.Uint), true
	case mapping.KindBool:
		if v.Bool {
			return 1, true
		}
		return 0, true
	case mapping.KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return 0, false
		}
		return int64(math.Round(v.Float)), true
	}
	return 0, false
}

// appendQuality writes the Quality property set of a non-good sample, and
// engineering units when unit is not empty; nothing for a good sample
// without unit.
func appendProperties(dst []byte, unit string, q mapping.Quality, withQuality bool) []byte {
	hasQ := withQuality && q != mapping.Good
	if unit == "" && !hasQ {
		return dst
	}
	dst, at := beginLen(dst, fMetricProperties)
	if unit != "" {
		dst = appendStringField(dst, fSetKeys, PropertyUnit)
	}
	if hasQ {
		dst = appendStringField(dst, fSetKeys, PropertyQuality)
	}
	if unit != "" {
		var v int
		dst, v = beginLen(dst, fSetValues)
		dst = appendVarintField(dst, fPropType, uint64(TypeString))
		dst = appendStringField(dst, fPropString, unit)
		dst = endLen(dst, v)
	}
	if hasQ {
		code := QualityBad
		if q == mapping.Uncertain {
			code = QualityUncertain
		}
		var v int
		dst, v = beginLen(dst, fSetValues)
		dst = appendVarintField(dst, fPropType, uint64(TypeInt32))
		dst = appendVarintField(dst, fPropInt, uint64(code))
		dst = endLen(dst, v)
	}
	return endLen(dst, at)
}

// appendPendingMetric writes one sample as a metric of a pending DDATA:
// by name (Next swaps in the alias), without datatype.
func appendPendingMetric(dst []byte, m *metricDef, sm *mapping.Sample) []byte {
	dst, at := beginLen(dst, fPayloadMetrics)
	dst = appendStringField(dst, fMetricName, m.spec.Name)
	dst = appendVarintField(dst, fMetricTimestamp, uint64(sm.TimeMs))
	dst = appendProperties(dst, "", sm.Quality, true)
	dst = appendValue(dst, m.datatype, sm.Value)
	return endLen(dst, at)
}

// appendBirthMetric writes a device metric of a DBIRTH: name, alias,
// datatype, units and the latest value.
func appendBirthMetric(dst []byte, m *metricDef, now int64) []byte {
	ts := m.last.TimeMs
	if ts == 0 {
		ts = now
	}
	dst, at := beginLen(dst, fPayloadMetrics)
	dst = appendStringField(dst, fMetricName, m.spec.Name)
	dst = appendVarintField(dst, fMetricAlias, m.alias)
	dst = appendVarintField(dst, fMetricTimestamp, uint64(ts))
	dst = appendVarintField(dst, fMetricDatatype, uint64(m.datatype))
	dst = appendProperties(dst, m.spec.Unit, m.last.Quality, m.last.Value.Kind != mapping.KindNone)
	dst = appendValue(dst, m.datatype, m.last.Value)
	return endLen(dst, at)
}

func (s *Session) appendBdSeq(dst []byte, now int64) []byte {
	dst, at := beginLen(dst, fPayloadMetrics)
	dst = appendStringField(dst, fMetricName, MetricBdSeq)
	dst = appendVarintField(dst, fMetricTimestamp, uint64(now))
	dst = appendVarintField(dst, fMetricDatatype, uint64(TypeUInt64))
	dst = appendVarintField(dst, fMetricLong, uint64(s.bdSeq))
	return endLen(dst, at)
}

// appendNDEATH: timestamp and bdSeq, no seq (it is the MQTT will).
func (s *Session) appendNDEATH(dst []byte) []byte {
	now := s.now()
	dst = appendVarintField(dst, fPayloadTimestamp, uint64(now))
	return s.appendBdSeq(dst, now)
}

// appendNBIRTH: bdSeq, Node Control/Rebirth, seq 0.
func (s *Session) appendNBIRTH(dst []byte, now int64) []byte {
	dst = appendVarintField(dst, fPayloadTimestamp, uint64(now))
	dst = s.appendBdSeq(dst, now)
	dst, at := beginLen(dst, fPayloadMetrics)
	dst = appendStringField(dst, fMetricName, MetricRebirth)
	dst = appendVarintField(dst, fMetricAlias, aliasRebirth)
	dst = appendVarintField(dst, fMetricTimestamp, uint64(now))
	dst = appendVarintField(dst, fMetricDatatype, uint64(TypeBoolean))
	dst = appendVarintField(dst, fMetricBool, 0)
	dst = endLen(dst, at)
	return appendVarintField(dst, fPayloadSeq, 0)
}

func (s *Session) appendDBIRTH(dst []byte, d *device, now int64) []byte {
	dst = appendVarintField(dst, fPayloadTimestamp, uint64(now))
	for _, m := range d.tags {
		dst = appendBirthMetric(dst, m, now)
	}
	d.born = true
	return appendVarintField(dst, fPayloadSeq, s.nextSeq())
}

func (s *Session) appendDDEATH(dst []byte) []byte {
	dst = appendVarintField(dst, fPayloadTimestamp, uint64(s.now()))
	return appendVarintField(dst, fPayloadSeq, s.nextSeq())
}

var errPending = errors.New("sparkplug: damaged pending DDATA")

// copyable says whether a field of a pending metric goes on the wire: the
// fields Data writes, with their wire types; a damaged buffer entry may
// hold anything else, which a host must not be sent.
func copyable(num protowire.Number, typ protowire.Type, field []byte) bool {
	switch num {
	case fMetricTimestamp, fMetricIsNull, fMetricInt, fMetricLong, fMetricBool:
		return typ == protowire.VarintType
	case fMetricFloat:
		return typ == protowire.Fixed32Type
	case fMetricDouble:
		return typ == protowire.Fixed64Type
	case fMetricString:
		return typ == protowire.BytesType
	case fMetricProperties:
		// Only non-good samples have properties: validating costs an
		// allocation there and nothing on the good path.
		if typ != protowire.BytesType {
			return false
		}
		_, _, n := protowire.ConsumeTag(field)
		body, _ := protowire.ConsumeBytes(field[n:])
		return proto.Unmarshal(body, &sproto.Payload_PropertySet{}) == nil
	}
	return false
}

// transcodeDDATA writes the wire DDATA of a pending one: payload timestamp
// now, each metric by alias instead of name (a name no longer in the
// config is dropped), is_historical when replayed, then seq.
func (s *Session) transcodeDDATA(dst []byte, d *device, pending []byte, historical bool) ([]byte, error) {
	start := len(dst)
	dst = appendVarintField(dst, fPayloadTimestamp, uint64(s.now()))
	metrics := 0
	for b := pending; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst[:start], fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
		}
		b = b[n:]
		if num != fPayloadMetrics || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return dst[:start], fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		body, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return dst[:start], fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
		}
		b = b[n:]
		var ok bool
		var err error
		dst, ok, err = transcodeMetric(dst, d, body, historical)
		if err != nil {
			return dst[:start], err
		}
		if ok {
			metrics++
		}
	}
	if metrics == 0 {
		return dst[:start], nil
	}
	return appendVarintField(dst, fPayloadSeq, s.nextSeq()), nil
}

// transcodeMetric appends the wire form of one pending metric; ok is false
// when its tag is no longer configured (nothing appended).
func transcodeMetric(dst []byte, d *device, body []byte, historical bool) (_ []byte, ok bool, _ error) {
	var m *metricDef
	// First pass: find the name.
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst, false, fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
		}
		b = b[n:]
		if num == fMetricName && typ == protowire.BytesType {
			name, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return dst, false, fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
			}
			m = d.byName[string(name)]
			break
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return dst, false, fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
		}
		b = b[n:]
	}
	if m == nil {
		return dst, false, nil
	}
	dst, at := beginLen(dst, fPayloadMetrics)
	dst = appendVarintField(dst, fMetricAlias, m.alias)
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst, false, fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
		}
		field := b
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return dst, false, fmt.Errorf("%w: %v", errPending, protowire.ParseError(n))
		}
		field = field[:len(field)-len(b)+n]
		b = b[n:]
		if !copyable(num, typ, field) {
			continue
		}
		dst = append(dst, field...)
	}
	if historical {
		dst = appendVarintField(dst, fMetricIsHistorical, 1)
	}
	return endLen(dst, at), true, nil
}
