package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrBadPayload is wrapped by every error DecodeCommand returns: the
// command's payload cannot be read as a value for the tag. A reply to such
// a command carries the reason "bad_payload".
var ErrBadPayload = errors.New("bad_payload")

// ReasonBadPayload is the reply reason of a command whose payload
// DecodeCommand refused.
const ReasonBadPayload = "bad_payload"

// Limits of a command payload. A command is a single value: anything
// bigger is not one.
const (
	MaxCommandPayload = 64 << 10
	MaxCommandID      = 128
)

// Command is a write request read from an MQTT command payload, not yet
// checked against the tag's write policy (see Spec.CheckWrite).
type Command struct {
	// Value is the requested value, of a kind the tag's type takes:
	// KindBool for bool tags, KindString for string tags, KindInt,
	// KindUint or KindFloat for numeric ones (range checks are
	// CheckWrite's and Encode's).
	Value Value
	// ID is the sender's command id ("" when the payload has none); a
	// command id seen again within the de-duplication window is applied
	// once.
	ID string
	// Time is when the sender issued the command (zero when the payload
	// has no "ts"), for the max_command_age check.
	Time time.Time
}

// DecodeCommand reads the payload of a command for the tag spec. Accepted:
//
//   - a bare JSON value: 42.5, -3, true, false, "text";
//   - for a string tag, also bare text that is not JSON (hello world);
//   - a JSON object {"v": <value>, "id": "c-123", "ts": <unix ms>}, where
//     "v" is required, "id" is a string of at most 128 bytes, and "ts" is
//     a Unix time in milliseconds or an RFC 3339 string.
//
// A bool tag takes true, false, 0 and 1; a numeric tag takes JSON numbers
// (whole numbers only for an integer tag without scale or offset); a
// string tag takes a JSON string. Every refusal wraps ErrBadPayload and
// says what is allowed. DecodeCommand never panics, whatever the payload.
func DecodeCommand(spec *Spec, payload []byte) (Command, error) {
	if spec == nil {
		return Command{}, badPayload("no tag")
	}
	if len(payload) > MaxCommandPayload {
		return Command{}, badPayload("payload of %d bytes is too large for one value (at most %d)", len(payload), MaxCommandPayload)
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return Command{}, badPayload("empty payload; send a value such as %s or {\"v\": %s, \"id\": \"c-1\"}", example(spec), example(spec))
	}
	if !utf8.Valid(p) {
		return Command{}, badPayload("payload is not UTF-8 text; send a value such as %s", example(spec))
	}
	if p[0] == '{' {
		return decodeCommandObject(spec, p)
	}
	var raw json.RawMessage
	if err := strictUnmarshal(p, &raw); err != nil {
		if spec.Type == TypeString {
			return Command{Value: Value{Kind: KindString, Str: string(p)}}, nil
		}
		return Command{}, badPayload("%q is not a value for a %s tag; send e.g. %s", clip(p), spec.Type, example(spec))
	}
	v, err := commandValue(spec, raw)
	if err != nil {
		return Command{}, err
	}
	return Command{Value: v}, nil
}

func decodeCommandObject(spec *Spec, p []byte) (Command, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // '{'
		return Command{}, badPayload("not a JSON object: %v", err)
	}
	var cmd Command
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Command{}, badPayload("not a JSON object: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return Command{}, badPayload("key %q given twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Command{}, badPayload("key %q: %v", key, err)
		}
		switch key {
		case "v":
			v, err := commandValue(spec, raw)
			if err != nil {
				return Command{}, err
			}
			cmd.Value = v
		case "id":
			var id string
			if json.Unmarshal(raw, &id) != nil {
				return Command{}, badPayload("\"id\" must be a string, e.g. \"id\": \"c-123\"")
			}
			if id == "" || len(id) > MaxCommandID {
				return Command{}, badPayload("\"id\" must be 1 to %d bytes long", MaxCommandID)
			}
			for _, r := range id {
				if r < 0x20 || r == 0x7f {
					return Command{}, badPayload("\"id\" contains a control character")
				}
			}
			cmd.ID = id
		case "ts":
			t, err := commandTime(raw)
			if err != nil {
				return Command{}, err
			}
			cmd.Time = t
		default:
			return Command{}, badPayload("unknown key %q; a command object has \"v\" (required), \"id\" and \"ts\"", key)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return Command{}, badPayload("not a JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Command{}, badPayload("text after the JSON object")
	}
	if !seen["v"] {
		return Command{}, badPayload("no \"v\": send {\"v\": %s}", example(spec))
	}
	return cmd, nil
}

