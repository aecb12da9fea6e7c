package opcua

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
)

var discard = slog.New(slog.DiscardHandler)

// quality maps an OPC UA status code onto good/uncertain/bad by its top
// two bits (Part 4, 7.34.1): 00 good, 01 uncertain, 10 and 11 bad.
func quality(sc ua.StatusCode) mapping.Quality {
	switch uint32(sc) >> 30 {
	case 0:
		return mapping.Good
	case 1:
		return mapping.Uncertain
	}
	return mapping.Bad
}

// StatusError keeps the original status code of a non-good value; its
// text is the code's OPC UA name and hex value: "BadNodeIdUnknown
// (0x80340000)".
type StatusError struct{ Code ua.StatusCode }

func (e *StatusError) Error() string { return statusText(e.Code) }

// Unwrap lets errors.Is(err, ua.StatusBadNodeIDUnknown) work.
func (e *StatusError) Unwrap() error { return e.Code }

// DeviceRefused implements southbound.DeviceRefusal: the server answered.
func (e *StatusError) DeviceRefused() bool { return true }

func statusText(sc ua.StatusCode) string {
	name := ""
	if d, ok := ua.StatusCodes[sc&0xFFFF0000]; ok {
		// gopcua spells them StatusBadNodeIDUnknown; the specification BadNodeIdUnknown.
		name = strings.ReplaceAll(strings.TrimPrefix(d.Name, "Status"), "ID", "Id")
	}
	if name == "" || name == "OK" {
		switch quality(sc) {
		case mapping.Good:
			name = "Good"
		case mapping.Uncertain:
			name = "Uncertain"
		default:
			name = "Bad"
		}
	}
	return fmt.Sprintf("%s (0x%08X)", name, uint32(sc))
}

// statusErrs caches one error per code so that a node that stays bad does
// not allocate an error per notification.
var statusErrs sync.Map // ua.StatusCode → error

func statusErr(sc ua.StatusCode) error {
	if e, ok := statusErrs.Load(sc); ok {
		return e.(error)
	}
	e, _ := statusErrs.LoadOrStore(sc, &StatusError{Code: sc})
	return e.(error)
}

// fill sets s from one DataValue: quality from its status (the code kept in
// Err when not good), value converted and scaled, time the source
// timestamp when the server gives one, else now.
func fill(s *mapping.Sample, dv *ua.DataValue, now int64) {
	s.TimeMs = now
	if dv == nil {
		s.Value, s.Quality, s.Err = mapping.Value{}, mapping.Bad, statusErr(ua.StatusBad)
		return
	}
	if !dv.SourceTimestamp.IsZero() && dv.EncodingMask&ua.DataValueSourceTimestamp != 0 {
		s.TimeMs = dv.SourceTimestamp.UnixMilli()
	}
	s.Quality, s.Err = quality(dv.Status), nil
	if s.Quality != mapping.Good {
		s.Err = statusErr(dv.Status)
	}
	if s.Quality == mapping.Bad || dv.Value == nil {
		s.Value = mapping.Value{}
		return
	}
	v, err := toValue(dv.Value.Value(), s.Tag)
	if err != nil {
		s.Value, s.Quality, s.Err = mapping.Value{}, mapping.Bad, err
		return
	}
	s.Value = v
}

func scaled(t *mapping.Spec) bool { return t != nil && t.Scaled() }

func scale(t *mapping.Spec, f float64) mapping.Value {
	return mapping.Value{Kind: mapping.KindFloat, Float: t.ToEngineering(f)}
}

