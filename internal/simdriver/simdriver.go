// Package simdriver is a protocol driver for tests only (driver = "sim"):
// a device whose tags live in memory, in a Plant shared by name. It shows
// what a new protocol costs: this folder and one import line. It has no
// scheduler, backoff, state machine, metrics or write policy of its own —
// the host (southbound/host) gives it all of them.
package simdriver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
)

func init() {
	southbound.Register("sim", func() southbound.Driver { d := &Device{}; d.Bind(d); return d })
}

// Device is one simulated device; the struct is its config.
type Device struct {
	Name         string           `toml:"name"`
	Driver       string           `toml:"driver"`
	Plant        string           `toml:"plant"`
	PollInterval configs.Duration `toml:"poll_interval"`
	Tag          []mapping.Spec   `toml:"tag"`

	host.Runner

	specs   []*mapping.Spec
	plant   *Plant
	samples []mapping.Sample
}

// Init checks the tags; no I/O.
func (d *Device) Init() error {
	if d.PollInterval == 0 {
		d.PollInterval = configs.Duration(100 * time.Millisecond)
	}
	var errs []error
	d.specs = d.specs[:0]
	for i := range d.Tag {
		if err := d.Tag[i].Init(); err != nil {
			errs = append(errs, fmt.Errorf("tag[%d]: %w", i, err))
		}
		d.specs = append(d.specs, &d.Tag[i])
	}
	return errors.Join(errs...)
}

// Tags implements southbound.Driver.
func (d *Device) Tags() []*mapping.Spec { return d.specs }

// HostConfig implements host.Driver.
func (d *Device) HostConfig() (host.Config, error) {
	return host.Config{Name: d.Name, Interval: d.PollInterval.D(), Attrs: []any{"plant", d.Plant}}, nil
}

// Connect implements host.Poller.
func (d *Device) Connect(context.Context) error {
	d.plant = PlantNamed(d.Plant)
	d.samples = make([]mapping.Sample, len(d.specs))
	return nil
}

// Poll implements host.Poller: one request per tag.
func (d *Device) Poll(context.Context, bool) ([]mapping.Sample, error) {
	for i, s := range d.specs {
		v, err := d.plant.read(s.Name)
		d.Counter().Count(err)
		if err != nil {
			return nil, err
		}
		d.samples[i] = mapping.Sample{Tag: s, Value: v, Quality: mapping.Good, TimeMs: time.Now().UnixMilli()}
	}
	return d.samples, nil
}

// Close implements host.Poller.
func (d *Device) Close() error { return nil }

// PrepareWrite implements host.WritePreparer.
func (d *Device) PrepareWrite(k int, v mapping.Value) (func(context.Context) error, error) {
	name := d.specs[k].Name
	return func(context.Context) error {
		err := d.plant.write(name, v)
		d.Counter().Count(err)
		return err
	}, nil
}

// Plant is the simulated process behind sim devices: tag values by name,
// whether it answers, and what was written. It notices a read and a write
// in flight at once (the host promises one request at a time per lane).
type Plant struct {
	mu       sync.Mutex
	values   map[string]mapping.Value
	down     bool
	fault    error // answered to every request while set
	writes   []string
	inFlight int
	overlaps int
}

var (
	plantsMu sync.Mutex
	plants   = map[string]*Plant{}
)

// PlantNamed returns the plant of that name, made on first use.
func PlantNamed(name string) *Plant {
	plantsMu.Lock()
	defer plantsMu.Unlock()
	p := plants[name]
	if p == nil {
		p = &Plant{values: map[string]mapping.Value{}}
		plants[name] = p
	}
	return p
}

// Set sets a tag's value.
func (p *Plant) Set(tag string, v mapping.Value) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.values[tag] = v
}

// Get returns a tag's value.
func (p *Plant) Get(tag string) mapping.Value {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.values[tag]
}

// SetDown makes the plant stop answering (requests time out) or answer.
func (p *Plant) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// SetFault makes every request fail with err (nil: answer again).
func (p *Plant) SetFault(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = err
}

// Writes lists the writes that landed, as "tag=value".
func (p *Plant) Writes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.writes...)
}

// Overlaps counts requests that arrived while another was in flight.
func (p *Plant) Overlaps() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.overlaps
}

// errDown is what a plant that does not answer returns: a timeout.
var errDown = fmt.Errorf("sim: no answer: %w", os.ErrDeadlineExceeded)

func (p *Plant) begin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight > 0 {
		p.overlaps++
	}
	p.inFlight++
	if p.down {
		return errDown
	}
	return p.fault
}

func (p *Plant) end() {
	p.mu.Lock()
	p.inFlight--
	p.mu.Unlock()
}

func (p *Plant) read(tag string) (mapping.Value, error) {
	err := p.begin()
	defer p.end()
	time.Sleep(time.Millisecond) // a request takes a moment, so overlaps would show
	if err != nil {
		return mapping.Value{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.values[tag], nil
}

func (p *Plant) write(tag string, v mapping.Value) error {
	err := p.begin()
	defer p.end()
	time.Sleep(time.Millisecond)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.values[tag] = v
	p.writes = append(p.writes, fmt.Sprintf("%s=%s", tag, mapping.FormatValue(v)))
	return nil
}
