package modbus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound/host"
)

// Device holds what a Modbus device is configured with and learns,
// whatever its transport: the [[device]] keys TCP and RTU share (the
// config loader flattens this struct into the table) and the checked tags,
// plan and poll core. TCP and RTU embed it.
type Device struct {
	Name   string `toml:"name"`
	Driver string `toml:"driver"`
	Map    string `toml:"map"`

	// UnitID is the Modbus unit (slave) ID: 1..247 on a serial bus;
	// 0..255 over TCP, where gateways to serial devices route by it.
	UnitID int `toml:"unit_id"`
	// PollInterval is how often all tags are read.
	PollInterval configs.Duration `toml:"poll_interval"`
	// Timeout bounds each request (and, over TCP, connecting; on a serial
	// line it counts after the request's own time on the wire).
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

	// Logger receives state changes (info, warn), learned plans and
	// per-poll detail (debug); the driver adds device=Name. Nil discards.
	Logger *slog.Logger `toml:"-"`

	mapped DeviceMap // decoded from the map file; emptied by a successful Init
	nMap   int       // how many of tags came from the map, valid after Init
	tags   []Tag     // map tags then inline tags, checked
	plan   []Request // the configured plan, before anything was learned
	inited bool
	dev    core

	// Owned by the lane while started: the client of the current Start.
	cli    client
	cliCtx context.Context
}

// connect makes the device's client, once per Start (ctx is the Start's;
// host.Poller.Connect).
func (d *Device) connect(ctx context.Context, r *host.Runner, mk func() client) {
	if d.cli == nil || d.cliCtx != ctx {
		d.cli, d.cliCtx = mk(), ctx
		d.dev.start(r.Log(), d.cli, r.Counter())
	}
}

// Poll implements host.Poller: one cycle of the (learning) read plan; a
// probe of an offline device gets no retries.
func (d *Device) Poll(ctx context.Context, probe bool) ([]mapping.Sample, error) {
	return d.dev.poll(ctx, d.Retries, probe)
}

// Close implements host.Poller. The connection or line is shared by the
// devices of the lane, and the client drops a connection itself after a
// failure that may leave a late answer behind; a unit merely missing
// behind a gateway (exceptions 0A, 0B) leaves it up.
func (d *Device) Close() error { return nil }

// share is host.Config.Share for a medium of type *T, made by mk for the
// lane's first device; where names the medium in errors.
func share[T any](medium any, members []string, where string, mk func() *T) (*T, error) {
	if medium == nil {
		return mk(), nil
	}
	m, ok := medium.(*T)
	if !ok {
		return nil, fmt.Errorf("%s is in use by device(s) %s of another driver", where, strings.Join(members, ", "))
	}
	return m, nil
}

// newDevice returns the shared settings with their defaults.
func newDevice(maxGap int) Device {
	return Device{
		UnitID:       DefaultUnitID,
		PollInterval: configs.Duration(DefaultPollInterval),
		Timeout:      configs.Duration(DefaultTimeout),
		Retries:      DefaultRetries,
		MaxGap:       maxGap,
		MaxRegisters: DefaultMaxRegisters,
		MaxBits:      DefaultMaxBits,
	}
}

// fillDefaults sets zero poll_interval, timeout, max_registers and
// max_bits to their defaults.
func (d *Device) fillDefaults() {
	if d.PollInterval == 0 {
		d.PollInterval = configs.Duration(DefaultPollInterval)
	}
	if d.Timeout == 0 {
		d.Timeout = configs.Duration(DefaultTimeout)
	}
	if d.MaxRegisters == 0 {
		d.MaxRegisters = DefaultMaxRegisters
	}
	if d.MaxBits == 0 {
		d.MaxBits = DefaultMaxBits
	}
}

// initTags merges and checks the map and inline tags and plans the reads;
// called by Init once the settings are valid.
//
// The merged list is the only copy kept: a map's decoded tags are dropped
// once merged (ten devices sharing a 500-tag map held 1.1 MB of them for
// nothing, twice that in heap growth at the collector's default).
func (d *Device) initTags() error {
	fromMap := d.mapTags()
	tags, err := mergeTags(fromMap, d.Tag, d.Map, d.MaxRegisters)
	if err != nil {
		return err
	}
	d.tags, d.nMap, d.mapped.Tags = tags, len(fromMap), nil
	d.dev.init(d.Name, tags, d.Limits(), d.Retries)
	d.plan = d.dev.plan
	d.inited = true
	return nil
}

// checkTagsOnly checks the tags of a device whose other settings have
// problems (reported by Init), without initialising it; an out-of-range
// max_registers is taken as the largest allowed, so that it is not
// reported a second time through every tag.
func (d *Device) checkTagsOnly() error {
	maxRegisters := d.MaxRegisters
	if maxRegisters < 1 || maxRegisters > 125 {
		maxRegisters = 125
	}
	_, err := mergeTags(d.mapTags(), d.Tag, d.Map, maxRegisters)
	return err
}

// mapTags is the map's tags: as decoded, or once Init has merged them, the
// first nMap of the merged list (so that Init may run again).
func (d *Device) mapTags() []Tag {
	if d.mapped.Tags == nil && d.inited {
		return slices.Clone(d.tags[:d.nMap])
	}
	return d.mapped.Tags
}

// MapTarget is what the device's map file decodes into.
func (d *Device) MapTarget() any { return &d.mapped }

// Tags lists the device's tags: the map's, then the inline ones.
func (d *Device) Tags() []*mapping.Spec { return d.dev.specs }

// TagList is the device's checked tags, in Tags() order, valid after Init.
func (d *Device) TagList() []Tag { return d.tags }

// Limits are the device's request limits, as given to Plan.
func (d *Device) Limits() Limits {
	return Limits{MaxGap: d.MaxGap, MaxRegisters: d.MaxRegisters, MaxBits: d.MaxBits}
}

// Requests is the configured read plan of one poll, valid after Init.
// Learned().Plan is the plan in use.
func (d *Device) Requests() []Request { return d.plan }

// Learned is what the device taught the planner so far (safe to call while
// polling).
func (d *Device) Learned() Learned { return d.dev.learned() }
