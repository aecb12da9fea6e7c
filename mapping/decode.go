package mapping

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/edged-gw/edged/configs"
)

// ErrShort is returned when fewer raw bytes are given than the tag needs.
var ErrShort = errors.New("too few bytes for tag")

// Init checks a spec of a register tag (Check, and the register layout:
// order, length, bit). It does no I/O. A problem is a *configs.Error naming the
// tag key at fault.
func (s *Spec) Init() error {
	if err := s.checkIdentity(true); err != nil {
		return err
	}
	if err := s.checkLayout(); err != nil {
		return err
	}
	return s.checkValue()
}

// Check validates what every tag has, whatever its protocol: its name, its
// type (when given; a protocol whose values arrive typed may leave it
// out: typeRequired false), scale and offset, deadband, max_silence and
// the write policy (writable, min, max, write_interval). A problem is a
// *configs.Error naming the tag key at fault.
func (s *Spec) Check(typeRequired bool) error {
	if err := s.checkIdentity(typeRequired); err != nil {
		return err
	}
	return s.checkValue()
}

func (s *Spec) checkIdentity(typeRequired bool) error {
	if s.Name == "" {
		return configs.Errorf("name", "name is empty: every tag needs a unique name, e.g. name = \"flow_rate\"")
	}
	if strings.ContainsAny(s.Name, "/+#\x00") {
		return configs.Errorf("name", "name %q contains one of / + # or NUL, which are not allowed in an MQTT topic level", s.Name)
	}
	if s.Type == 0 && typeRequired {
		return configs.Errorf("type", "type is missing: allowed are %s", TypeNames)
	}
	if s.Type > TypeString {
		return configs.Errorf("type", "%s: allowed are %s", s.Type, TypeNames)
	}
	return nil
}

// checkLayout checks where a value sits in registers.
func (s *Spec) checkLayout() error {
	if s.Order > OrderDCBA {
		return configs.Errorf("order", "%s: allowed are %s", s.Order, OrderNames)
	}
	if s.Type == TypeString {
		if s.Length <= 0 || s.Length > 125 {
			return configs.Errorf("length", "length = %d: a string tag needs length = 1..125 (registers, 2 characters each)", s.Length)
		}
	} else if s.Length != 0 {
		return configs.Errorf("length", "length is only for type = \"string\", this tag is %s", s.Type)
	}
	if s.Bit != nil {
		if s.Type != TypeBool {
			return configs.Errorf("bit", "bit is only for type = \"bool\" (one bit of a register), this tag is %s", s.Type)
		}
		if *s.Bit < 0 || *s.Bit > 15 {
			return configs.Errorf("bit", "bit = %d: allowed are 0 (least significant) to 15", *s.Bit)
		}
	}
	return nil
}

// checkValue checks the transform, the reporting and the write policy.
func (s *Spec) checkValue() error {
	if math.IsNaN(s.Scale) || math.IsInf(s.Scale, 0) || math.IsNaN(s.Offset) || math.IsInf(s.Offset, 0) {
		key := "scale"
		if !math.IsNaN(s.Scale) && !math.IsInf(s.Scale, 0) {
			key = "offset"
		}
		return configs.Errorf(key, "scale = %v, offset = %v: both must be finite numbers (scale 0 or unset means 1)", s.Scale, s.Offset)
	}
	if s.scaled() && (s.Type == TypeBool || s.Type == TypeString) {
		key := "scale"
		if s.Scale == 0 || s.Scale == 1 {
			key = "offset"
		}
		return configs.Errorf(key, "scale and offset are only for numeric types (int16 … float64), this tag is %s", s.Type)
	}
	if s.Precision != nil {
		if s.Type == TypeBool || s.Type == TypeString {
			return configs.Errorf("precision", "precision is only for numbers (int16 … float64), this tag is %s", s.Type)
		}
		if *s.Precision < 0 || *s.Precision > maxPrecision {
			return configs.Errorf("precision", "precision = %d: allowed are 0 (whole numbers) to %d decimal places", *s.Precision, maxPrecision)
		}
	}
	if s.NaN > NaNDrop {
		return configs.Errorf("nan", "%s: allowed are %s", s.NaN, NaNNames)
	}
	if s.NaN != NaNString && (s.Type == TypeBool || s.Type == TypeString) {
		return configs.Errorf("nan", "nan is only for numbers (int16 … float64), this tag is %s", s.Type)
	}
	s.decimals = s.defaultDecimals()
	if s.Deadband < 0 || math.IsNaN(s.Deadband) || math.IsInf(s.Deadband, 0) {
		return configs.Errorf("deadband", "deadband = %v: must be 0 (publish every change) or a positive finite number", s.Deadband)
	}
	if s.MaxSilence < 0 {
		return configs.Errorf("max_silence", "max_silence = %s: must be 0 (never republish) or positive", s.MaxSilence)
	}
	if !s.Writable && (s.Min != nil || s.Max != nil || s.WriteInterval != 0) {
		return configs.Errorf("writable", "min, max and write_interval limit writes: set writable = true as well, or remove them")
	}
	if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
		return configs.Errorf("min", "min = %v is above max = %v", *s.Min, *s.Max)
	}
	return nil
}

