package opcua

import (
	"testing"

	"github.com/gopcua/opcua/id"
)

// TestDataTypeNamesAgreeWithTheLibrary: browse names a data type as the
// library's id.Name would (the test binary may link its tables; edged does
// not).
func TestDataTypeNamesAgreeWithTheLibrary(t *testing.T) {
	for i, name := range dataTypeNames {
		if want := id.Name(i); name != want {
			t.Errorf("data type %d: %q, the library says %q", i, name, want)
		}
	}
	if len(dataTypeNames) < 25 {
		t.Errorf("only %d names: the built-in types 1..25 alone are 25", len(dataTypeNames))
	}
	for i := uint32(1); i <= 25; i++ {
		if _, ok := dataTypeNames[i]; !ok {
			t.Errorf("built-in data type %d (%s) has no name", i, id.Name(i))
		}
	}
}
