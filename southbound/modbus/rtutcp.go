package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
	"github.com/edged-gw/edged/southbound/serial"
)

// RTUOverTCP is one Modbus RTU slave behind a serial-to-Ethernet converter
// in transparent mode (driver = "modbus-rtu-tcp"): raw RTU frames with
// their CRC over a TCP socket, for the converters that do not translate
// to Modbus TCP. Every device at one address shares one connection and one
// lane, like the slaves of one RS-485 port.
type RTUOverTCP struct {
	Device

	// Address is the converter's "host:port" (no default port: converters
	// use 4001, 8899, 502, …).
	Address string `toml:"address"`
	// Turnaround is an extra pause after each answer of this slave.
	Turnaround configs.Duration `toml:"turnaround"`

	host.Runner

	minBackoff, maxBackoff time.Duration // tests shorten them

	link *rtuSocket // the socket of the address's lane, while started
}

var (
	_ southbound.Driver        = (*RTUOverTCP)(nil)
	_ southbound.Writer        = (*RTUOverTCP)(nil)
	_ southbound.StatsReporter = (*RTUOverTCP)(nil)
	_ host.Poller              = (*RTUOverTCP)(nil)
	_ configs.Mapped           = (*RTUOverTCP)(nil)
)

// NewRTUOverTCP returns a device with the defaults set, ready to decode into.
func NewRTUOverTCP() *RTUOverTCP {
	r := &RTUOverTCP{Device: newDevice(DefaultRTUMaxGap)}
	r.Bind(r)
	return r
}

// Init fills defaults and checks the settings and every tag; no I/O.
func (r *RTUOverTCP) Init() error {
	r.fillDefaults()
	if r.minBackoff == 0 {
		r.minBackoff, r.maxBackoff = host.DefaultBackoff.Min, rtuBackoffMax
	}
	var errs []error
	r.Address = strings.TrimSpace(r.Address)
	if _, port, err := net.SplitHostPort(r.Address); err != nil || port == "" {
		errs = append(errs, configs.Errorf("address", `address = %q: write the converter's "host:port", e.g. address = "192.168.1.30:4001"`, r.Address))
	}
	if r.UnitID < 1 || r.UnitID > 247 {
		errs = append(errs, configs.Errorf("unit_id", "unit_id = %d: allowed are 1..247 (the slave address set on the device)", r.UnitID))
	}
	if r.Turnaround.D() < 0 || r.Turnaround.D() > 10*time.Second {
		errs = append(errs, configs.Errorf("turnaround", "turnaround = %v: allowed are 0..10s (a pause after each answer of this slave)", r.Turnaround.D()))
	}
	errs = append(errs, checkLimits(r.Retries, r.MaxRegisters, r.MaxBits, r.MaxGap, DefaultRTUMaxGap)...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return r.initTags()
}

// SetDataDir implements southbound.DataDirUser (the learned plan).
func (r *RTUOverTCP) SetDataDir(dir string) { r.setDataDir(dir, "modbus-rtu-tcp") }

// SavedPlan reads the device's saved learned plan under dataDir.
func (r *RTUOverTCP) SavedPlan(dataDir string) SavedPlan {
	return r.savedPlan(dataDir, "modbus-rtu-tcp")
}

// HostConfig implements host.Driver: one lane per converter address.
func (r *RTUOverTCP) HostConfig() (host.Config, error) {
	if !r.inited {
		return host.Config{}, fmt.Errorf("modbus device %q: Start before a successful Init", r.Name)
	}
	return host.Config{Name: r.Name, Log: r.Logger, Attrs: []any{"address", r.Address, "unit_id", r.UnitID},
		Interval: r.PollInterval.D(), Backoff: host.Backoff{Min: r.minBackoff, Max: r.maxBackoff},
		Lane: "rtu-tcp:" + r.Address, Share: r.share}, nil
}

func (r *RTUOverTCP) share(medium any, members []string) (any, error) {
	l, err := share(medium, members, "address "+r.Address, func() *rtuSocket { return &rtuSocket{address: r.Address} })
	if err == nil {
		r.link = l
	}
	return l, err
}

// Connect implements host.Poller: the socket is dialled by the first request.
func (r *RTUOverTCP) Connect(ctx context.Context) error {
	r.connect(ctx, &r.Runner, func() client {
		r.link.bind(ctx)
		return newRTUClient(r.link, byte(r.UnitID), r.Timeout.D(), r.Turnaround.D())
	})
	return nil
}

// rtuSocket carries RTU frames over one TCP connection (a transparent
// converter): the lane sends one frame at a time and reads the answer,
// sized from the request like on a serial line.
type rtuSocket struct {
	address string

	mu   sync.Mutex // guards conn
	conn net.Conn

	buf [serial.MaxFrame]byte
}

// bind drops the connection when a device's ctx ends (its Stop), which
// fails a request of it in flight; the others dial again.
func (s *rtuSocket) bind(ctx context.Context) { context.AfterFunc(ctx, func() { s.Close() }) }

// Close drops the connection; the next Transact dials again.
func (s *rtuSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Transact implements transactor. After any failure but an intact
// exception answer the connection is dropped, so that a late answer is
// never taken for the next one's.
func (s *rtuSocket) Transact(req []byte, timeout time.Duration) ([]byte, error) {
	resp, err := s.transact(req, timeout)
	if err != nil {
		s.Close()
	}
	return resp, err
}

func (s *rtuSocket) transact(req []byte, timeout time.Duration) ([]byte, error) {
	want, err := serial.ResponseLength(req)
	if err != nil {
		return nil, err
	}
	c, err := s.dial(timeout)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	got := 0
	for got < want {
		n, err := c.Read(s.buf[got:want])
		got += n
		if got >= 2 && s.buf[1] == req[1]|0x80 {
			want = serial.ExceptionLength
		}
		if err != nil && got < want {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("%w: %s: %d of %d bytes after %v", serial.ErrTimeout, s.address, got, want, timeout)
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read from %s: %w", s.address, err)
		}
	}
	resp := s.buf[:want]
	if err := serial.CheckResponse(req, resp); err != nil {
		return nil, fmt.Errorf("%s: %w", s.address, err)
	}
	return resp, nil
}

func (s *rtuSocket) dial(timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := net.DialTimeout("tcp", s.address, timeout)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	return c, nil
}
