package mapping

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the JSON payload of one sample to dst and returns the
// extended slice:
//
//	{"v":<value>,"ts":<unix ms>,"q":"good"|"uncertain"|"bad"}
//
// followed by ,"unit":"…" when the tag has a unit and ,"err":"…" when the
// sample has an error. A sample without a value (KindNone) has "v":null; a
// KindJSON value (an array, a structure) is embedded as its pre-encoded
// JSON text, unchanged.
// Floats are written with the tag's Precision when it has one, rounded to
// the resolution of the scale for a scaled integer (raw × 0.1 → 24.7), and
// otherwise in the shortest form that reads back to the same number — for
// an unscaled float32 tag, the same float32 (0.1, not 0.10000000149011612)
// — with the exponent rules of encoding/json. NaN and ±Inf, which JSON
// cannot express as numbers, become the strings "NaN", "+Inf" and "-Inf",
// or null with nan = "null" (and "drop", which Filter.Pass applies). The
// rounding needs the defaults Spec.Init fills in. Strings are escaped so that any input, including
// invalid UTF-8 (written as U+FFFD), gives valid JSON. A nil s.Tag is
// treated as a float64 tag without unit.
//
// AppendJSON does not allocate when dst has room, except for what s.Err's
// Error method allocates.
func AppendJSON(dst []byte, s *Sample) []byte {
	dst = append(dst, `{"v":`...)
	dst = appendValue(dst, s.Value, s.Tag)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, s.TimeMs, 10)
	dst = append(dst, `,"q":"`...)
	dst = append(dst, s.Quality.String()...)
	dst = append(dst, '"')
	if s.Tag != nil && s.Tag.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendJSONString(dst, s.Tag.Unit)
	}
	if s.Err != nil {
		dst = append(dst, `,"err":`...)
		dst = appendJSONString(dst, s.Err.Error())
	}
	return append(dst, '}')
}

func appendValue(dst []byte, v Value, tag *Spec) []byte {
	switch v.Kind {
	case KindBool:
		return strconv.AppendBool(dst, v.Bool)
	case KindInt:
		return strconv.AppendInt(dst, v.Int, 10)
	case KindUint:
		return strconv.AppendUint(dst, v.Uint, 10)
	case KindFloat:
		bits := 64
		if v.Float32 {
			bits = 32
		}
		if tag != nil {
			if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
				if tag.NaN != NaNString {
					return append(dst, "null"...) // NaNDrop: Filter.Pass keeps it from here
				}
			} else if tag.decimals > 0 {
				return appendFixed(dst, v.Float, int(tag.decimals-1))
			}
			if tag.Type == TypeFloat32 && !tag.scaled() {
				bits = 32
			}
		}
		return appendJSONFloat(dst, v.Float, bits)
	case KindString:
		return appendJSONString(dst, v.Str)
	case KindJSON:
		if v.Str == "" {
			return append(dst, "null"...)
		}
		return append(dst, v.Str...) // pre-encoded by its maker (see KindJSON)
	}
	return append(dst, "null"...)
}

// appendJSONFloat writes f like encoding/json does: shortest round-trip
// digits, plain notation for 1e-6 <= |f| < 1e21, exponent notation outside.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Inf"`...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// e-07 → e-7, as encoding/json and JavaScript write it.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendFixed writes finite f rounded to decimals places, without trailing
// zeros (24.70 → 24.7, 25.0 → 25) and without a minus sign on zero.
func appendFixed(dst []byte, f float64, decimals int) []byte {
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'f', decimals, 64)
	if decimals > 0 {
		n := len(dst)
		for dst[n-1] == '0' {
			n--
		}
		if dst[n-1] == '.' {
			n--
		}
		dst = dst[:n]
	}
	if len(dst)-start == 2 && dst[start] == '-' && dst[start+1] == '0' {
		dst[start] = '0'
		dst = dst[:start+1]
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string: quote, backslash and control
// characters escaped, U+2028 and U+2029 escaped (they end lines in
// JavaScript), invalid UTF-8 replaced by U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