// toValue converts a decoded Variant value. Numbers and booleans do not
// allocate; DateTime becomes an RFC 3339 string (UTC, milliseconds),
// ByteString base64, Guid/NodeId/QualifiedName/LocalizedText their text,
// arrays and structures JSON.
func toValue(x any, t *mapping.Spec) (mapping.Value, error) {
	var v mapping.Value
	switch x := x.(type) {
	case bool:
		return mapping.Value{Kind: mapping.KindBool, Bool: x}, nil
	case int8:
		v = mapping.Value{Kind: mapping.KindInt, Int: int64(x)}
	case int16:
		v = mapping.Value{Kind: mapping.KindInt, Int: int64(x)}
	case int32:
		v = mapping.Value{Kind: mapping.KindInt, Int: int64(x)}
	case int64:
		v = mapping.Value{Kind: mapping.KindInt, Int: x}
	case uint8:
		v = mapping.Value{Kind: mapping.KindUint, Uint: uint64(x)}
	case uint16:
		v = mapping.Value{Kind: mapping.KindUint, Uint: uint64(x)}
	case uint32:
		v = mapping.Value{Kind: mapping.KindUint, Uint: uint64(x)}
	case uint64:
		v = mapping.Value{Kind: mapping.KindUint, Uint: x}
	case float32:
		v = mapping.Value{Kind: mapping.KindFloat, Float: float64(x), Float32: true}
	case float64:
		v = mapping.Value{Kind: mapping.KindFloat, Float: x}
	case string:
		return mapping.Value{Kind: mapping.KindString, Str: x}, nil
	case time.Time:
		return mapping.Value{Kind: mapping.KindString, Str: x.UTC().Format("2006-01-02T15:04:05.000Z07:00")}, nil
	case []byte:
		return mapping.Value{Kind: mapping.KindString, Str: base64.StdEncoding.EncodeToString(x)}, nil
	case *ua.GUID:
		return mapping.Value{Kind: mapping.KindString, Str: x.String()}, nil
	case *ua.NodeID:
		return mapping.Value{Kind: mapping.KindString, Str: x.String()}, nil
	case *ua.ExpandedNodeID:
		return mapping.Value{Kind: mapping.KindString, Str: x.String()}, nil
	case *ua.QualifiedName:
		return mapping.Value{Kind: mapping.KindString, Str: x.Name}, nil
	case *ua.LocalizedText:
		return mapping.Value{Kind: mapping.KindString, Str: x.Text}, nil
	case ua.StatusCode:
		return mapping.Value{Kind: mapping.KindUint, Uint: uint64(x)}, nil
	case nil:
		return mapping.Value{}, nil
	default:
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return mapping.Value{}, fmt.Errorf("value of type %T cannot be published: %v", x, err)
		}
		return mapping.Value{Kind: mapping.KindJSON, Str: string(b)}, nil
	}
	if scaled(t) {
		f, _ := v.Float64()
		return scale(t, f), nil
	}
	return v, nil
}

// jsonable rewrites what encoding/json would write differently from our
// scalar payloads: []time.Time as RFC 3339, [][]byte as base64 (the
// default), NaN/Inf floats as strings, ExtensionObjects as their value.
func jsonable(x any) any {
	switch x := x.(type) {
	case []float32:
		out := make([]any, len(x))
		for i, f := range x {
			if v := jsonFloat(float64(f)); v != float64(f) {
				out[i] = v // NaN, ±Inf as strings
			} else {
				out[i] = f // encoding/json writes a float32's shortest form
			}
		}
		return out
	case []float64:
		out := make([]any, len(x))
		for i, f := range x {
			out[i] = jsonFloat(f)
		}
		return out
	case []time.Time:
		out := make([]string, len(x))
		for i, t := range x {
			out[i] = t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		return out
	case []*ua.LocalizedText:
		out := make([]string, len(x))
		for i, t := range x {
			if t != nil {
				out[i] = t.Text
			}
		}
		return out
	case *ua.ExtensionObject:
		if x != nil {
			return x.Value
		}
	case []*ua.ExtensionObject:
		out := make([]any, len(x))
		for i, e := range x {
			if e != nil {
				out[i] = e.Value
			}
		}
		return out
	}
	return x
}

func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}

