package serial

import (
	"fmt"
	"strings"
	"time"

	bug "go.bug.st/serial"
)

// Mode is the line setting of a serial port. Every slave on a bus must use
// the same one.
type Mode struct {
	Baud     int    // bits per second, e.g. 9600, 19200, 115200
	DataBits int    // 7 or 8 (Modbus RTU uses 8)
	Parity   string // "none", "even" or "odd"
	StopBits int    // 1 or 2
}

// Defaults of a Modbus RTU line (the Modbus serial line specification's
// default: 19200 is also common; 9600 8E1 is what most devices ship with).
const (
	DefaultBaud     = 9600
	DefaultDataBits = 8
	DefaultParity   = "even"
	DefaultStopBits = 1
)

// WithDefaults fills zero fields with the defaults.
func (m Mode) WithDefaults() Mode {
	if m.Baud == 0 {
		m.Baud = DefaultBaud
	}
	if m.DataBits == 0 {
		m.DataBits = DefaultDataBits
	}
	if m.Parity == "" {
		m.Parity = DefaultParity
	}
	m.Parity = strings.ToLower(strings.TrimSpace(m.Parity))
	if m.StopBits == 0 {
		m.StopBits = DefaultStopBits
	}
	return m
}

// Validate checks a mode whose defaults are filled; the messages name the
// config keys (baud, data_bits, parity, stop_bits) and what is allowed.
func (m Mode) Validate() error {
	var errs []string
	if m.Baud < 300 || m.Baud > 4_000_000 {
		errs = append(errs, fmt.Sprintf("baud = %d: allowed are 300..4000000 (common: 9600, 19200, 38400, 115200)", m.Baud))
	}
	if m.DataBits != 7 && m.DataBits != 8 {
		errs = append(errs, fmt.Sprintf("data_bits = %d: allowed are 7 and 8 (Modbus RTU uses 8)", m.DataBits))
	}
	if m.Parity != "none" && m.Parity != "even" && m.Parity != "odd" {
		errs = append(errs, fmt.Sprintf("parity = %q: allowed are \"none\", \"even\", \"odd\"", m.Parity))
	}
	if m.StopBits != 1 && m.StopBits != 2 {
		errs = append(errs, fmt.Sprintf("stop_bits = %d: allowed are 1 and 2", m.StopBits))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// String is the usual short form, e.g. "9600 8E1".
func (m Mode) String() string {
	p := "N"
	if m.Parity != "" {
		p = strings.ToUpper(m.Parity[:1])
	}
	return fmt.Sprintf("%d %d%s%d", m.Baud, m.DataBits, p, m.StopBits)
}

// BitsPerChar is the bits one character takes on the wire: start bit, data
// bits, parity bit, stop bits (11 for 8E1 and 8N2, 10 for 8N1).
func (m Mode) BitsPerChar() int {
	n := 1 + m.DataBits + m.StopBits
	if m.Parity == "even" || m.Parity == "odd" {
		n++
	}
	return n
}

// CharTime is how long one character takes on the wire.
func (m Mode) CharTime() time.Duration {
	if m.Baud <= 0 {
		return 0
	}
	return time.Duration(m.BitsPerChar()) * time.Second / time.Duration(m.Baud)
}

// WireTime is how long chars characters take on the wire.
func (m Mode) WireTime(chars int) time.Duration {
	if m.Baud <= 0 {
		return 0
	}
	return time.Duration(chars*m.BitsPerChar()) * time.Second / time.Duration(m.Baud)
}

// Silence is the inter-frame gap Modbus RTU requires: 3.5 characters, and a
// fixed 1.75 ms above 19200 baud.
func (m Mode) Silence() time.Duration {
	if m.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(35*m.BitsPerChar()) * time.Second / time.Duration(10*m.Baud)
}

// bugMode is the go.bug.st/serial form.
func (m Mode) bugMode() *bug.Mode {
	bm := &bug.Mode{BaudRate: m.Baud, DataBits: m.DataBits, StopBits: bug.OneStopBit}
	if m.StopBits == 2 {
		bm.StopBits = bug.TwoStopBits
	}
	switch m.Parity {
	case "even":
		bm.Parity = bug.EvenParity
	case "odd":
		bm.Parity = bug.OddParity
	default:
		bm.Parity = bug.NoParity
	}
	return bm
}
