package mapping

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrRange is wrapped by Encode errors for a value that does not fit the
// tag's data type (after undoing scale and offset).
var ErrRange = errors.New("value out of range")

// Encode is the inverse of Decode: it appends to dst the raw register bytes
// that make a device report v, in wire form (two bytes per register, each
// register big-endian) and in the tag's byte and word order, and returns the
// extended slice. It always appends exactly 2*Words() bytes or none.
//
// Offset is subtracted and scale divided out first; an integer type then
// takes the nearest integer. A value that does not fit the type gives an
// error wrapping ErrRange that names the allowed range; a value of the wrong
// kind (a string for an int16 tag, a fraction for an unscaled integer tag)
// is an error too. Numbers of any kind are accepted for numeric types, and
// 0 or 1 for bool tags, because command payloads carry JSON numbers.
//
// For a bool tag with Bit, only that bit is set in an otherwise zero
// register: a writer must merge it with the register's current value (read,
// modify, write, or Modbus function 22 "mask write register") so that the
// other bits are kept. A string tag is padded with NULs to Length registers;
// a string with a NUL in it or longer than 2*Length bytes is an error.
func (s *Spec) Encode(v Value, dst []byte) ([]byte, error) {
	n := 2 * s.Words()
	if n == 0 || s.Type > TypeString {
		return dst, fmt.Errorf("cannot encode type %s with length %d: run Init first", s.Type, s.Length)
	}
	var u uint64 // the big-endian value, before reordering for the wire
	switch s.Type {
	case TypeBool:
		on, err := boolOf(v)
		if err != nil {
			return dst, err
		}
		var w uint16
		switch {
		case !on:
		case s.Bit != nil:
			w = 1 << uint(*s.Bit&15)
			if s.Order == OrderBADC || s.Order == OrderDCBA {
				w = w>>8 | w<<8
			}
		default:
			w = 1
		}
		return binary.BigEndian.AppendUint16(dst, w), nil
	case TypeString:
		return s.encodeString(v, dst)
	case TypeFloat32, TypeFloat64:
		f, err := s.rawFloat(v)
		if err != nil {
			return dst, err
		}
		if s.Type == TypeFloat32 {
			f32 := float32(f)
			if math.IsInf(float64(f32), 0) && !math.IsInf(f, 0) {
				return dst, fmt.Errorf("%w: %v does not fit float32 (±%g)", ErrRange, f, math.MaxFloat32)
			}
			u = uint64(math.Float32bits(f32))
		} else {
			u = math.Float64bits(f)
		}
	default:
		var err error
		if u, err = s.rawInt(v); err != nil {
			return dst, err
		}
	}
	u = reorder(u, n, s.Order)
	switch n {
	case 2:
		return binary.BigEndian.AppendUint16(dst, uint16(u)), nil
	case 4:
		return binary.BigEndian.AppendUint32(dst, uint32(u)), nil
	}
	return binary.BigEndian.AppendUint64(dst, u), nil
}

func boolOf(v Value) (bool, error) {
	switch v.Kind {
	case KindBool:
		return v.Bool, nil
	case KindInt, KindUint, KindFloat:
		f, _ := v.Float64()
		if f == 0 || f == 1 {
			return f == 1, nil
		}
		return false, fmt.Errorf("cannot write %v to a bool tag: allowed are true, false, 0 and 1", f)
	}
	return false, fmt.Errorf("cannot write a %s value to a bool tag: allowed are true, false, 0 and 1", v.Kind)
}

// rawFloat undoes scale and offset.
func (s *Spec) rawFloat(v Value) (float64, error) {
	f, ok := v.Float64()
	if !ok || v.Kind == KindBool {
		return 0, fmt.Errorf("cannot write a %s value to a tag of type %s: allowed are numbers", v.Kind, s.Type)
	}
	if s.scaled() {
		f = s.ToRaw(f)
	}
	return f, nil
}

// rawInt returns the raw integer for an integer type, as the two's
// complement bit pattern in a uint64, after a range check.
func (s *Spec) rawInt(v Value) (uint64, error) {
	lo, hi, loF, hiF := intRange(s.Type)
	if !s.scaled() {
		switch v.Kind {
		case KindInt:
			if v.Int < lo || v.Int > 0 && uint64(v.Int) > hi {
				return 0, rangeErr(s.Type, fmt.Sprint(v.Int))
			}
			return uint64(v.Int), nil
		case KindUint:
			if v.Uint > hi {
				return 0, rangeErr(s.Type, fmt.Sprint(v.Uint))
			}
			return v.Uint, nil
		}
	}
	f, err := s.rawFloat(v)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, rangeErr(s.Type, fmt.Sprint(f))
	}
	if !s.scaled() && f != math.Trunc(f) {
		return 0, fmt.Errorf("cannot write %v to a tag of type %s: allowed are whole numbers", f, s.Type)
	}
	r := math.Round(f)
	// loF and hiF are exact powers of two (or 0), so these comparisons are
	// exact; hiF itself is one past the largest value.
	if r < loF || r >= hiF {
		return 0, rangeErr(s.Type, fmt.Sprint(f))
	}
	if lo < 0 {
		return uint64(int64(r)), nil
	}
	return uint64(r), nil
}

// intRange returns the inclusive range of an integer type, and as floats
// the inclusive lower and exclusive upper bound.
func intRange(t Type) (lo int64, hi uint64, loF, hiF float64) {
	switch t {
	case TypeInt16:
		return math.MinInt16, math.MaxInt16, math.MinInt16, 1 << 15
	case TypeUint16:
		return 0, math.MaxUint16, 0, 1 << 16
	case TypeInt32:
		return math.MinInt32, math.MaxInt32, math.MinInt32, 1 << 31
	case TypeUint32:
		return 0, math.MaxUint32, 0, 1 << 32
	case TypeInt64:
		return math.MinInt64, math.MaxInt64, math.MinInt64, 1 << 63
	}
	return 0, math.MaxUint64, 0, 1 << 64
}

func rangeErr(t Type, v string) error {
	lo, hi, _, _ := intRange(t)
	return fmt.Errorf("%w: %s does not fit %s (allowed %d..%d after scale and offset)", ErrRange, v, t, lo, hi)
}

func (s *Spec) encodeString(v Value, dst []byte) ([]byte, error) {
	if v.Kind != KindString {
		return dst, fmt.Errorf("cannot write a %s value to a string tag: allowed are strings", v.Kind)
	}
	n := 2 * s.Length
	if len(v.Str) > n {
		return dst, fmt.Errorf("%w: string of %d bytes does not fit %d registers (allowed up to %d bytes)", ErrRange, len(v.Str), s.Length, n)
	}
	if strings.IndexByte(v.Str, 0) >= 0 {
		return dst, errors.New("cannot write a string containing NUL: the device would end the text there")
	}
	start := len(dst)
	dst = append(dst, v.Str...)
	for len(dst)-start < n {
		dst = append(dst, 0)
	}
	if s.Order == OrderBADC || s.Order == OrderDCBA {
		b := dst[start:]
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
	return dst, nil
}