// Words is the number of 16-bit registers the tag occupies: 1 for a bit of a
// register, Length for strings, the type's width otherwise.
func (s *Spec) Words() int {
	switch s.Type {
	case TypeBool:
		return 1
	case TypeString:
		return s.Length
	}
	return s.Type.Words()
}

// maxPrecision is the most decimal places a float64 can carry meaningfully.
const maxPrecision = 15

// defaultDecimals is what Init stores in s.decimals: Precision when set;
// for a scaled integer the decimals of its scale and offset (0.1 → 1,
// 0.25 → 2, 2 → 0), or the shortest form when one of them has no short
// decimal form (a scale of 1/3); the shortest form for everything else.
func (s *Spec) defaultDecimals() uint8 {
	if s.Precision != nil {
		return uint8(*s.Precision) + 1
	}
	if !s.scaled() || s.Type == TypeFloat32 || s.Type == TypeFloat64 {
		return 0
	}
	scale := s.Scale
	if scale == 0 {
		scale = 1
	}
	d1, d2 := decimalPlaces(scale), decimalPlaces(s.Offset)
	if d1 < 0 || d2 < 0 {
		return 0
	}
	return uint8(max(d1, d2)) + 1
}

// decimalPlaces is the fewest decimal places that write x exactly (as
// exactly as its float64 allows), or -1 when it needs more than
// maxPrecision.
func decimalPlaces(x float64) int {
	p := 1.0
	for d := 0; d <= maxPrecision; d++ {
		v := x * p
		if math.Abs(v-math.Round(v)) <= 1e-9 { // in units of the last place: float noise only
			return d
		}
		p *= 10
	}
	return -1
}

// Scaled reports whether the tag has a scale or offset: its values are
// then floats in engineering units.
func (s *Spec) Scaled() bool { return (s.Scale != 0 && s.Scale != 1) || s.Offset != 0 }

// ToEngineering turns a raw number into engineering units: raw × scale +
// offset (scale 0 means 1). ToRaw is its inverse, for writes.
func (s *Spec) ToEngineering(raw float64) float64 {
	if s.Scale != 0 {
		raw *= s.Scale
	}
	return raw + s.Offset
}

// ToRaw turns a value in engineering units back into the raw number:
// (v - offset) / scale.
func (s *Spec) ToRaw(v float64) float64 {
	v -= s.Offset
	if s.Scale != 0 {
		v /= s.Scale
	}
	return v
}

func (s *Spec) scaled() bool { return s.Scaled() }

func (s *Spec) scale(f float64) float64 { return s.ToEngineering(f) }

// DecodeBit makes the value of a bool tag read from a coil or discrete input.
func (s *Spec) DecodeBit(on bool) Value { return Value{Kind: KindBool, Bool: on} }

