package modbus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
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

	// The host runs the device: Start, Stop, Write, Stats come from it.
	host.Runner

	minBackoff, maxBackoff time.Duration // tests shorten them

	link *tcpLink // the connection of the address's lane, while started
}

var (
	_ southbound.Driver = (*TCP)(nil)
	_ southbound.Writer = (*TCP)(nil)
	_ configs.Mapped    = (*TCP)(nil)
)

// NewTCP returns a device with the defaults set, ready to decode into.
// (A zero TCP also works but has unit_id 0, retries 0 and max_gap 0.)
func NewTCP() *TCP {
	t := &TCP{Device: newDevice(DefaultMaxGap)}
	t.Bind(t)
	return t
}

// Init fills defaults and checks the settings and every tag. It does no
// I/O. Zero poll_interval, timeout, max_registers and max_bits mean the
// default. All problems found are returned, joined, each a *configs.Error
// keyed to its setting or tag key (but for "no tags").
func (t *TCP) Init() error {
	t.fillDefaults()
	if t.minBackoff == 0 {
		t.minBackoff, t.maxBackoff = host.DefaultBackoff.Min, host.DefaultBackoff.Max
	}
	var errs []error
	addr, err := normalizeAddress(t.Address)
	if err != nil {
		errs = append(errs, configs.Errorf("address", "%v", err))
	}
	t.Address = addr
	if t.UnitID < 0 || t.UnitID > 255 {
		errs = append(errs, configs.Errorf("unit_id", "unit_id = %d: allowed are 0..255 (default %d)", t.UnitID, DefaultUnitID))
	}
	errs = append(errs, checkLimits(t.Retries, t.MaxRegisters, t.MaxBits, t.MaxGap, DefaultMaxGap)...)
	if len(errs) > 0 {
		// The tags are checked too: one run lists every problem.
		return errors.Join(append(errs, t.checkTagsOnly())...)
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

var (
	_ southbound.StatsReporter = (*TCP)(nil)
	_ host.Poller              = (*TCP)(nil)
	_ host.WritePreparer       = (*TCP)(nil)
)

// HostConfig implements host.Driver: every device at one address (the unit
// IDs behind one Modbus TCP gateway) shares one lane and one connection,
// so the gateway gets one request at a time; each is polled every
// poll_interval.
func (t *TCP) HostConfig() (host.Config, error) {
	if !t.inited {
		return host.Config{}, fmt.Errorf("modbus device %q: Start before a successful Init", t.Name)
	}
	return host.Config{Name: t.Name, Log: t.Logger, Attrs: []any{"address", t.Address}, Interval: t.PollInterval.D(),
		Backoff: host.Backoff{Min: t.minBackoff, Max: t.maxBackoff}, Lane: "tcp:" + t.Address, Share: t.share}, nil
}

// share joins the connection of the device's address (host.Config.Share).
func (t *TCP) share(medium any, members []string) (any, error) {
	l, err := share(medium, members, "address "+t.Address, func() *tcpLink { return &tcpLink{address: t.Address} })
	if err == nil {
		t.link = l
	}
	return l, err
}

// Connect implements host.Poller. The connection is dialled by the first
// request, and closed when ctx ends (Stop), which fails a request in
// flight.
func (t *TCP) Connect(ctx context.Context) error {
	if t.link == nil { // polled outside a lane (a benchmark): a connection of its own
		t.link = &tcpLink{address: t.Address}
	}
	t.connect(ctx, &t.Runner, func() client { return newTCPClientOn(ctx, t.link, byte(t.UnitID), t.Timeout.D()) })
	return nil
}
