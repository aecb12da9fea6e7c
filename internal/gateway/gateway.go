// Package gateway starts and stops the configured devices (provisioning
// each with the data dir and the lanes of southbound/host, which runs
// them), takes their samples, applies report-by-exception (deadband,
// heartbeat), renders topics (once per tag, when a config is built) and
// payloads (JSON, or bare values with format = "value") through mapping, hands them
// to the northbound publisher, and publishes gateway and device status.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/topic"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
)

// Publisher takes rendered messages; the embedded broker implements it.
// Publish must copy the payload if it keeps it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Gateway runs the devices of one config and can swap in another config
// (Reload) restarting only the devices that changed.
type Gateway struct {
	pub   Publisher
	log   *slog.Logger
	lanes *host.Host // the lanes every device runs in, across reloads

	tbl atomic.Pointer[table] // the devices running now; replaced whole on reload

	samples   atomic.Uint64 // samples received from drivers
	published atomic.Uint64 // value messages published
	pubErrors atomic.Uint64

	life sync.Mutex // serialises Start, Reload and Stop

	tap atomic.Pointer[Tap]
}

// Tap sees what the gateway publishes as samples and device states rather
// than rendered messages (the Sparkplug uplinks). Its methods run on the
// device's poller: they must not block, and must copy what they keep.
type Tap interface {
	// TapSamples: the samples of one poll (all) and those of them that
	// passed report-by-exception (passed, possibly none), on every poll.
	TapSamples(device string, all, passed []mapping.Sample)
	// TapState: the device's state, on every report.
	TapState(device string, online bool)
	// Active says whether the tap wants samples now (checked every poll:
	// without a taker the gateway copies nothing for it).
	Active() bool
}

// SetTap installs t (before Start).
func (g *Gateway) SetTap(t Tap) { g.tap.Store(&t) }

// layout is what every topic depends on; a reload that changes it
// restarts every device.
type layout struct {
	prefix, id       string
	tmplText, devTxt string
	tmpl, devTmpl    *mapping.Template
	perTag, perDev   bool
	value            bool // format = "value": bare values on the tag topics
	retain           bool
	statusTo         string // gateway status topic
}

func (a layout) same(b layout) bool {
	return a.prefix == b.prefix && a.id == b.id && a.tmplText == b.tmplText && a.devTxt == b.devTxt &&
		a.perTag == b.perTag && a.perDev == b.perDev && a.retain == b.retain && a.value == b.value
}

// table is an immutable set of devices with the layout they were built for.
type table struct {
	layout
	devices []*device
	byName  map[string]*device
}

type device struct {
	g           *Gateway
	name        string
	driver      string
	fingerprint string
	drv         southbound.Driver
	statusTo    string
	topic       string // per-device messages, when enabled
	perTag      bool
	perDev      bool
	value       bool
	retain      bool

	mu      sync.Mutex // guards everything below; Samples for one device are serial, Snapshot reads concurrently
	running bool
	state   southbound.State
	err     error
	// announced is whether a status was published; the gateway and the
	// device host both report connecting at start and stopped at stop,
	// and a status equal to the last one is published only once.
	announced bool
	polls     uint64
	lastOK    int64 // unix ms of the last sample batch with a good value
	bad       uint64
	tags      []tagState
	index     map[*mapping.Spec]int
	buf       []byte
	dbuf      []byte           // the per-device message being built
	passed    []mapping.Sample // this poll's samples that passed, for the tap
}

type tagState struct {
	spec   *mapping.Spec
	topic  string
	key    []byte // "name": as a JSON object key, for per-device messages
	filter mapping.Filter
	last   mapping.Sample
}

// New prepares a gateway for cfg: it renders every tag's topic and refuses
// topic collisions. Drivers are taken from cfg.Devices[i].Settings.
func New(cfg *configs.Config, pub Publisher, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{pub: pub, log: log, lanes: host.New()}
	t, err := g.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	g.tbl.Store(t)
	return g, nil
}

