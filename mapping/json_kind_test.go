package mapping

import (
	"encoding/json"
	"testing"
)

// KindJSON carries values without a scalar form (arrays, structures) as
// pre-encoded JSON that payloads embed unchanged.
func TestKindJSON(t *testing.T) {
	tag := &Spec{Name: "t"}
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"array", Value{Kind: KindJSON, Str: `[1,2.5,3]`}, `{"v":[1,2.5,3],"ts":5,"q":"good"}`},
		{"object", Value{Kind: KindJSON, Str: `{"a":"b"}`}, `{"v":{"a":"b"},"ts":5,"q":"good"}`},
		{"empty is null", Value{Kind: KindJSON}, `{"v":null,"ts":5,"q":"good"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Sample{Tag: tag, Value: tt.v, TimeMs: 5}
			got := string(AppendJSON(nil, &s))
			if got != tt.want {
				t.Errorf("AppendJSON = %s, want %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("%s is not valid JSON", got)
			}
		})
	}

	a, b := Value{Kind: KindJSON, Str: `[1]`}, Value{Kind: KindJSON, Str: `[2]`}
	if !a.Equal(a) || a.Equal(b) || a.Equal(Value{Kind: KindString, Str: `[1]`}) {
		t.Errorf("Equal: a=a %v, a=b %v, a=string %v", a.Equal(a), a.Equal(b), a.Equal(Value{Kind: KindString, Str: `[1]`}))
	}
	if _, ok := a.Float64(); ok {
		t.Error("Float64 of a JSON value reports ok")
	}
	if a.Kind.String() != "json" {
		t.Errorf("Kind.String() = %q", a.Kind.String())
	}
	// The report-by-exception filter treats a changed array as a change.
	f := Filter{}
	spec := &Spec{Name: "t", OnChange: true}
	for i, c := range []struct {
		v    Value
		pass bool
	}{{a, true}, {a, false}, {b, true}} {
		s := Sample{Tag: spec, Value: c.v, TimeMs: int64(i)}
		if got := f.Pass(&s); got != c.pass {
			t.Errorf("sample %d: Pass = %v, want %v", i, got, c.pass)
		}
	}
	// Embedding does not allocate when dst has room.
	dst := make([]byte, 0, 128)
	s := Sample{Tag: tag, Value: a, TimeMs: 5}
	if n := testing.AllocsPerRun(100, func() { dst = AppendJSON(dst[:0], &s) }); n != 0 {
		t.Errorf("%v allocs per AppendJSON of a JSON value, want 0", n)
	}
}
