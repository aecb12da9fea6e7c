package modbus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/goburrow/modbus"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
	"github.com/edged-gw/edged/southbound/serial"
)

//go:embed sample-rtu.toml
var sampleRTUTOML string

// SampleRTUConfig is a commented example of modbus-rtu [[device]] tables.
func SampleRTUConfig() string { return sampleRTUTOML }

// RTU is one Modbus RTU slave on a serial bus (driver = "modbus-rtu"). All
// devices naming the same port share one bus scheduler that owns the port:
// one transaction at a time, each device polled at its own interval, a
// silent slave backed off so the others keep their rate. The struct is its
// config.
type RTU struct {
	Device

	// Port is the serial device, e.g. "/dev/ttyUSB0" or (better, stable
	// across reboots) "/dev/serial/by-id/usb-FTDI_…-if00-port0".
	Port string `toml:"port"`
	// Baud, DataBits, Parity, StopBits are the line settings; every device
	// on one port must give the same (or leave them all at the defaults:
	// 9600 8E1).
	Baud     int    `toml:"baud"`
	DataBits int    `toml:"data_bits"`
	Parity   string `toml:"parity"`
	StopBits int    `toml:"stop_bits"`
	// Turnaround is an extra pause after each transaction with this slave
	// before the bus sends the next frame, for slow slaves; 0 means none.
	Turnaround configs.Duration `toml:"turnaround"`

	mode serial.Mode // the line settings with defaults, after Init

	// The host runs the device in the lane of its port.
	host.Runner

	minBackoff, maxBackoff time.Duration // tests shorten them

	bus *rtuBus // the line of the port's lane, while started
}

var (
	_ southbound.Driver = (*RTU)(nil)
	_ southbound.Writer = (*RTU)(nil)
	_ configs.Mapped    = (*RTU)(nil)
)

// Defaults of an RTU device that differ from TCP's.
const (
	DefaultRTUMaxGap = 16
	// rtuBackoffMax caps the pause between probes of a silent slave: each
	// probe costs the bus one timeout.
	rtuBackoffMax = 30 * time.Second
)

// NewRTU returns a device with the defaults set, ready to decode into.
func NewRTU() *RTU {
	r := &RTU{Device: newDevice(DefaultRTUMaxGap)}
	r.Bind(r)
	return r
}

// LineMode is the serial line setting, valid after Init.
func (r *RTU) LineMode() serial.Mode { return r.mode }

// Init fills defaults and checks the settings and every tag; no I/O. That
// devices sharing a port agree on its settings is checked by CheckBuses
// and again at Start.
func (r *RTU) Init() error {
	r.fillDefaults()
	if r.minBackoff == 0 {
		r.minBackoff, r.maxBackoff = host.DefaultBackoff.Min, rtuBackoffMax
	}
	var errs []error
	r.Port = strings.TrimSpace(r.Port)
	if r.Port == "" {
		errs = append(errs, configs.Errorf("port", `port is missing: the serial device, e.g. port = "/dev/ttyUSB0" or a stable "/dev/serial/by-id/…" link (edged ports lists them)`))
	}
	r.mode = serial.Mode{Baud: r.Baud, DataBits: r.DataBits, Parity: r.Parity, StopBits: r.StopBits}.WithDefaults()
	r.Baud, r.DataBits, r.Parity, r.StopBits = r.mode.Baud, r.mode.DataBits, r.mode.Parity, r.mode.StopBits
	errs = append(errs, lineModeErrs(r.mode)...)
	if r.UnitID < 1 || r.UnitID > 247 {
		errs = append(errs, configs.Errorf("unit_id", "unit_id = %d: allowed are 1..247 (the slave address set on the device; 0 is broadcast and gets no answers)", r.UnitID))
	}
	for _, d := range []struct {
		key string
		v   configs.Duration
	}{{"poll_interval", r.PollInterval}, {"timeout", r.Timeout}, {"turnaround", r.Turnaround}} {
		if d.v.D() < 0 {
			errs = append(errs, configs.Errorf(d.key, "poll_interval, timeout and turnaround must not be negative"))
			break
		}
	}
	if r.Turnaround.D() > 10*time.Second {
		errs = append(errs, configs.Errorf("turnaround", "turnaround = %v: allowed are 0..10s (a pause after each answer of this slave)", r.Turnaround.D()))
	}
	errs = append(errs, checkLimits(r.Retries, r.MaxRegisters, r.MaxBits, r.MaxGap, DefaultRTUMaxGap)...)
	if len(errs) > 0 {
		// The tags are checked too: one run lists every problem.
		return errors.Join(append(errs, r.checkTagsOnly())...)
	}
	return r.initTags()
}

