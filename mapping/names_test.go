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