// fromValue makes the Variant a write sends: the value with the tag's
// scale and offset undone, converted to typ (the tag's configured type or
// the node's current one). Out-of-range and non-convertible values are
// refused before anything is sent.
func fromValue(v mapping.Value, t *mapping.Spec, typ ua.TypeID) (*ua.Variant, error) {
	raw := v
	if scaled(t) && v.Kind != mapping.KindBool && v.Kind != mapping.KindString {
		f, _ := v.Float64()
		raw = mapping.Value{Kind: mapping.KindFloat, Float: t.ToRaw(f)}
	}
	f, numeric := raw.Float64()
	intIn := func(lo, hi float64) (int64, error) {
		if !numeric || raw.Kind == mapping.KindBool {
			return 0, fmt.Errorf("%s needs a number, got a %s", typ, raw.Kind)
		}
		if raw.Kind == mapping.KindFloat {
			f = math.Round(f)
		}
		if f < lo || f > hi {
			return 0, fmt.Errorf("%v is outside the range of %s (%v..%v)", f, typ, lo, hi)
		}
		if raw.Kind == mapping.KindInt {
			return raw.Int, nil
		}
		return int64(f), nil
	}
	var x any
	var err error
	switch typ {
	case ua.TypeIDBoolean:
		switch raw.Kind {
		case mapping.KindBool:
			x = raw.Bool
		case mapping.KindInt, mapping.KindUint, mapping.KindFloat:
			if f != 0 && f != 1 {
				return nil, fmt.Errorf("a Boolean takes true/false or 0/1, got %v", f)
			}
			x = f == 1
		default:
			return nil, fmt.Errorf("a Boolean takes true/false or 0/1, got a %s", raw.Kind)
		}
	case ua.TypeIDSByte:
		x, err = intAs[int8](intIn, math.MinInt8, math.MaxInt8)
	case ua.TypeIDByte:
		x, err = intAs[uint8](intIn, 0, math.MaxUint8)
	case ua.TypeIDInt16:
		x, err = intAs[int16](intIn, math.MinInt16, math.MaxInt16)
	case ua.TypeIDUint16:
		x, err = intAs[uint16](intIn, 0, math.MaxUint16)
	case ua.TypeIDInt32:
		x, err = intAs[int32](intIn, math.MinInt32, math.MaxInt32)
	case ua.TypeIDUint32:
		x, err = intAs[uint32](intIn, 0, math.MaxUint32)
	case ua.TypeIDInt64:
		x, err = intAs[int64](intIn, math.MinInt64, math.MaxInt64)
	case ua.TypeIDUint64:
		if raw.Kind == mapping.KindUint {
			x = raw.Uint
			break
		}
		x, err = intAs[uint64](intIn, 0, math.MaxInt64)
	case ua.TypeIDFloat:
		if !numeric || raw.Kind == mapping.KindBool {
			return nil, fmt.Errorf("a Float needs a number, got a %s", raw.Kind)
		}
		if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v is outside the range of a Float", f)
		}
		x = float32(f)
	case ua.TypeIDDouble:
		if !numeric || raw.Kind == mapping.KindBool {
			return nil, fmt.Errorf("a Double needs a number, got a %s", raw.Kind)
		}
		x = f
	case ua.TypeIDString:
		if raw.Kind != mapping.KindString {
			return nil, fmt.Errorf("a String needs a string, got a %s", raw.Kind)
		}
		x = raw.Str
	default:
		return nil, fmt.Errorf("writing a %s node is not supported: edged writes Boolean, integers, Float, Double and String", typ)
	}
	if err != nil {
		return nil, err
	}
	return ua.NewVariant(x)
}

// intAs converts through check (the range and kind test of fromValue) to
// the integer type T of an OPC UA node.
func intAs[T int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64](check func(lo, hi float64) (int64, error), lo, hi float64) (any, error) {
	n, err := check(lo, hi)
	if err != nil {
		return nil, err
	}
	return T(n), nil
}

// typeOf is the OPC UA type a tag's configured type is written as.
func typeOf(t mapping.Type) ua.TypeID {
	switch t {
	case mapping.TypeBool:
		return ua.TypeIDBoolean
	case mapping.TypeInt16:
		return ua.TypeIDInt16
	case mapping.TypeUint16:
		return ua.TypeIDUint16
	case mapping.TypeInt32:
		return ua.TypeIDInt32
	case mapping.TypeUint32:
		return ua.TypeIDUint32
	case mapping.TypeInt64:
		return ua.TypeIDInt64
	case mapping.TypeUint64:
		return ua.TypeIDUint64
	case mapping.TypeFloat32:
		return ua.TypeIDFloat
	case mapping.TypeFloat64:
		return ua.TypeIDDouble
	case mapping.TypeString:
		return ua.TypeIDString
	}
	return 0
}
