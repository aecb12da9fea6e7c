// Package gateway is the host around drivers: it starts and stops the
// configured devices, takes their samples, applies report-by-exception
// (deadband, heartbeat), renders topics and JSON payloads through mapping and
// hands them to the northbound publisher, and publishes gateway and device
// status. Cross-cutting work lives here once so that drivers stay
// protocol-only.
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
	"github.com/edged-gw/edged/southbound"
)

// Publisher takes rendered messages; the embedded broker implements it.
// Publish must copy the payload if it keeps it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Gateway runs the devices of one config.
type Gateway struct {
	cfg      *configs.Config
	pub      Publisher
	log      *slog.Logger
	retain   bool
	statusTo string // gateway status topic
	perTag   bool   // publish one message per tag
	perDev   bool   // publish one message per device per poll
	devices  []*device
	byName   map[string]*device

	samples   atomic.Uint64 // samples received from drivers
	published atomic.Uint64 // value messages published
	pubErrors atomic.Uint64

	mu      sync.Mutex
	started []*device
}

type device struct {
	name     string
	drv      southbound.Driver
	statusTo string
	topic    string // per-device messages, when enabled

	mu    sync.Mutex // guards everything below; Samples for one device are serial, Snapshot reads concurrently
	state southbound.State
	err   error
	polls uint64
	tags  []tagState
	index map[*mapping.Spec]int
	buf   []byte
	dbuf  []byte // the per-device message being built
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
	tmplText := cfg.Gateway.TopicTemplate
	if tmplText == "" {
		tmplText = mapping.DefaultTopicTemplate
	}
	tmpl, err := mapping.ParseTemplate(tmplText)
	if err != nil {
		return nil, fmt.Errorf("gateway topic_template: %w", err)
	}
	prefix := cfg.Gateway.TopicPrefix
	if prefix == "" {
		prefix = "edged"
	}
	perTag, perDev := true, false
	switch cfg.Gateway.Publish {
	case "", "tags":
	case "device":
		perTag, perDev = false, true
	case "both":
		perDev = true
	default:
		return nil, fmt.Errorf("gateway publish = %q: allowed are \"tags\" (one message per tag, default), \"device\" (one message per device per poll), \"both\"", cfg.Gateway.Publish)
	}
	devText := cfg.Gateway.DeviceTopicTemplate
	if devText == "" {
		devText = DefaultDeviceTopicTemplate
	}
	devTmpl, err := mapping.ParseTemplate(devText)
	if err != nil {
		return nil, fmt.Errorf("gateway device_topic_template: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		pub:      pub,
		log:      log,
		retain:   cfg.Broker.Retain == nil || *cfg.Broker.Retain,
		statusTo: prefix + "/" + cfg.Gateway.ID + "/status",
		perTag:   perTag,
		perDev:   perDev,
		byName:   make(map[string]*device, len(cfg.Devices)),
	}
	owner := map[string]string{g.statusTo: "the gateway status"}
	claim := func(topic, what string) error {
		if prev, dup := owner[topic]; dup {
			return fmt.Errorf("topic %q is used by both %s and %s: change the topic_template or a name", topic, prev, what)
		}
		owner[topic] = what
		return nil
	}
	for _, dc := range cfg.Devices {
		drv, ok := dc.Settings.(southbound.Driver)
		if !ok {
			return nil, fmt.Errorf("device %q: driver %q does not implement southbound.Driver", dc.Name, dc.Driver)
		}
		if u, ok := drv.(southbound.DataDirUser); ok {
			u.SetDataDir(cfg.Gateway.DataDir)
		}
		d := &device{
			name:     dc.Name,
			drv:      drv,
			statusTo: prefix + "/" + cfg.Gateway.ID + "/" + dc.Name + "/_status",
			index:    map[*mapping.Spec]int{},
		}
		if err := claim(d.statusTo, fmt.Sprintf("the status of device %q", dc.Name)); err != nil {
			return nil, err
		}
		if perDev {
			d.topic = devTmpl.Render(prefix, cfg.Gateway.ID, dc.Name, "")
			if err := claim(d.topic, fmt.Sprintf("the per-device messages of device %q", dc.Name)); err != nil {
				return nil, err
			}
		}
		for _, spec := range drv.Tags() {
			topic := tmpl.Render(prefix, cfg.Gateway.ID, dc.Name, spec.Name)
			if perTag {
				if err := claim(topic, fmt.Sprintf("tag %q of device %q", spec.Name, dc.Name)); err != nil {
					return nil, err
				}
			}
			key, _ := json.Marshal(spec.Name)
			d.index[spec] = len(d.tags)
			d.tags = append(d.tags, tagState{spec: spec, topic: topic, key: append(key, ':')})
		}
		g.devices = append(g.devices, d)
		g.byName[d.name] = d
	}
	return g, nil
}

// Start announces the gateway online and starts every device. A device that
// fails to start is logged and reported offline; the others run.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.pub.Publish(g.statusTo, []byte("online"), true, 1); err != nil {
		return fmt.Errorf("publish gateway status: %w", err)
	}
	for _, d := range g.devices {
		g.State(d.name, southbound.StateConnecting, nil)
		if err := d.drv.Start(ctx, g); err != nil {
			g.log.Error("device failed to start", "device", d.name, "err", err)
			g.State(d.name, southbound.StateOffline, err)
			continue
		}
		g.mu.Lock()
		g.started = append(g.started, d)
		g.mu.Unlock()
	}
	g.log.Info("gateway started", "devices", len(g.devices), "status_topic", g.statusTo)
	return nil
}

