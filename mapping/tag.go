// Package mapping turns raw device data into named, typed, scaled tag values
// and tag values into MQTT topics and payloads: data types, byte and word
// order, scale and offset, deadband, quality, topic templates and the JSON
// payload. It knows nothing about sockets, serial lines or disks: drivers hand
// it bytes, the northbound side takes topics and payloads from it.
package mapping

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/edged-gw/edged/configs"
)

// Type is the data type of a tag's raw value on the device.
type Type uint8

// The data types a tag may have. The zero value means "not set".
const (
	TypeBool Type = iota + 1
	TypeInt16
	TypeUint16
	TypeInt32
	TypeUint32
	TypeInt64
	TypeUint64
	TypeFloat32
	TypeFloat64
	TypeString
)

var typeNames = [...]string{
	TypeBool: "bool", TypeInt16: "int16", TypeUint16: "uint16", TypeInt32: "int32",
	TypeUint32: "uint32", TypeInt64: "int64", TypeUint64: "uint64", TypeFloat32: "float32",
	TypeFloat64: "float64", TypeString: "string",
}

// unknownName is what String says of a value that is not set (0, for the
// types whose zero means so) or not one of the names: messages show
// installers what they wrote, never a Go name like Type(0).
func unknownName(what string, v uint8) string {
	if v == 0 {
		return "(no " + what + ")"
	}
	return fmt.Sprintf("(unknown %s %d)", what, v)
}

// TypeNames lists the allowed spellings, for error messages and docs.
const TypeNames = "bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string"

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return unknownName("type", uint8(t))
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	for i, n := range typeNames {
		if n != "" && n == s {
			*t = Type(i)
			return nil
		}
	}
	return fmt.Errorf("unknown type %q: allowed are %s", string(b), TypeNames)
}

// MarshalText implements encoding.TextMarshaler.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Words is the number of 16-bit registers a value of this type occupies;
// 0 for bool (one bit) and string (its length is configured).
func (t Type) Words() int {
	switch t {
	case TypeInt16, TypeUint16:
		return 1
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	}
	return 0
}

// Order is the byte and word order of a multi-register value, named after
// where the bytes of the big-endian value A B C D land on the wire.
type Order uint8

// The orders a tag may have. ABCD (big-endian, Modbus standard) is the default.
const (
	OrderABCD Order = iota // big-endian words, big-endian bytes (Modbus standard)
	OrderCDAB              // word-swapped: little-endian words, big-endian bytes
	OrderBADC              // byte-swapped inside each word
	OrderDCBA              // little-endian
)

var orderNames = [...]string{OrderABCD: "ABCD", OrderCDAB: "CDAB", OrderBADC: "BADC", OrderDCBA: "DCBA"}

// OrderNames lists the allowed spellings, for error messages and docs.
const OrderNames = "ABCD (big-endian, default), CDAB (word-swapped), BADC (byte-swapped), DCBA (little-endian)"

func (o Order) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return unknownName("order", uint8(o))
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (o *Order) UnmarshalText(b []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(b)))
	for i, n := range orderNames {
		if n == s {
			*o = Order(i)
			return nil
		}
	}
	return fmt.Errorf("unknown order %q: allowed are %s", string(b), OrderNames)
}

// MarshalText implements encoding.TextMarshaler.
func (o Order) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// NaNPolicy says how a NaN or infinite float value is published.
type NaNPolicy uint8

// The NaN policies. NaNString, the zero value, is the default.
const (
	NaNString NaNPolicy = iota // the JSON strings "NaN", "+Inf", "-Inf"
	NaNNull                    // JSON null
	NaNDrop                    // the sample is not published
)

var nanNames = [...]string{NaNString: "string", NaNNull: "null", NaNDrop: "drop"}

// NaNNames lists the allowed spellings of nan, for error messages and docs.
const NaNNames = `"string" (default: "NaN", "+Inf", "-Inf"), "null", "drop" (do not publish the sample)`

func (p NaNPolicy) String() string {
	if int(p) < len(nanNames) {
		return nanNames[p]
	}
	return unknownName("nan", uint8(p))
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *NaNPolicy) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	for i, n := range nanNames {
		if n == s {
			*p = NaNPolicy(i)
			return nil
		}
	}
	return fmt.Errorf("unknown nan %q: allowed are %s", string(b), NaNNames)
}