// lineModeErrs checks the line settings one key at a time (serial.Mode
// names them all in one error), so that each problem is keyed to its own.
func lineModeErrs(m serial.Mode) []error {
	var errs []error
	ok := serial.Mode{}.WithDefaults()
	for _, f := range []struct {
		key string
		set func(*serial.Mode)
	}{
		{"baud", func(o *serial.Mode) { o.Baud = m.Baud }},
		{"data_bits", func(o *serial.Mode) { o.DataBits = m.DataBits }},
		{"parity", func(o *serial.Mode) { o.Parity = m.Parity }},
		{"stop_bits", func(o *serial.Mode) { o.StopBits = m.StopBits }},
	} {
		one := ok
		f.set(&one)
		if err := one.Validate(); err != nil {
			errs = append(errs, configs.Errorf(f.key, "%v", err))
		}
	}
	if len(errs) == 0 {
		if err := m.Validate(); err != nil { // a check across keys
			errs = append(errs, err)
		}
	}
	return errs
}

// HostConfig implements host.Driver: the device runs in the lane of its
// port, which it shares with every device on that port (one transaction
// at a time); Start fails when a started device uses the port with other
// line settings.
func (r *RTU) HostConfig() (host.Config, error) {
	if !r.inited {
		return host.Config{}, fmt.Errorf("modbus device %q: Start before a successful Init", r.Name)
	}
	key := filepath.Clean(r.Port)
	return host.Config{Name: r.Name, Log: r.Logger, Attrs: []any{"port", key, "unit_id", r.UnitID},
		Interval: r.PollInterval.D(), Backoff: host.Backoff{Min: r.minBackoff, Max: r.maxBackoff},
		Lane: "serial:" + key, Share: r.share}, nil
}

// Connect implements host.Poller: the line opens itself on first use.
func (r *RTU) Connect(ctx context.Context) error {
	r.connect(ctx, &r.Runner, func() client { return newRTUClient(r.bus.line, byte(r.UnitID), r.Timeout.D(), r.Turnaround.D()) })
	return nil
}

// Poll implements host.Poller. A port that disappeared (a USB adapter
// unplugged) is tried again within portBackoffMax.
func (r *RTU) Poll(ctx context.Context, probe bool) ([]mapping.Sample, error) {
	s, err := r.Device.Poll(ctx, probe)
	if errors.Is(err, serial.ErrPort) {
		err = host.CapBackoff(err, portBackoffMax)
	}
	return s, err
}

// transactor sends one RTU frame and returns the whole answer: a serial
// line, or a socket to a transparent serial-to-Ethernet converter.
type transactor interface {
	Transact(req []byte, timeout time.Duration) ([]byte, error)
}

// rtuTransport is one device's view of the shared line: goburrow's
// Transporter with the device's timeout and turnaround.
type rtuTransport struct {
	line       transactor
	timeout    time.Duration
	turnaround time.Duration
}

// Send implements modbus.Transporter.
func (t *rtuTransport) Send(req []byte) ([]byte, error) {
	resp, err := t.line.Transact(req, t.timeout)
	if t.turnaround > 0 {
		time.Sleep(t.turnaround)
	}
	return resp, err
}

// nopCloser: after an RTU error nothing is closed; the line drops stale
// input before the next request and reopens a failed port itself.
type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func newRTUClient(line transactor, unit byte, timeout, turnaround time.Duration) *libClient {
	h := modbus.NewRTUClientHandler("") // packager only: framing and CRC
	h.SlaveId = unit
	return &libClient{mb: modbus.NewClient2(h, &rtuTransport{line, timeout, turnaround}), tr: nopCloser{}}
}

var (
	_ southbound.StatsReporter = (*RTU)(nil)
	_ host.Poller              = (*RTU)(nil)
	_ host.WritePreparer       = (*RTU)(nil)
	_ host.LaneChecker         = (*RTU)(nil)
)
