package door

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/edged-gw/edged/mapping"
)

// maxValueBytes bounds a request's value; no tag value is longer.
const maxValueBytes = 64 << 10

// value reads the request's value for the tag's type: exactly one of
// Typed, Text and Value.
func value(spec *mapping.Spec, req Request) (mapping.Value, error) {
	given := 0
	for _, ok := range []bool{req.Typed != nil, req.Text != "", len(req.Value) > 0} {
		if ok {
			given++
		}
	}
	switch {
	case given == 0:
		return mapping.Value{}, fmt.Errorf("tag %q: no value given", spec.Name)
	case given > 1:
		return mapping.Value{}, fmt.Errorf("tag %q: give the value once (JSON, text or typed)", spec.Name)
	case req.Typed != nil:
		return *req.Typed, nil
	case req.Text != "":
		return ParseText(spec, req.Text)
	}
	return ParseJSON(spec, req.Value)
}

// ParseText reads a command-line value for the tag's type: true/false,
// on/off or 1/0 for a bool; decimal, 0x hex or a float for a number; the
// text as it is for a string.
func ParseText(spec *mapping.Spec, text string) (mapping.Value, error) {
	if len(text) > maxValueBytes {
		return mapping.Value{}, fmt.Errorf("tag %q: value longer than %d bytes", spec.Name, maxValueBytes)
	}
	switch spec.Type {
	case mapping.TypeString:
		return mapping.Value{Kind: mapping.KindString, Str: text}, nil
	case mapping.TypeBool:
		switch strings.ToLower(strings.TrimSpace(text)) {
		case "1", "true", "on":
			return mapping.Value{Kind: mapping.KindBool, Bool: true}, nil
		case "0", "false", "off":
			return mapping.Value{Kind: mapping.KindBool, Bool: false}, nil
		}
		return mapping.Value{}, fmt.Errorf("tag %q is a bool: write true/false, on/off or 1/0, not %q", spec.Name, text)
	}
	t := strings.TrimSpace(text)
	if i, err := strconv.ParseInt(t, 0, 64); err == nil {
		return mapping.Value{Kind: mapping.KindInt, Int: i}, nil
	}
	if u, err := strconv.ParseUint(t, 0, 64); err == nil {
		return mapping.Value{Kind: mapping.KindUint, Uint: u}, nil
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil {
		return mapping.Value{Kind: mapping.KindFloat, Float: f}, nil
	}
	if spec.Type == 0 { // a driver that learns the type (OPC UA): a string
		return mapping.Value{Kind: mapping.KindString, Str: text}, nil
	}
	return mapping.Value{}, fmt.Errorf("tag %q is a %s: %q is not a number", spec.Name, spec.Type, text)
}

// ParseJSON reads a bare JSON value (42.5, true, "text") for the tag's
// type. A bool tag also takes 0 and 1; a number tag a number only.
func ParseJSON(spec *mapping.Spec, raw json.RawMessage) (mapping.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > maxValueBytes {
		return mapping.Value{}, fmt.Errorf("tag %q: value longer than %d bytes", spec.Name, maxValueBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return mapping.Value{}, fmt.Errorf("tag %q: the value is not JSON: %v", spec.Name, err)
	}
	if dec.More() {
		return mapping.Value{}, fmt.Errorf("tag %q: more than one JSON value", spec.Name)
	}
	switch v := x.(type) {
	case bool:
		if spec.Type != mapping.TypeBool && spec.Type != 0 {
			return mapping.Value{}, fmt.Errorf("tag %q is a %s, not a bool", spec.Name, spec.Type)
		}
		return mapping.Value{Kind: mapping.KindBool, Bool: v}, nil
	case string:
		if spec.Type != mapping.TypeString && spec.Type != 0 {
			return mapping.Value{}, fmt.Errorf("tag %q is a %s: send a JSON %s, not a string", spec.Name, spec.Type, want(spec.Type))
		}
		return mapping.Value{Kind: mapping.KindString, Str: v}, nil
	case json.Number:
		if spec.Type == mapping.TypeString {
			return mapping.Value{}, fmt.Errorf("tag %q is a string: send a JSON string", spec.Name)
		}
		n, err := ParseText(&mapping.Spec{Name: spec.Name, Type: mapping.TypeFloat64}, v.String())
		if err != nil {
			return mapping.Value{}, err
		}
		if spec.Type == mapping.TypeBool {
			if f, _ := n.Float64(); f == 0 || f == 1 {
				return mapping.Value{Kind: mapping.KindBool, Bool: f == 1}, nil
			}
			return mapping.Value{}, fmt.Errorf("tag %q is a bool: send true, false, 1 or 0", spec.Name)
		}
		return n, nil
	case nil:
		return mapping.Value{}, fmt.Errorf("tag %q: null is not a value", spec.Name)
	}
	return mapping.Value{}, fmt.Errorf("tag %q: send a bare value (number, bool or string), not an array or object", spec.Name)
}

func want(t mapping.Type) string {
	if t == mapping.TypeBool {
		return "bool"
	}
	return "number"
}

// encode renders a value as one JSON value (NaN and infinities, which JSON
// cannot carry, as strings); a float32 tag's value with float32 precision.
func encode(v mapping.Value, spec *mapping.Spec) json.RawMessage {
	switch v.Kind {
	case mapping.KindBool:
		return json.RawMessage(strconv.FormatBool(v.Bool))
	case mapping.KindInt:
		return json.RawMessage(strconv.FormatInt(v.Int, 10))
	case mapping.KindUint:
		return json.RawMessage(strconv.FormatUint(v.Uint, 10))
	case mapping.KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return json.RawMessage(strconv.Quote(strconv.FormatFloat(v.Float, 'g', -1, 64)))
		}
		bits := 64
		if spec != nil && spec.Type == mapping.TypeFloat32 && float64(float32(v.Float)) == v.Float {
			bits = 32
		}
		return json.RawMessage(strconv.FormatFloat(v.Float, 'g', -1, bits))
	case mapping.KindString:
		b, _ := json.Marshal(v.Str)
		return b
	case mapping.KindJSON:
		if json.Valid([]byte(v.Str)) {
			return json.RawMessage(v.Str)
		}
	}
	return nil
}

// requestedText is the value as the request gave it, for the audit.
func requestedText(req Request) string {
	switch {
	case req.Typed != nil:
		return string(encode(*req.Typed, nil))
	case req.Text != "":
		b, _ := json.Marshal(req.Text)
		return string(b)
	case len(req.Value) > 0:
		if json.Valid(req.Value) {
			return string(bytes.TrimSpace(req.Value))
		}
		b, _ := json.Marshal(string(req.Value))
		return string(b)
	}
	return ""
}
