package mapping

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeCommand(t *testing.T) {
	float := &Spec{Name: "sp", Type: TypeFloat32}
	i16 := &Spec{Name: "n", Type: TypeInt16}
	scaled := &Spec{Name: "s", Type: TypeInt16, Scale: 0.1}
	boolean := &Spec{Name: "run", Type: TypeBool}
	str := &Spec{Name: "label", Type: TypeString, Length: 8}
	cases := []struct {
		name    string
		spec    *Spec
		payload string
		want    Command
		bad     string // substring of the error; "" means success
	}{
		{"bare float", float, "42.5", Command{Value: Value{Kind: KindFloat, Float: 42.5}}, ""},
		{"bare int", i16, " -3\n", Command{Value: Value{Kind: KindInt, Int: -3}}, ""},
		{"big uint", &Spec{Name: "u", Type: TypeUint64}, "18446744073709551615", Command{Value: Value{Kind: KindUint, Uint: 18446744073709551615}}, ""},
		{"bare bool", boolean, "true", Command{Value: Value{Kind: KindBool, Bool: true}}, ""},
		{"bool as 0", boolean, "0", Command{Value: Value{Kind: KindBool}}, ""},
		{"bare string", str, `"text"`, Command{Value: Value{Kind: KindString, Str: "text"}}, ""},
		{"unquoted text", str, `hello world`, Command{Value: Value{Kind: KindString, Str: "hello world"}}, ""},
		{"object", float, `{"v": 42.5, "id": "c-123", "ts": 1767225600000}`,
			Command{Value: Value{Kind: KindFloat, Float: 42.5}, ID: "c-123", Time: time.UnixMilli(1767225600000)}, ""},
		{"object rfc3339", boolean, `{"ts":"2026-01-01T00:00:00Z","v":false}`,
			Command{Value: Value{Kind: KindBool}, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, ""},
		{"scaled takes fraction", scaled, "1.5", Command{Value: Value{Kind: KindFloat, Float: 1.5}}, ""},
		{"fraction for int", i16, "1.5", Command{}, "whole number"},
		{"empty", float, "  ", Command{}, "empty payload"},
		{"text for number", float, "abc", Command{}, "not a value"},
		{"string for number", float, `"42"`, Command{}, "send a number"},
		{"number for string", str, `{"v": 42}`, Command{}, "JSON string"},
		{"bool 2", boolean, "2", Command{}, "true, false, 1 or 0"},
		{"no v", float, `{"id":"x"}`, Command{}, `no "v"`},
		{"null v", float, `{"v":null}`, Command{}, "send a number"},
		{"unknown key", float, `{"v":1,"value":2}`, Command{}, `unknown key "value"`},
		{"duplicate key", float, `{"v":1,"v":2}`, Command{}, "twice"},
		{"numeric id", float, `{"v":1,"id":7}`, Command{}, `"id" must be a string`},
		{"long id", float, `{"v":1,"id":"` + strings.Repeat("x", 129) + `"}`, Command{}, "1 to 128 bytes"},
		{"bad ts", float, `{"v":1,"ts":-1}`, Command{}, "Unix milliseconds"},
		{"trailing text", float, `{"v":1} x`, Command{}, "text after"},
		{"two values", float, "1 2", Command{}, "not a value"},
		{"huge number", float, "1e999", Command{}, "out of any range"},
		{"not utf8", str, "\xff\xfe", Command{}, "UTF-8"},
		{"too large", str, strings.Repeat("a", MaxCommandPayload+1), Command{}, "too large"},
		{"truncated object", float, `{"v":`, Command{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeCommand(tc.spec, []byte(tc.payload))
			if tc.name == "truncated object" {
				if !errors.Is(err, ErrBadPayload) {
					t.Fatalf("err = %v, want bad_payload", err)
				}
				return
			}
			if tc.bad != "" {
				if !errors.Is(err, ErrBadPayload) || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("err = %v, want bad_payload containing %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Value.Equal(tc.want.Value) || got.ID != tc.want.ID || !got.Time.Equal(tc.want.Time) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzDecodeCommand: no payload makes the decoder panic; whatever it
// accepts is of a kind the tag's type takes, and every refusal is
// bad_payload.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{"42.5", "true", `"text"`, `{"v": 42.5, "id": "c-123", "ts": 1767225600000}`,
		`{"v":"x","ts":"2026-01-01T00:00:00Z"}`, "-0", "1e308", `{"v":{"a":1}}`, "[1,2]", `{"v":1,"v":2}`, "\x00"} {
		for typ := TypeBool; typ <= TypeString; typ++ {
			f.Add([]byte(s), uint8(typ), false)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte, typ uint8, scaled bool) {
		spec := &Spec{Name: "t", Type: Type(typ%uint8(TypeString) + 1), Length: 4}
		if scaled {
			spec.Scale = 0.5
		}
		cmd, err := DecodeCommand(spec, payload)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error does not wrap ErrBadPayload: %v", err)
			}
			return
		}
		k := cmd.Value.Kind
		switch spec.Type {
		case TypeBool:
			if k != KindBool {
				t.Fatalf("bool tag got kind %s", k)
			}
		case TypeString:
			if k != KindString {
				t.Fatalf("string tag got kind %s", k)
			}
		default:
			if k != KindInt && k != KindUint && k != KindFloat {
				t.Fatalf("numeric tag got kind %s", k)
			}
		}
		if len(cmd.ID) > MaxCommandID {
			t.Fatalf("id of %d bytes accepted", len(cmd.ID))
		}
	})
}
