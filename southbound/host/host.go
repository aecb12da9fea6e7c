package host

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// Driver is what a Runner runs: the driver that embeds it.
type Driver interface {
	// HostConfig says how to run the device; called by Start, after Init.
	HostConfig() (Config, error)
	// Tags lists the device's tags (southbound.Driver).
	Tags() []*mapping.Spec
}

// Poller is a device the host polls: Connect before the first poll and
// after a failure, Poll every Config.Interval, Close after a failure and
// at Stop. The host calls them from one goroutine at a time (the lane's),
// never concurrently with each other or with a write job of the device.
type Poller interface {
	// Connect opens the connection (it may be lazy and leave the dial to
	// the first request). ctx ends at Stop: a connection bound to it is
	// closed then, which fails a request in flight.
	Connect(ctx context.Context) error
	// Poll reads every tag once. probe is true while the device is
	// offline: the host only asks whether it answers again, so a driver
	// should not retry. The samples are valid until the next call.
	Poll(ctx context.Context, probe bool) ([]mapping.Sample, error)
	// Close drops the connection; the next Connect opens a new one.
	Close() error
}

// Subscriber is a device that pushes values: Run connects and serves one
// session until it fails or ctx ends, calling s.Online once values flow.
// The host runs it again after a backoff when it returns.
type Subscriber interface {
	Run(ctx context.Context, s *Session) error
}

// WritePreparer is implemented by drivers that can write. PrepareWrite is
// called after the host applied the tag's write policy; it checks and
// encodes v without I/O (an error here sends nothing and does not use up
// the tag's write_interval) and returns the work that puts it on the wire,
// which the host runs as a job in the device's lane, between polls.
type WritePreparer interface {
	PrepareWrite(tag int, v mapping.Value) (func(ctx context.Context) error, error)
}

// Config is how the host runs one device.
type Config struct {
	Name string
	// Log receives the transitions (info, warn) and per-poll detail
	// (debug); the host adds device=Name. Nil: the provisioned logger.
	Log *slog.Logger
	// Attrs are logged with every transition (e.g. "address", addr).
	Attrs []any
	// Interval is the poll rate of a Poller (fixed rate: a poll is due one
	// interval after the previous one was due).
	Interval time.Duration
	Backoff  Backoff
	// Lane names the lane of devices that share a medium (a serial port,
	// a gateway's connection); "" is a lane of its own.
	Lane string
	// Share is called when the device joins its lane: with nil when it is
	// the lane's first device, returning the medium they share (closed
	// when the last device leaves, if it is an io.Closer); else with the
	// lane's medium and the names of its devices, returning an error to
	// refuse the device (e.g. other line settings on one port).
	Share func(medium any, members []string) (any, error)
	// Work is the Poller or Subscriber to run when the driver itself is
	// not one (a driver with modes); nil: the driver.
	Work any
}

// Backoff is the wait between reconnect attempts: the nth failure in a row
// waits Min<<n capped at Max, of which the second half is random (equal
// jitter, so devices that failed together do not retry in lockstep).
type Backoff struct{ Min, Max time.Duration }

// DefaultBackoff is 125–250 ms after the first failure, doubling up to
// 15–30 s.
var DefaultBackoff = Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second}

func (b Backoff) wait(n int, limit time.Duration) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo, hi = DefaultBackoff.Min, DefaultBackoff.Max
	}
	if limit > 0 {
		hi = min(hi, limit)
	}
	d := hi
	if n < 30 {
		d = min(hi, lo<<n)
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter and backoffCap let a driver change the wait after one failure
// without owning a backoff: see RetryAfter and CapBackoff.
type retryAfter struct {
	error
	d time.Duration
}

func (e *retryAfter) Unwrap() error { return e.error }

type backoffCap struct {
	error
	max time.Duration
}

func (e *backoffCap) Unwrap() error { return e.error }

// RetryAfter marks err so that the next attempt waits exactly d (e.g. a
// refused login, which servers punish when retried quickly).
func RetryAfter(err error, d time.Duration) error { return &retryAfter{err, d} }

// CapBackoff marks err so that the backoff after it waits at most max
// (e.g. a serial port that disappeared: it comes back in seconds).
func CapBackoff(err error, max time.Duration) error { return &backoffCap{err, max} }

// waitAfter is the wait before attempt n+1 after err.
func (b Backoff) waitAfter(err error, n int) time.Duration {
	var ra *retryAfter
	if errors.As(err, &ra) {
		return ra.d
	}
	var c *backoffCap
	if errors.As(err, &c) {
		return b.wait(n, c.max)
	}
	return b.wait(n, 0)
}

// Env is what the host gives a driver before Start (the provision step);
// zero fields leave what was given before.
type Env struct {
	Log     *slog.Logger
	DataDir string // the gateway's data_dir, absolute
	Host    *Host  // the lanes; nil: the device gets a lane of its own
}

// Provisioner is implemented by drivers that embed a Runner.
type Provisioner interface{ Provision(Env) }

// Provision gives drv what the host gives every driver: the logger, the
// data dir (southbound.DataDirUser) and the host whose lanes it runs in.
func Provision(drv any, env Env) {
	if p, ok := drv.(Provisioner); ok {
		p.Provision(env)
	}
	if u, ok := drv.(southbound.DataDirUser); ok && env.DataDir != "" {
		u.SetDataDir(env.DataDir)
	}
}

// LaneChecker is implemented by drivers whose devices constrain each other
// (devices on one serial port must agree on its line settings): the host
// calls CheckLanes once with every configured device of the config (edged
// validate, plan, run and reload).
type LaneChecker interface {
	CheckLanes(all []southbound.Driver) error
}

// Check runs every LaneChecker among drivers, once per driver type.
func Check(drivers []southbound.Driver) error {
	var errs []error
	seen := map[string]bool{}
	for _, d := range drivers {
		c, ok := d.(LaneChecker)
		if !ok {
			continue
		}
		k := typeName(d)
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := c.CheckLanes(drivers); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