// MarshalText implements encoding.TextMarshaler.
func (p NaNPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Quality says how far a value can be trusted.
type Quality uint8

// Qualities, ordered from best to worst.
const (
	Good Quality = iota
	Uncertain
	Bad
)

func (q Quality) String() string {
	switch q {
	case Good:
		return "good"
	case Uncertain:
		return "uncertain"
	}
	return "bad"
}

// Kind says which field of a Value holds it.
type Kind uint8

// Value kinds. KindNone is the value of a tag that has never been read.
const (
	KindNone Kind = iota
	KindBool
	KindInt
	KindUint
	KindFloat
	KindString
	// KindJSON is a value that has no scalar form (an array, a structure):
	// Str holds it already encoded as one valid JSON value, which payloads
	// embed as is. Whoever makes one guarantees that Str is valid JSON.
	KindJSON
)

var kindNames = [...]string{KindNone: "none", KindBool: "bool", KindInt: "int", KindUint: "uint", KindFloat: "float", KindString: "string", KindJSON: "json"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return unknownName("kind", uint8(k))
}

// Value is one typed tag value. Only the field named by Kind is meaningful.
// It is a plain struct so that a poll cycle can fill a slice of samples
// without allocating.
type Value struct {
	Kind Kind
	Bool bool
	// Float32 says Float holds a float32 read as such (an OPC UA Float):
	// payloads write the shortest digits that read back as that float32
	// (3.14159, not 3.141590118408203), as they do for a Modbus float32.
	Float32 bool
	Int     int64
	Uint    uint64
	Float   float64
	Str     string
}

// Float64 returns the value as a float64, for deadband comparison; false
// for strings, JSON and unset values.
func (v Value) Float64() (float64, bool) {
	switch v.Kind {
	case KindBool:
		if v.Bool {
			return 1, true
		}
		return 0, true
	case KindInt:
		return float64(v.Int), true
	case KindUint:
		return float64(v.Uint), true
	case KindFloat:
		return v.Float, true
	}
	return 0, false
}

// Equal reports whether two values are the same (NaN equals NaN, so a
// sensor stuck at NaN does not republish every poll).
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind {
		return false
	}
	switch v.Kind {
	case KindBool:
		return v.Bool == w.Bool
	case KindInt:
		return v.Int == w.Int
	case KindUint:
		return v.Uint == w.Uint
	case KindFloat:
		return v.Float == w.Float || (math.IsNaN(v.Float) && math.IsNaN(w.Float))
	case KindString, KindJSON:
		return v.Str == w.Str
	}
	return true
}

// Spec is the protocol-independent part of a tag: its name and how its raw
// value becomes the published one. Drivers embed it in their own tag struct
// next to the addressing fields (register area and address, node id).
type Spec struct {
	Name   string  `toml:"name"`
	Type   Type    `toml:"type"`
	Order  Order   `toml:"order"`
	Length int     `toml:"length"` // registers, for type = "string"
	Bit    *int    `toml:"bit"`    // 0..15: one bit of a register (after byte order), for type = "bool"
	Scale  float64 `toml:"scale"`  // multiplier; 0 or unset means 1
	Offset float64 `toml:"offset"` // added after scaling
	Unit   string  `toml:"unit"`

	// Topic is this tag's own topic template, instead of [gateway]
	// topic_template (same placeholders; the config loader checks it).
	Topic string `toml:"topic"`
	// Meta are free keys for topic templates ({meta.KEY}); they win over
	// the device's meta of the same key.
	Meta map[string]string `toml:"meta"`

	// Precision is how many decimal places a float value has in JSON
	// payloads (0..15; trailing zeros are not written). Unset: the shortest
	// form that reads back as the same number, except for a scaled integer,
	// whose values are rounded to the resolution of its scale and offset
	// (raw × 0.1 is published as 24.7, not 24.700000000000003).
	Precision *int `toml:"precision"`
	// NaN is what a NaN or ±Inf value becomes: "string" (default: the JSON
	// strings "NaN", "+Inf", "-Inf"), "null" (JSON null), or "drop" (the
	// sample is not published at all).
	NaN NaNPolicy `toml:"nan"`
	// decimals is set by Init from Precision or the scale: 0 means the
	// shortest round-trip form, n means n-1 decimal places.
	decimals uint8

	// Deadband suppresses a new value whose distance from the last published
	// one is at most this much; 0 with on_change = false publishes every
	// sample, 0 with on_change = true every change.
	Deadband float64 `toml:"deadband"`
	// MaxSilence republishes an unchanged value after this long, so that
	// consumers can tell "steady" from "dead"; 0 never republishes.
	MaxSilence configs.Duration `toml:"max_silence"`
	// OnChange publishes only when the value (or quality) changes; with
	// Deadband > 0 it is implied.
	OnChange bool `toml:"on_change"`

	// Writable allows writes to this tag (from the CLI, and later from MQTT
	// commands). Off unless the config says so.
	Writable bool `toml:"writable"`
	// Min and Max bound the values a write may set (in engineering units,
	// before scale/offset are undone); unset means the type's range.
	Min *float64 `toml:"min"`
	Max *float64 `toml:"max"`
	// WriteInterval is the least time between two writes to this tag; a
	// write arriving sooner is refused.
	WriteInterval configs.Duration `toml:"write_interval"`
}

// Sample is one reading of one tag: the value, when it was taken, and how
// far it can be trusted. A bad sample keeps its last good Value zeroed and
// says why in Err.
type Sample struct {
	Tag     *Spec
	Value   Value
	Quality Quality
	TimeMs  int64 // Unix milliseconds of the read
	Err     error // why the quality is not good; nil when good
}

// FormatValue shows a value as an operator reads it: floats with 7
// significant digits, strings quoted, JSON as it is.
func FormatValue(v Value) string {
	switch v.Kind {
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindUint:
		return strconv.FormatUint(v.Uint, 10)
	case KindFloat:
		return fmt.Sprintf("%.7g", v.Float)
	case KindBool:
		return strconv.FormatBool(v.Bool)
	case KindString:
		return strconv.Quote(v.Str)
	case KindJSON:
		return v.Str
	case KindNone:
		return "(no value)"
	}
	return fmt.Sprint(v)
}