func newLayout(cfg *configs.Config) (layout, error) {
	l, errs := parseLayout(cfg)
	if len(errs) > 0 {
		return l, fmt.Errorf("gateway %s: %w", errs[0].key, errs[0].err)
	}
	return l, nil
}

// layoutError is a problem with one key of [gateway].
type layoutError struct {
	key string // in [gateway]
	err error
}

// parseLayout makes the layout of cfg and returns every problem found.
func parseLayout(cfg *configs.Config) (layout, []layoutError) {
	l := layout{id: cfg.Gateway.ID, prefix: cfg.Gateway.TopicPrefix, tmplText: cfg.Gateway.TopicTemplate, devTxt: cfg.Gateway.DeviceTopicTemplate}
	var errs []layoutError
	if l.tmplText == "" {
		l.tmplText = mapping.DefaultTopicTemplate
	}
	var err error
	if l.tmpl, err = mapping.ParseTemplate(l.tmplText); err != nil {
		errs = append(errs, layoutError{"topic_template", err})
	}
	if l.prefix == "" {
		l.prefix = "edged"
	}
	l.perTag = true
	switch cfg.Gateway.Publish {
	case "", "tags":
	case "device":
		l.perTag, l.perDev = false, true
	case "both":
		l.perDev = true
	default:
		errs = append(errs, layoutError{"publish", fmt.Errorf("%q is not a publish mode: allowed are \"tags\" (one message per tag, default), \"device\" (one message per device per poll), \"both\"", cfg.Gateway.Publish)})
	}
	switch cfg.Gateway.Format {
	case "", configs.FormatJSON:
	case configs.FormatValue:
		if l.perDev {
			errs = append(errs, layoutError{"format", fmt.Errorf("format = \"value\" has no per-device messages: set publish = \"tags\"")})
		}
		l.value = true
	default:
		errs = append(errs, layoutError{"format", fmt.Errorf("format = %q is not allowed: use \"json\" (default) or \"value\"", cfg.Gateway.Format)})
	}
	if l.devTxt == "" {
		l.devTxt = DefaultDeviceTopicTemplate
	}
	if l.devTmpl, err = mapping.ParseTemplate(l.devTxt); err != nil {
		errs = append(errs, layoutError{"device_topic_template", err})
	}
	l.retain = cfg.Broker.Retain == nil || *cfg.Broker.Retain
	l.statusTo = l.prefix + "/" + l.id + "/status"
	return l, errs
}

