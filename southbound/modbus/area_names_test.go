package modbus

import (
	"strings"
	"testing"
)

// TestAreaStringNeverGoName: an area not set prints as an installer reads it.
func TestAreaStringNeverGoName(t *testing.T) {
	for _, a := range []Area{0, 9} {
		if s := a.String(); strings.HasPrefix(s, "Area(") {
			t.Errorf("Area(%d).String() = %q", a, s)
		}
	}
}