// Stop stops every device (waiting for in-flight reads) and announces the
// gateway offline. The publisher must still be running.
func (g *Gateway) Stop(ctx context.Context) error {
	g.mu.Lock()
	started := g.started
	g.started = nil
	g.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, d := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.drv.Stop(ctx); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("device %q: stop: %w", d.name, err))
				emu.Unlock()
			}
			g.State(d.name, southbound.StateStopped, nil)
		}()
	}
	wg.Wait()
	if err := g.publishLast(g.statusTo, []byte("offline")); err != nil {
		errs = append(errs, fmt.Errorf("publish gateway status: %w", err))
	}
	g.log.Info("gateway stopped")
	return errors.Join(errs...)
}

// DefaultDeviceTopicTemplate is where per-device messages go.
const DefaultDeviceTopicTemplate = "{prefix}/{gateway}/{device}"

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

// Samples implements southbound.Sink: report-by-exception, render, publish.
func (g *Gateway) Samples(name string, samples []mapping.Sample) {
	d := g.byName[name]
	if d == nil {
		g.log.Warn("samples from unknown device", "device", name)
		return
	}
	g.samples.Add(uint64(len(samples)))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.polls++
	var published, failed uint64
	entries := 0
	if g.perDev {
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
		t := &d.tags[idx]
		t.last = *s
		if !t.filter.Pass(s) {
			continue
		}
		if g.perDev {
			if entries > 0 {
				d.dbuf = append(d.dbuf, ',')
			}
			d.dbuf = append(d.dbuf, t.key...)
			d.dbuf = mapping.AppendJSON(d.dbuf, s)
			entries++
		}
		if !g.perTag {
			continue
		}
		d.buf = mapping.AppendJSON(d.buf[:0], s)
		if err := g.pub.Publish(t.topic, d.buf, g.retain, 0); err != nil {
			failed++
			continue
		}
		published++
	}
	if entries > 0 {
		d.dbuf = append(d.dbuf, "}}"...)
		if err := g.pub.Publish(d.topic, d.dbuf, g.retain, 0); err != nil {
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

// State implements southbound.Sink: remember the device's state and publish
// it, retained, on the device status topic.
func (g *Gateway) State(name string, state southbound.State, err error) {
	d := g.byName[name]
	if d == nil {
		return
	}
	d.mu.Lock()
	changed := d.state != state || (err != nil) != (d.err != nil)
	d.state, d.err = state, err
	d.mu.Unlock()
	if state == southbound.StateOffline && changed {
		g.log.Warn("device offline", "device", name, "err", err)
	} else if changed {
		g.log.Info("device state", "device", name, "state", state.String())
	}
	payload := appendStatus(nil, state, err, time.Now().UnixMilli())
	if perr := g.pub.Publish(d.statusTo, payload, true, 1); perr != nil {
		g.log.Warn("publish device status failed", "device", name, "err", perr)
	}
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

// DeviceView is one device's state and last values, for display.
type DeviceView struct {
	Name  string
	State southbound.State
	Err   error
	Polls uint64
	Tags  []TagView
}

// Snapshot copies the current state of every device, in config order.
func (g *Gateway) Snapshot() []DeviceView {
	out := make([]DeviceView, 0, len(g.devices))
	for _, d := range g.devices {
		d.mu.Lock()
		v := DeviceView{Name: d.name, State: d.state, Err: d.err, Polls: d.polls, Tags: make([]TagView, len(d.tags))}
		for i, t := range d.tags {
			v.Tags[i] = TagView{Name: t.spec.Name, Topic: t.topic, Unit: t.spec.Unit, Sample: t.last}
		}
		d.mu.Unlock()
		out = append(out, v)
	}
	return out
}
