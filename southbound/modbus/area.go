package modbus

import (
	"fmt"
	"strings"
)

// Area is one of the four data areas of a Modbus device.
type Area uint8

// The four areas. The zero value means "not set".
const (
	Coil            Area = iota + 1 // read/write bits (FC 1, 5, 15)
	DiscreteInput                   // read-only bits (FC 2)
	InputRegister                   // read-only 16-bit registers (FC 4)
	HoldingRegister                 // read/write 16-bit registers (FC 3, 6, 16)
)

// AreaNames lists the allowed spellings, for error messages and docs.
const AreaNames = `coil, discrete_input (or discrete), input_register (or input), holding_register (or holding)`

var areaNames = [...]struct{ long, short string }{
	Coil:            {"coil", "coil"},
	DiscreteInput:   {"discrete_input", "discrete"},
	InputRegister:   {"input_register", "input"},
	HoldingRegister: {"holding_register", "holding"},
}

func (a Area) valid() bool { return a >= Coil && a <= HoldingRegister }

// String is the name used in config files, e.g. "holding_register".
func (a Area) String() string {
	if a.valid() {
		return areaNames[a].long
	}
	if a == 0 {
		return "(no area)"
	}
	return fmt.Sprintf("(unknown area %d)", uint8(a))
}

// short is the name used in messages about requests, e.g. "read holding 0+10".
func (a Area) short() string {
	if a.valid() {
		return areaNames[a].short
	}
	return a.String()
}

// Bits reports whether the area holds single bits (coils, discrete inputs)
// rather than 16-bit registers.
func (a Area) Bits() bool { return a == Coil || a == DiscreteInput }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Area) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	for i, n := range areaNames {
		if i > 0 && (s == n.long || s == n.short) {
			*a = Area(i)
			return nil
		}
	}
	return fmt.Errorf("unknown area %q: allowed are %s", string(b), AreaNames)
}

// MarshalText implements encoding.TextMarshaler.
func (a Area) MarshalText() ([]byte, error) {
	if !a.valid() {
		return nil, fmt.Errorf("invalid area %d", uint8(a))
	}
	return []byte(a.String()), nil
}