// build makes the device table for cfg. A device of old whose name, driver
// and fingerprint are unchanged (and the layout too) is reused as it is,
// running; every other device is new, made from cfg's driver settings.
func (g *Gateway) build(cfg *configs.Config, old *table) (*table, error) {
	lay, err := newLayout(cfg)
	if err != nil {
		return nil, err
	}
	t := &table{layout: lay, byName: make(map[string]*device, len(cfg.Devices))}
	owner := map[string]string{lay.statusTo: "the gateway status"}
	claim := func(topic, what string) error {
		if prev, dup := owner[topic]; dup {
			return fmt.Errorf("topic %q is used by both %s and %s: change the topic_template or a name", topic, prev, what)
		}
		owner[topic] = what
		return nil
	}
	own := map[string]*mapping.Template{} // tags' own topics, parsed once
	for _, dc := range cfg.Devices {
		var d *device
		if old != nil && old.layout.same(lay) {
			if od := old.byName[dc.Name]; od != nil && od.driver == dc.Driver && od.fingerprint == dc.Fingerprint && dc.Fingerprint != "" {
				d = od
			}
		}
		if d == nil {
			drv, ok := dc.Settings.(southbound.Driver)
			if !ok {
				return nil, fmt.Errorf("device %q: driver %q does not implement southbound.Driver", dc.Name, dc.Driver)
			}
			host.Provision(drv, host.Env{DataDir: cfg.Gateway.DataDir, Host: g.lanes})
			d = &device{
				g: g, name: dc.Name, driver: dc.Driver, fingerprint: dc.Fingerprint, drv: drv,
				statusTo: lay.prefix + "/" + lay.id + "/" + dc.Name + "/_status",
				perTag:   lay.perTag, perDev: lay.perDev, value: lay.value, retain: lay.retain,
				index: map[*mapping.Spec]int{},
			}
			if lay.perDev {
				var err error
				d.topic, err = lay.devTmpl.Expand(&topic.Fields{Prefix: lay.prefix, Gateway: lay.id, Device: dc.Name, DeviceMeta: dc.Meta})
				if err != nil {
					return nil, fmt.Errorf("device %q: device_topic_template: %w", dc.Name, err)
				}
			}
			for _, spec := range drv.Tags() {
				// Rendered here, once per tag and config: never per sample.
				tmpl := lay.tmpl
				if spec.Topic != "" {
					if tmpl = own[spec.Topic]; tmpl == nil {
						var err error
						if tmpl, err = mapping.ParseTemplate(spec.Topic); err != nil {
							return nil, fmt.Errorf("device %q: tag %q: %w", dc.Name, spec.Name, err)
						}
						own[spec.Topic] = tmpl
					}
				}
				to, err := tmpl.Expand(&topic.Fields{Prefix: lay.prefix, Gateway: lay.id, Device: dc.Name, Tag: spec.Name, TagMeta: spec.Meta, DeviceMeta: dc.Meta})
				if err != nil {
					return nil, fmt.Errorf("device %q: tag %q: %w", dc.Name, spec.Name, err)
				}
				key, _ := json.Marshal(spec.Name)
				d.index[spec] = len(d.tags)
				d.tags = append(d.tags, tagState{spec: spec, topic: to, key: append(key, ':')})
			}
		}
		if err := claim(d.statusTo, fmt.Sprintf("the status of device %q", d.name)); err != nil {
			return nil, err
		}
		if lay.perDev {
			if err := claim(d.topic, fmt.Sprintf("the per-device messages of device %q", d.name)); err != nil {
				return nil, err
			}
		}
		if lay.perTag {
			for i := range d.tags {
				// Only the immutable fields: a running device updates the others.
				ts := &d.tags[i]
				if err := claim(ts.topic, fmt.Sprintf("tag %q of device %q", ts.spec.Name, d.name)); err != nil {
					return nil, err
				}
			}
		}
		t.devices = append(t.devices, d)
		t.byName[d.name] = d
	}
	return t, nil
}

// Lanes is the host the devices run in (for the drivers' own metrics).
func (g *Gateway) Lanes() *host.Host { return g.lanes }

// Start announces the gateway online and starts every device. A device that
// fails to start is logged and reported offline; the others run.
func (g *Gateway) Start(ctx context.Context) error {
	g.life.Lock()
	defer g.life.Unlock()
	t := g.tbl.Load()
	if err := g.pub.Publish(t.statusTo, []byte("online"), true, 1); err != nil {
		return fmt.Errorf("publish gateway status: %w", err)
	}
	for _, d := range t.devices {
		d.start(ctx)
	}
	g.log.Info("gateway started", "devices", len(t.devices), "status_topic", t.statusTo)
	return nil
}

func (d *device) start(ctx context.Context) {
	d.State("", southbound.StateConnecting, nil)
	if err := d.drv.Start(ctx, d); err != nil {
		d.g.log.Error("device failed to start", "device", d.name, "err", err)
		d.State("", southbound.StateOffline, err)
		return
	}
	d.mu.Lock()
	d.running = true
	d.mu.Unlock()
}

// stop stops the driver (waiting for in-flight reads) if it runs.
func (d *device) stop(ctx context.Context) error {
	d.mu.Lock()
	running := d.running
	d.running = false
	d.mu.Unlock()
	if !running {
		return nil
	}
	err := d.drv.Stop(ctx)
	d.State("", southbound.StateStopped, nil)
	if err != nil {
		return fmt.Errorf("device %q: stop: %w", d.name, err)
	}
	return nil
}

