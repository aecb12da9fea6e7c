package mapping

import (
	"fmt"
	"regexp"
	"testing"
)

// TestStringNeverShowsGoNames: a value that is not set or not one of the
// names prints as something an installer can read, never as Type(0).
func TestStringNeverShowsGoNames(t *testing.T) {
	goName := regexp.MustCompile(`^[A-Z][A-Za-z]*\(\d+\)$`)
	for v := 0; v < 256; v++ {
		for _, s := range []fmt.Stringer{Type(v), Order(v), NaNPolicy(v), Kind(v)} {
			if str := s.String(); goName.MatchString(str) || str == "" {
				t.Errorf("%T(%d).String() = %q", s, v, str)
			}
		}
	}
	if got := Type(0).String(); got != "(no type)" {
		t.Errorf("Type(0) = %q", got)
	}
}

// TestFormatValueEveryKind: values print as an operator reads them, not as
// a Go struct.
func TestFormatValueEveryKind(t *testing.T) {
	for _, c := range []struct {
		v    Value
		want string
	}{
		{Value{Kind: KindBool, Bool: true}, "true"},
		{Value{Kind: KindInt, Int: -3}, "-3"},
		{Value{Kind: KindUint, Uint: 7}, "7"},
		{Value{Kind: KindFloat, Float: 3.14159}, "3.14159"},
		{Value{Kind: KindString, Str: "AUTO"}, `"AUTO"`},
		{Value{Kind: KindJSON, Str: `[1,2]`}, `[1,2]`},
		{Value{}, "(no value)"},
	} {
		if got := FormatValue(c.v); got != c.want {
			t.Errorf("FormatValue(%+v) = %q, want %q", c.v, got, c.want)
		}
	}
}