// commandValue reads one JSON value for the tag.
func commandValue(spec *Spec, raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Value{}, badPayload("no value")
	}
	switch spec.Type {
	case TypeString:
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return Value{}, badPayload("tag %q is a string: send a JSON string such as \"text\"", spec.Name)
		}
		return Value{Kind: KindString, Str: s}, nil
	case TypeBool:
		switch string(raw) {
		case "true", "1":
			return Value{Kind: KindBool, Bool: true}, nil
		case "false", "0":
			return Value{Kind: KindBool, Bool: false}, nil
		}
		return Value{}, badPayload("tag %q is a bool: send true, false, 1 or 0, not %s", spec.Name, clip(raw))
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return Value{}, badPayload("tag %q is a %s: send a number such as %s, not %s", spec.Name, spec.Type, example(spec), clip(raw))
	}
	var n json.Number
	if err := strictUnmarshal(raw, &n); err != nil {
		return Value{}, badPayload("tag %q is a %s: %s is not a number", spec.Name, spec.Type, clip(raw))
	}
	s := n.String()
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return Value{Kind: KindInt, Int: i}, nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return Value{Kind: KindUint, Uint: u}, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return Value{}, badPayload("tag %q is a %s: %s is out of any range", spec.Name, spec.Type, clip(raw))
	}
	if isIntegerType(spec.Type) && !spec.scaled() && f != math.Trunc(f) {
		return Value{}, badPayload("tag %q is a %s: send a whole number, not %s", spec.Name, spec.Type, s)
	}
	return Value{Kind: KindFloat, Float: f}, nil
}

func commandTime(raw json.RawMessage) (time.Time, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, badPayload("\"ts\" %q is not an RFC 3339 time; send Unix milliseconds (e.g. 1767225600000) or e.g. \"2026-01-01T00:00:00Z\"", clip([]byte(s)))
		}
		return t, nil
	}
	var n json.Number
	if strictUnmarshal(raw, &n) != nil {
		return time.Time{}, badPayload("\"ts\" must be Unix milliseconds (e.g. 1767225600000) or an RFC 3339 string")
	}
	ms, err := strconv.ParseInt(n.String(), 10, 64)
	// Years 1970..9999 in milliseconds.
	if err != nil || ms < 0 || ms > 253402300799999 {
		return time.Time{}, badPayload("\"ts\" %s is not Unix milliseconds (a whole number from 0 to 253402300799999)", clip(raw))
	}
	return time.UnixMilli(ms), nil
}

func isIntegerType(t Type) bool {
	switch t {
	case TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64:
		return true
	}
	return false
}

// strictUnmarshal decodes exactly one JSON value with nothing after it.
func strictUnmarshal(p []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("text after the value")
	}
	return nil
}

func example(spec *Spec) string {
	switch spec.Type {
	case TypeBool:
		return "true"
	case TypeString:
		return `"text"`
	case TypeFloat32, TypeFloat64:
		return "42.5"
	}
	if spec.scaled() {
		return "42.5"
	}
	return "42"
}

// clip shortens what is quoted back in an error message.
func clip(p []byte) string {
	const max = 40
	s := string(p)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

func badPayload(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadPayload, fmt.Sprintf(format, args...))
}