func stopAll(ctx context.Context, devs []*device) error {
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.stop(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop stops every device (waiting for in-flight reads) and announces the
// gateway offline. The publisher must still be running.
func (g *Gateway) Stop(ctx context.Context) error {
	g.life.Lock()
	defer g.life.Unlock()
	t := g.tbl.Load()
	errs := []error{stopAll(ctx, t.devices)}
	if err := g.publishLast(t.statusTo, []byte("offline")); err != nil {
		errs = append(errs, fmt.Errorf("publish gateway status: %w", err))
	}
	g.log.Info("gateway stopped")
	return errors.Join(errs...)
}

// ReloadReport says what a reload did, by device name.
type ReloadReport struct {
	Unchanged, Restarted, Added, Removed []string
}

// Reload switches to cfg. Devices whose settings (and map) are unchanged
// keep running without a pause; changed devices are stopped and started
// with their new settings; removed devices are stopped and their retained
// topics cleared; new devices are started. If cfg cannot be laid out (a
// topic collision, a bad template), nothing changes and the error says why.
func (g *Gateway) Reload(ctx context.Context, cfg *configs.Config) (ReloadReport, error) {
	g.life.Lock()
	defer g.life.Unlock()
	old := g.tbl.Load()
	next, err := g.build(cfg, old)
	if err != nil {
		return ReloadReport{}, err
	}
	var rep ReloadReport
	var stopping []*device
	for _, od := range old.devices {
		nd := next.byName[od.name]
		switch {
		case nd == od:
			rep.Unchanged = append(rep.Unchanged, od.name)
		case nd == nil:
			rep.Removed = append(rep.Removed, od.name)
			stopping = append(stopping, od)
		default:
			rep.Restarted = append(rep.Restarted, od.name)
			stopping = append(stopping, od)
		}
	}
	for _, nd := range next.devices {
		if old.byName[nd.name] == nil {
			rep.Added = append(rep.Added, nd.name)
		}
	}
	stopErr := stopAll(ctx, stopping)
	// What the stopped devices published where nothing will publish any
	// more (a removed device; a topic that a template, meta or a tag's own
	// topic moved) is cleared, so subscribers see no ghosts.
	keep := next.topics()
	for _, od := range stopping {
		g.clearRetained(od, keep)
	}
	if next.statusTo != old.statusTo {
		_ = g.pub.Publish(old.statusTo, []byte("offline"), true, 1)
	}
	g.tbl.Store(next)
	if err := g.pub.Publish(next.statusTo, []byte("online"), true, 1); err != nil {
		g.log.Warn("publish gateway status failed", "err", err)
	}
	for _, nd := range next.devices {
		if old.byName[nd.name] != nd {
			nd.start(ctx)
		}
	}
	g.log.Info("config reloaded", "unchanged", len(rep.Unchanged), "restarted", rep.Restarted, "added", rep.Added, "removed", rep.Removed)
	return rep, stopErr
}

// clearRetained removes a stopped device's retained messages from the
// local broker (an empty retained payload deletes them) on the topics that
// are not in keep, so subscribers do not see values of a device that no
// longer exists, or on a topic that no longer carries them.
func (g *Gateway) clearRetained(d *device, keep map[string]bool) {
	clear := func(topic string) {
		if topic != "" && !keep[topic] {
			_ = g.pub.Publish(topic, nil, true, 0)
		}
	}
	clear(d.statusTo)
	clear(d.topic)
	for i := range d.tags {
		clear(d.tags[i].topic)
	}
}

// topics is every topic the table's devices publish on.
func (t *table) topics() map[string]bool {
	out := map[string]bool{}
	for _, d := range t.devices {
		out[d.statusTo] = true
		if d.topic != "" {
			out[d.topic] = true
		}
		for i := range d.tags {
			out[d.tags[i].topic] = true // the immutable field only: unchanged devices are running
		}
	}
	return out
}

// DefaultDeviceTopicTemplate is where per-device messages go.
const DefaultDeviceTopicTemplate = configs.DefaultDeviceTopicTemplate

// batchTime is the newest read time in a batch, the "ts" of a per-device
// message (each value keeps its own ts too).
func batchTime(samples []mapping.Sample) int64 {
	var ts int64
	for i := range samples {
		if samples[i].TimeMs > ts {
			ts = samples[i].TimeMs
		}
	}
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	return ts
}

// Flusher is implemented by publishers that can wait until a message has
// reached the subscribers' sockets (so a last message survives shutdown).
type Flusher interface {
	PublishFlush(topic string, payload []byte, retain bool, qos byte, timeout time.Duration) (bool, error)
}

// flushTimeout bounds how long shutdown waits for the last status message.
const flushTimeout = 2 * time.Second

func (g *Gateway) publishLast(topic string, payload []byte) error {
	f, ok := g.pub.(Flusher)
	if !ok {
		return g.pub.Publish(topic, payload, true, 1)
	}
	delivered, err := f.PublishFlush(topic, payload, true, 1, flushTimeout)
	if err == nil && !delivered {
		g.log.Warn("not every local subscriber received the last status before shutdown", "topic", topic)
	}
	return err
}

// Samples implements southbound.Sink for one device: report-by-exception,
// render, publish. The device name argument is ignored: each driver gets
// its own device as its sink.
func (d *device) Samples(_ string, samples []mapping.Sample) {
	g := d.g
	g.samples.Add(uint64(len(samples)))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.polls++
	var published, failed uint64
	entries, good := 0, false
	var tap Tap
	if tp := g.tap.Load(); tp != nil && (*tp).Active() {
		tap = *tp
		d.passed = d.passed[:0]
	}
	if d.perDev {
		d.dbuf = append(d.dbuf[:0], `{"ts":`...)
		d.dbuf = strconv.AppendInt(d.dbuf, batchTime(samples), 10)
		d.dbuf = append(d.dbuf, `,"values":{`...)
	}
	for i := range samples {
		s := &samples[i]
		idx, ok := d.index[s.Tag]
		if !ok {
			continue // a driver reporting a tag it did not list is a driver bug; never crash on it
		}
		if s.Quality == mapping.Good {
			good = true
		} else {
			d.bad++
		}
		t := &d.tags[idx]
		t.last = *s
		if !t.filter.Pass(s) {
			continue
		}
		if tap != nil {
			d.passed = append(d.passed, *s)
		}
		if d.perDev {
			if entries > 0 {
				d.dbuf = append(d.dbuf, ',')
			}
			d.dbuf = append(d.dbuf, t.key...)
			d.dbuf = mapping.AppendJSON(d.dbuf, s)
			entries++
		}
		if !d.perTag {
			continue
		}
		if d.value {
			var ok bool
			if d.buf, ok = mapping.AppendValue(d.buf[:0], s); !ok {
				continue // bad quality: the last good value stays
			}
		} else {
			d.buf = mapping.AppendJSON(d.buf[:0], s)
		}
		if err := g.pub.Publish(t.topic, d.buf, d.retain, 0); err != nil {
			failed++
			continue
		}
		published++
	}
	if good {
		d.lastOK = batchTime(samples)
	}
	if tap != nil {
		tap.TapSamples(d.name, samples, d.passed)
	}
	if entries > 0 {
		d.dbuf = append(d.dbuf, "}}"...)
		if err := g.pub.Publish(d.topic, d.dbuf, d.retain, 0); err != nil {
			failed++
		} else {
			published++
		}
	}
	g.published.Add(published)
	if failed > 0 {
		g.pubErrors.Add(failed)
	}
}

// State implements southbound.Sink for one device: remember the device's
// state and publish it, retained, on the device status topic.
func (d *device) State(_ string, state southbound.State, err error) {
	g := d.g
	d.mu.Lock()
	changed := !d.announced || d.state != state || errText(err) != errText(d.err)
	d.state, d.err, d.announced = state, err, true
	d.mu.Unlock()
	if !changed {
		return // the retained status says so already
	}
	// Drivers log their own transitions at info/warn with what the
	// operator needs (address, port, endpoint); here only for debugging.
	g.log.Debug("device state", "device", d.name, "state", state.String(), "err", err)
	if tp := g.tap.Load(); tp != nil {
		(*tp).TapState(d.name, state == southbound.StateOnline)
	}
	payload := appendStatus(nil, state, err, time.Now().UnixMilli())
	if perr := g.pub.Publish(d.statusTo, payload, true, 1); perr != nil {
		g.log.Warn("publish device status failed", "device", d.name, "err", perr)
	}
}

// Samples delivers samples to the named device (for callers that hold the
// gateway rather than a device, such as tests and in-process sources).
func (g *Gateway) Samples(name string, samples []mapping.Sample) {
	if d := g.tbl.Load().byName[name]; d != nil {
		d.Samples(name, samples)
	}
}

// State reports a state for the named device.
func (g *Gateway) State(name string, state southbound.State, err error) {
	if d := g.tbl.Load().byName[name]; d != nil {
		d.State(name, state, err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// appendStatus renders {"state":"online","ts":…} plus "err" when there is one.
func appendStatus(dst []byte, state southbound.State, err error, ts int64) []byte {
	dst = append(dst, `{"state":"`...)
	dst = append(dst, state.String()...)
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	if err != nil {
		dst = append(dst, `,"err":`...)
		dst = strconv.AppendQuote(dst, err.Error())
	}
	return append(dst, '}')
}

// Counters are running totals since start, for status displays and benchmarks.
type Counters struct {
	Samples, Published, PublishErrors uint64
}

// Counters returns the running totals.
func (g *Gateway) Counters() Counters {
	return Counters{Samples: g.samples.Load(), Published: g.published.Load(), PublishErrors: g.pubErrors.Load()}
}

// TagView is the last known sample of one tag, for display.
type TagView struct {
	Name, Topic, Unit string
	Sample            mapping.Sample
}

// DeviceView is one device's state and last values, for display and metrics.
type DeviceView struct {
	Name       string
	Driver     string
	State      southbound.State
	Err        error
	Polls      uint64
	BadSamples uint64
	LastGoodMs int64 // unix ms of the last batch with a good value; 0 never
	Tags       []TagView
	Source     southbound.Driver // the running driver, for optional capabilities such as stats
}

// Snapshot copies the current state of every device, in config order.
func (g *Gateway) Snapshot() []DeviceView { return g.SnapshotOf(func(string) bool { return true }) }

// SnapshotOf is Snapshot with the tags copied only for the devices withTags
// names (nil: none), for readers that want the states of all and the tags
// of few: copying every tag of a large config each second costs the
// pipeline its garbage collection.
func (g *Gateway) SnapshotOf(withTags func(device string) bool) []DeviceView {
	t := g.tbl.Load()
	out := make([]DeviceView, 0, len(t.devices))
	for _, d := range t.devices {
		tags := withTags != nil && withTags(d.name)
		d.mu.Lock()
		v := DeviceView{Name: d.name, Driver: d.driver, State: d.state, Err: d.err, Polls: d.polls, BadSamples: d.bad, LastGoodMs: d.lastOK,
			Source: d.drv}
		if tags {
			v.Tags = make([]TagView, len(d.tags))
			for i, ts := range d.tags {
				v.Tags[i] = TagView{Name: ts.spec.Name, Topic: ts.topic, Unit: ts.spec.Unit, Sample: ts.last}
			}
		}
		d.mu.Unlock()
		out = append(out, v)
	}
	return out
}
