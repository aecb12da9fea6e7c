package modbus

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound"
)

// Defaults of a TCP device; see sample.toml.
const (
	DefaultPort         = 502
	DefaultUnitID       = 1
	DefaultPollInterval = time.Second
	DefaultTimeout      = time.Second
	DefaultRetries      = 1
	DefaultMaxGap       = 16
	DefaultMaxRegisters = 125
	DefaultMaxBits      = 2000
)

// Reconnect backoff: the first retry after a failure waits 125–250 ms, each
// further one twice as long, up to 15–30 s (equal jitter, so that devices
// that failed together do not reconnect in lockstep).
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
)

//go:embed sample.toml
var sampleTOML string

// SampleConfig is a commented example of a modbus-tcp [[device]] table, as
// shown in the docs.
func SampleConfig() string { return sampleTOML }

// TCP is one Modbus TCP device (driver = "modbus-tcp"). The struct is its
// config: the loader decodes the [[device]] table into it, then the map
// file into MapTarget, then calls Init.
type TCP struct {
	Device

	// Address is "host:port" or "host" (port 502). The unit_id (0..255)
	// is routed by gateways to serial devices; most plain TCP devices
	// ignore it. The timeout bounds connecting too.
	Address string `toml:"address"`

	minBackoff, maxBackoff time.Duration // tests shorten them

	loop southbound.Loop
	jobs chan job // writes, run by the poll goroutine between polls (made by NewTCP)

	guard southbound.SinkGuard // the sink, never called after Stop

	// Owned by the poll goroutine.
	log   *slog.Logger
	cli   client
	state southbound.State
}

var (
	_ southbound.Driver = (*TCP)(nil)
	_ southbound.Writer = (*TCP)(nil)
	_ configs.Mapped    = (*TCP)(nil)
)

// NewTCP returns a device with the defaults set, ready to decode into.
// (A zero TCP also works but has unit_id 0, retries 0 and max_gap 0.)
func NewTCP() *TCP {
	return &TCP{Device: newDevice(DefaultMaxGap), jobs: make(chan job)}
}

// Init fills defaults and checks the settings and every tag. It does no
// I/O. Zero poll_interval, timeout, max_registers and max_bits mean the
// default. All problems found are returned, joined, each a *configs.Error
// keyed to its setting or tag key (but for "no tags").
func (t *TCP) Init() error {
	t.fillDefaults()
	if t.minBackoff == 0 {
		t.minBackoff, t.maxBackoff = backoffMin, backoffMax
	}
	var errs []error
	addr, err := normalizeAddress(t.Address)
	if err != nil {
		errs = append(errs, settingErr("address", "%v", err))
	}
	t.Address = addr
	if t.UnitID < 0 || t.UnitID > 255 {
		errs = append(errs, settingErr("unit_id", "unit_id = %d: allowed are 0..255 (default %d)", t.UnitID, DefaultUnitID))
	}
	errs = append(errs, checkLimits(t.Retries, t.MaxRegisters, t.MaxBits, t.MaxGap, DefaultMaxGap)...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return t.initTags()
}

// normalizeAddress checks "host[:port]" and adds the default port.
func normalizeAddress(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", errors.New(`address is missing: write "host:port" or "host" (port 502), e.g. address = "192.168.1.10:502"`)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: "host", "10.0.0.5", "[fe80::1]" or a bare IPv6 address.
		h := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
		if strings.ContainsAny(h, "[]/ ") || h == "" {
			return a, fmt.Errorf("address = %q: write \"host:port\" or \"host\" (port 502), e.g. \"192.168.1.10:502\" or \"[fe80::1]:502\"", a)
		}
		if err := checkIPv4(a, h); err != nil {
			return a, err
		}
		return net.JoinHostPort(h, strconv.Itoa(DefaultPort)), nil
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
		return a, fmt.Errorf("address = %q: write \"host:port\" with a port 1..65535, or \"host\" alone for port 502", a)
	}
	if err := checkIPv4(a, host); err != nil {
		return a, err
	}
	return a, nil
}

// checkIPv4 refuses a host of digits and dots that is no IPv4 address
// ("192.168.10.321", "10.0.5"): no host name looks like that, and the
// resolver would try it as one and fail much later, as a DNS error.
func checkIPv4(address, host string) error {
	if strings.Trim(host, "0123456789.") != "" {
		return nil // a name or an IPv6 address
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		return nil
	}
	return fmt.Errorf("address = %q: %s is not an IPv4 address: write four numbers 0..255 separated by dots, e.g. \"192.168.10.32:502\"", address, host)
}

var _ southbound.StatsReporter = (*TCP)(nil)
