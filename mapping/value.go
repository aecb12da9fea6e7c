package mapping

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// AppendValue appends what format = "value" publishes for one sample, the
// bare value as text, and reports whether the sample is published at all:
//
//   - numbers as in AppendJSON (precision, the scale's resolution, the
//     shortest form): 24.7, -3, 18446744073709551615;
//   - bools as true or false;
//   - strings as their text, not quoted or escaped (invalid UTF-8 becomes
//     U+FFFD, as in JSON); a KindJSON value as its JSON text (a JSON
//     string as its text);
//   - NaN and ±Inf as NaN, +Inf, -Inf, or null with nan = "null" (nan =
//     "drop" is not published: Filter.Pass keeps it from here);
//   - a sample of bad quality is not published: a bare value cannot say
//     that it is stale, so the last good one stays (retained) and the
//     device's _status topic says why. Uncertain samples are published
//     like good ones; one without a value (never read) is null.
//
// AppendValue does not
// allocate when dst has room.
func AppendValue(dst []byte, s *Sample) ([]byte, bool) {
	if s.Quality == Bad {
		return dst, false
	}
	v := s.Value
	switch v.Kind {
	case KindNone:
		return append(dst, "null"...), true
	case KindString:
		return appendValidUTF8(dst, v.Str), true
	case KindJSON:
		if v.Str == "" {
			return append(dst, "null"...), true
		}
		if v.Str[0] == '"' { // a JSON string is text, as a KindString is
			if u, ok := unquoteJSON([]byte(v.Str)); ok {
				return append(dst, u...), true
			}
		}
		return append(dst, v.Str...), true
	case KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			if s.Tag != nil && s.Tag.NaN == NaNDrop {
				return dst, false
			}
			if s.Tag != nil && s.Tag.NaN == NaNNull {
				return append(dst, "null"...), true
			}
			switch {
			case math.IsNaN(v.Float):
				return append(dst, "NaN"...), true
			case v.Float > 0:
				return append(dst, "+Inf"...), true
			}
			return append(dst, "-Inf"...), true
		}
	}
	return appendValue(dst, v, s.Tag), true
}

func appendValidUTF8(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// ValuePayload turns a message edged published in JSON into what an
// upstream with format = "value" sends: a per-tag payload (AppendJSON's
// shape) becomes its bare value — exactly what AppendValue makes of the
// same sample — or nothing (publish false) where AppendValue would not
// publish; a per-device payload ({"ts":…,"values":…}) is not sent, it has
// no bare-value form; any other payload (the status messages) is returned
// as it is. The value usually is a slice of payload; only a string with
// escapes is copied.
func ValuePayload(payload []byte) (value []byte, publish bool) {
	const head = `{"v":`
	if !bytes.HasPrefix(payload, []byte(head)) {
		if bytes.HasPrefix(payload, []byte(`{"ts":`)) && bytes.Contains(payload, []byte(`,"values":{`)) {
			return nil, false
		}
		return payload, true
	}
	rest := payload[len(head):]
	n := jsonValueLen(rest)
	if n <= 0 {
		return payload, true // not AppendJSON's shape: send as is
	}
	v, rest := rest[:n], rest[n:]
	// ,"ts":<digits>,"q":"<quality>"
	if !bytes.HasPrefix(rest, []byte(`,"ts":`)) {
		return payload, true
	}
	rest = rest[len(`,"ts":`):]
	i := 0
	for i < len(rest) && (rest[i] == '-' || rest[i] >= '0' && rest[i] <= '9') {
		i++
	}
	rest = rest[i:]
	switch {
	case bytes.HasPrefix(rest, []byte(`,"q":"bad"`)):
		return nil, false
	case bytes.HasPrefix(rest, []byte(`,"q":"good"`)), bytes.HasPrefix(rest, []byte(`,"q":"uncertain"`)):
	default:
		return payload, true
	}
	if string(v) == "null" {
		// No value (never read), or NaN/Inf with nan = "null".
		return v, true
	}
	if v[0] != '"' {
		return v, true
	}
	if s, ok := unquoteJSON(v); ok {
		return s, true
	}
	return payload, true
}

// jsonValueLen is the length of the JSON value at the start of b, or 0 if
// it is not one that AppendJSON writes.
func jsonValueLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	switch b[0] {
	case '"':
		return jsonStringLen(b)
	case '{', '[':
		depth := 0
		for i := 0; i < len(b); i++ {
			switch b[i] {
			case '"':
				n := jsonStringLen(b[i:])
				if n == 0 {
					return 0
				}
				i += n - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return 0
	}
	i := 0
	for i < len(b) && b[i] != ',' && b[i] != '}' {
		i++
	}
	return i
}

// jsonStringLen is the length of the JSON string at the start of b,
// quotes included, or 0.
func jsonStringLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return 0
}

// unquoteJSON returns the text of the JSON string q (quotes included): a
// slice of q when it has no escapes, else a copy with them decoded.
func unquoteJSON(q []byte) ([]byte, bool) {
	body := q[1 : len(q)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body, true
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case '"', '\\', '/':
			out = append(out, body[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(body[i+1:])
			if !ok {
				return nil, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(body[min(i+3, len(body)):]); ok && i+2 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					}
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, false
		}
	}
	return out, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(n), err == nil
}
