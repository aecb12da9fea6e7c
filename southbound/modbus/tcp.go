package modbus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
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
	Name   string `toml:"name"`
	Driver string `toml:"driver"`
	Map    string `toml:"map"`

	// Address is "host:port" or "host" (port 502).
	Address string `toml:"address"`
	// UnitID is the Modbus unit (slave) ID, 0..255; gateways to serial
	// devices route by it, most plain TCP devices ignore it.
	UnitID int `toml:"unit_id"`
	// PollInterval is how often all tags are read.
	PollInterval configs.Duration `toml:"poll_interval"`
	// Timeout bounds connecting and each request.
	Timeout configs.Duration `toml:"timeout"`
	// Retries is how many more times a request that timed out or failed on
	// the connection is tried before the device counts as offline.
	Retries int `toml:"retries"`
	// MaxGap is how many unused registers a merged read may read through
	// (16 times as many bits in the coil and discrete input areas).
	MaxGap int `toml:"max_gap"`
	// MaxRegisters is the most registers per read, 1..125.
	MaxRegisters int `toml:"max_registers"`
	// MaxBits is the most coils or discrete inputs per read, 1..2000.
	MaxBits int `toml:"max_bits"`
	// Tag lists the device's own tags ([[device.tag]]); they add to the
	// tags of the map file, if any.
	Tag []Tag `toml:"tag"`

	// Logger receives state changes (info, warn) and per-poll detail
	// (debug); the driver adds device=Name. Nil discards.
	Logger *slog.Logger `toml:"-"`

	mapped DeviceMap // decoded from the map file
	tags   []Tag     // map tags then inline tags, checked
	plan   []Request // the configured plan, before anything was learned
	inited bool
	dev    core

	minBackoff, maxBackoff time.Duration // tests shorten them

	runMu  sync.Mutex // guards cancel, done and jobs
	cancel context.CancelFunc
	done   chan struct{}
	jobs   chan job // writes, run by the poll goroutine between polls

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
	return &TCP{
		UnitID:       DefaultUnitID,
		PollInterval: configs.Duration(DefaultPollInterval),
		Timeout:      configs.Duration(DefaultTimeout),
		Retries:      DefaultRetries,
		MaxGap:       DefaultMaxGap,
		MaxRegisters: DefaultMaxRegisters,
		MaxBits:      DefaultMaxBits,
	}
}

// MapTarget is what the device's map file decodes into.
func (t *TCP) MapTarget() any { return &t.mapped }

// Tags lists the device's tags: the map's, then the inline ones.
func (t *TCP) Tags() []*mapping.Spec { return t.dev.specs }

// Limits are the device's request limits, as given to Plan.
func (t *TCP) Limits() Limits {
	return Limits{MaxGap: t.MaxGap, MaxRegisters: t.MaxRegisters, MaxBits: t.MaxBits}
}

// Requests is the configured read plan of one poll, valid after Init.
// Learned().Plan is the plan in use.
func (t *TCP) Requests() []Request { return t.plan }

// Learned is what the device taught the planner so far (safe to call while
// polling).
func (t *TCP) Learned() Learned { return t.dev.learned() }

// TagList is the device's checked tags, in Tags() order, valid after Init.
func (t *TCP) TagList() []Tag { return t.tags }

// Init fills defaults and checks the settings and every tag. It does no
// I/O. Zero poll_interval, timeout, max_registers and max_bits mean the
// default. All problems found are returned, joined.
func (t *TCP) Init() error {
	if t.PollInterval == 0 {
		t.PollInterval = configs.Duration(DefaultPollInterval)
	}
	if t.Timeout == 0 {
		t.Timeout = configs.Duration(DefaultTimeout)
	}
	if t.MaxRegisters == 0 {
		t.MaxRegisters = DefaultMaxRegisters
	}
	if t.MaxBits == 0 {
		t.MaxBits = DefaultMaxBits
	}
	if t.minBackoff == 0 {
		t.minBackoff, t.maxBackoff = backoffMin, backoffMax
	}
	var errs []error
	addr, err := normalizeAddress(t.Address)
	if err != nil {
		errs = append(errs, err)
	}
	t.Address = addr
	if t.UnitID < 0 || t.UnitID > 255 {
		errs = append(errs, fmt.Errorf("unit_id = %d: allowed are 0..255 (default %d)", t.UnitID, DefaultUnitID))
	}
	errs = append(errs, checkLimits(t.Retries, t.MaxRegisters, t.MaxBits, t.MaxGap, DefaultMaxGap)...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	tags, err := mergeTags(t.mapped.Tags, t.Tag, t.Map, t.MaxRegisters)
	if err != nil {
		return err
	}
	t.tags = tags
	t.dev.init(t.Name, tags, t.Limits(), t.Retries)
	t.plan = t.dev.plan
	t.inited = true
	return nil
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
		return net.JoinHostPort(h, strconv.Itoa(DefaultPort)), nil
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
		return a, fmt.Errorf("address = %q: write \"host:port\" with a port 1..65535, or \"host\" alone for port 502", a)
	}
	return a, nil
}

// Stats implements southbound.StatsReporter.
func (t *TCP) Stats() southbound.Stats { return t.dev.stats() }

var _ southbound.StatsReporter = (*TCP)(nil)