// Decode turns the raw register bytes of one tag, as they came off the wire
// (two bytes per register, each register big-endian), into its value,
// applying word/byte order, bit selection, scale and offset. A scaled integer
// becomes a float; an unscaled one stays an integer. Bytes beyond the tag's
// Words are ignored; fewer give an error that wraps ErrShort. Decoding a
// numeric or bool tag does not allocate.
//
// A bool tag reads one register: with Bit, that bit of the register as
// decoded in the tag's byte order (so bit 0 of a BADC register is the least
// significant bit of its first wire byte); without Bit, true when any bit is
// set.
func (s *Spec) Decode(raw []byte) (Value, error) {
	n := 2 * s.Words()
	if n == 0 || s.Type > TypeString {
		return Value{}, fmt.Errorf("cannot decode type %s with length %d: run Init first", s.Type, s.Length)
	}
	if len(raw) < n {
		return Value{}, fmt.Errorf("%w: %s needs %d bytes, got %d", ErrShort, s.Type, n, len(raw))
	}
	raw = raw[:n]
	switch s.Type {
	case TypeBool:
		w := binary.BigEndian.Uint16(raw)
		if s.Bit != nil {
			if s.Order == OrderBADC || s.Order == OrderDCBA {
				w = w>>8 | w<<8
			}
			return Value{Kind: KindBool, Bool: w>>uint(*s.Bit)&1 == 1}, nil
		}
		return Value{Kind: KindBool, Bool: w != 0}, nil
	case TypeString:
		return Value{Kind: KindString, Str: decodeString(raw, s.Order)}, nil
	}
	var u uint64
	switch n {
	case 2:
		u = uint64(binary.BigEndian.Uint16(raw))
	case 4:
		u = uint64(binary.BigEndian.Uint32(raw))
	default:
		u = binary.BigEndian.Uint64(raw)
	}
	u = reorder(u, n, s.Order)
	var v Value
	switch s.Type {
	case TypeInt16:
		v = Value{Kind: KindInt, Int: int64(int16(u))}
	case TypeUint16:
		v = Value{Kind: KindUint, Uint: u}
	case TypeInt32:
		v = Value{Kind: KindInt, Int: int64(int32(u))}
	case TypeUint32:
		v = Value{Kind: KindUint, Uint: u}
	case TypeInt64:
		v = Value{Kind: KindInt, Int: int64(u)}
	case TypeUint64:
		v = Value{Kind: KindUint, Uint: u}
	case TypeFloat32:
		v = Value{Kind: KindFloat, Float: float64(math.Float32frombits(uint32(u)))}
	case TypeFloat64:
		v = Value{Kind: KindFloat, Float: math.Float64frombits(u)}
	default:
		return Value{}, fmt.Errorf("cannot decode type %s", s.Type)
	}
	if s.scaled() {
		f, _ := v.Float64()
		return Value{Kind: KindFloat, Float: s.scale(f)}, nil
	}
	return v, nil
}

// reorder converts between the wire value u of an n-byte tag (its registers
// read as one big-endian number) and the tag's big-endian value: CDAB and
// DCBA reverse the order of the registers, BADC and DCBA swap the two bytes
// of each register. Each of these is its own inverse, so Encode uses the
// same function.
func reorder(u uint64, n int, o Order) uint64 {
	if o == OrderCDAB || o == OrderDCBA {
		switch n {
		case 4:
			u = u>>16&0xFFFF | u&0xFFFF<<16
		case 8:
			u = bits.RotateLeft64(u, 32)
			u = u>>16&0x0000FFFF0000FFFF | u&0x0000FFFF0000FFFF<<16
		}
	}
	if o == OrderBADC || o == OrderDCBA {
		u = u>>8&0x00FF00FF00FF00FF | u&0x00FF00FF00FF00FF<<8
	}
	return u
}

// decodeString reads two characters per register, high byte first (ABCD,
// CDAB) or low byte first (BADC, DCBA); word order does not apply, registers
// are read in address order. The text ends at the first NUL, and trailing
// spaces are dropped (devices pad with either). Bytes that are not valid
// UTF-8 are replaced by U+FFFD, so the JSON payload stays valid. It allocates
// only the returned string.
func decodeString(raw []byte, o Order) string {
	var buf [2 * 125]byte // Init caps length at 125 registers
	var b []byte
	if len(raw) <= len(buf) {
		b = buf[:len(raw)]
	} else {
		b = make([]byte, len(raw))
	}
	copy(b, raw)
	if o == OrderBADC || o == OrderDCBA {
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimRight(b, " ")
	if len(b) == 0 {
		return ""
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
