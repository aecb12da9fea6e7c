package door

import (
	"encoding/json"
	"testing"

	"github.com/edged-gw/edged/mapping"
)

// FuzzParseValue: no command payload makes the value decoders panic, and
// whatever they accept renders back as valid JSON (replies and audit lines
// embed it as is).
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{`42.5`, `true`, `"text"`, `{"v":1}`, `[1,2]`, `null`, `1e400`, `-0x10`, `on`, `18446744073709551615`, "\"\\ud800\"", ``} {
		f.Add([]byte(s))
	}
	types := []mapping.Type{0, mapping.TypeBool, mapping.TypeInt16, mapping.TypeUint64, mapping.TypeFloat32, mapping.TypeFloat64, mapping.TypeString}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, typ := range types {
			spec := &mapping.Spec{Name: "t", Type: typ}
			for _, parse := range []func() (mapping.Value, error){
				func() (mapping.Value, error) { return ParseJSON(spec, in) },
				func() (mapping.Value, error) { return ParseText(spec, string(in)) },
			} {
				v, err := parse()
				if err != nil {
					continue
				}
				if out := encode(v, spec); !json.Valid(out) {
					t.Fatalf("type %s: %q parsed to %+v, rendered as invalid JSON %q", typ, in, v, out)
				}
			}
		}
		var req Request
		_ = json.Unmarshal(in, &req)
		if r := requestedText(req); r != "" && !json.Valid([]byte(r)) {
			t.Fatalf("requested %q is not JSON", r)
		}
	})
}
