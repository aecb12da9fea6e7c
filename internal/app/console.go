package app

// The console's view of today's runtime: the one place that knows both the
// console's small interfaces (internal/console) and where the facts live
// (the gateway's Snapshot, the drivers' optional capabilities, the uplinks'
// stats, the config and the last reload). Re-point it here when the device
// host moves.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/console"
	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/internal/metrics"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/door"
	"github.com/edged-gw/edged/southbound/host"
)

// Version is edged's version as the console shows it (cmd/edged sets it
// from its build flags); empty: the module's build info.
var Version string

// ConsoleEvery shortens the console's plot resolution and live interval
// (tests); zero: the console's defaults.
var ConsoleEvery struct{ Sample, Live time.Duration }

// consoleView is the running console and the facts it shows that only the
// runtime knows.
type consoleView struct {
	rt      *Runtime
	started time.Time
	users   *console.BcryptUsers
	cancel  context.CancelFunc

	mu       sync.Mutex
	cfg      *configs.Config
	fp       string
	loadedAt time.Time
	reload   *console.ReloadResult

	bufMu sync.Mutex
	buf   []byte // formatValue's scratch, under bufMu
}

// newConsole prepares the console for cfg; nil when [console] is off.
func newConsole(rt *Runtime, cfg *configs.Config) *consoleView {
	if !cfg.ConsoleOn() || cfg.Metrics.Disabled {
		return nil
	}
	v := &consoleView{rt: rt, started: time.Now()}
	v.setConfig(cfg)
	return v
}

func (v *consoleView) setConfig(cfg *configs.Config) {
	fp := "unreadable"
	if b, err := os.ReadFile(cfg.File); err == nil {
		sum := sha256.Sum256(b)
		fp = "sha256:" + hex.EncodeToString(sum[:8])
	}
	v.mu.Lock()
	v.cfg, v.fp, v.loadedAt = cfg, fp, time.Now()
	v.mu.Unlock()
}

// mount adds the console to the metrics server m (before its Start).
func (v *consoleView) mount(m *metrics.Server) {
	if v == nil {
		return
	}
	cfg := v.config()
	cc := cfg.Console
	log := v.rt.log.With("component", "console")
	if cc.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cc.CertFile, cc.KeyFile)
		if err != nil {
			log.Error("console not served: its certificate cannot be loaded", "cert_file", cc.CertFile, "err", err)
			return
		}
		m.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	off := !configs.LoopbackOnly(cfg.Metrics.Listen)
	o := console.Options{Source: v, OffLoopback: off, Logger: log, SampleEvery: ConsoleEvery.Sample, LiveEvery: ConsoleEvery.Live}
	if logins := cfg.ConsoleLogins(); len(logins) > 0 {
		v.users = console.NewBcryptUsers(logins)
		o.Auth = v.users
	}
	if cc.Writes && o.Auth != nil {
		o.Writer = v
	}
	if off && cc.CertFile == "" {
		log.Warn("console reachable from the network over plain HTTP: logins cross it readable; set [console] cert_file and key_file")
	}
	c := console.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	c.Start(ctx)
	m.Handle(console.Prefix, c)
	m.Handle("GET /{$}", http.RedirectHandler(console.Prefix, http.StatusFound))
}

func (v *consoleView) stop() {
	if v != nil && v.cancel != nil {
		v.cancel()
	}
}

// reloaded records a reload's outcome for the config page.
func (v *consoleView) reloaded(path string, next *configs.Config, dev gateway.ReloadReport, err error) {
	if v == nil {
		return
	}
	res := &console.ReloadResult{At: time.Now(), OK: err == nil, Summary: []console.KeyValue{{Key: "file", Value: path}}}
	if err != nil {
		res.Errors = strings.Split(err.Error(), "\n")
	} else {
		add := func(k string, names []string) {
			if len(names) > 0 {
				res.Summary = append(res.Summary, console.KeyValue{Key: k, Value: strings.Join(names, ", ")})
			}
		}
		add("devices added", dev.Added)
		add("devices restarted", dev.Restarted)
		add("devices removed", dev.Removed)
		add("devices unchanged", dev.Unchanged)
		if up := v.rt.LastUplinkReload(); up != nil {
			add("upstreams started", up.Started)
			add("upstreams restarted", up.Restarted)
			add("upstreams stopped", up.Stopped)
			add("upstreams failed", up.Failed)
		}
	}
	if next != nil {
		v.setConfig(next)
		if v.users != nil {
			v.users.Set(next.ConsoleLogins())
		}
	}
	v.mu.Lock()
	v.reload = res
	v.mu.Unlock()
}

func (v *consoleView) config() *configs.Config {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cfg
}

// Gateway implements console.Source.
func (v *consoleView) Gateway() console.GatewayInfo {
	ver := Version
	if ver == "" {
		ver = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			ver = bi.Main.Version
		}
	}
	cn := v.rt.Gateway.Counters()
	return console.GatewayInfo{ID: v.config().Gateway.ID, Version: ver, Started: v.started,
		Samples: cn.Samples, Published: cn.Published, PublishErrors: cn.PublishErrors}
}

// Devices implements console.Source.
func (v *consoleView) Devices() []console.Device {
	snap := v.rt.Gateway.SnapshotOf(nil) // the states; the tags only where a page shows them (Tags)
	out := make([]console.Device, len(snap))
	for i, d := range snap {
		cd := console.Device{Name: d.Name, Driver: d.Driver, State: d.State.String(), Polls: d.Polls, BadSamples: d.BadSamples,
			LastGoodMs: d.LastGoodMs, PollSeconds: -1}
		if d.Err != nil && d.State != southbound.StateOnline {
			cd.Err = d.Err.Error()
		}
		if sr, ok := d.Source.(southbound.StatsReporter); ok {
			st := sr.Stats()
			cd.PollSeconds, cd.Requests, cd.Errors = st.LastPoll, st.Requests, st.Errors
		}
		out[i] = cd
	}
	return out
}

// Tags implements console.Source.
func (v *consoleView) Tags(devices ...string) map[string][]console.Tag {
	want := make(map[string]bool, len(devices))
	for _, d := range devices {
		want[d] = true
	}
	out := make(map[string][]console.Tag, len(devices))
	v.bufMu.Lock()
	defer v.bufMu.Unlock()
	for _, d := range v.rt.Gateway.SnapshotOf(func(name string) bool { return want[name] }) {
		if !want[d.Name] {
			continue
		}
		tags := make([]console.Tag, len(d.Tags))
		for j, t := range d.Tags {
			ct := console.Tag{Name: t.Name, Topic: t.Topic, Unit: t.Unit, TimeMs: t.Sample.TimeMs}
			if t.Sample.TimeMs != 0 {
				ct.Quality = t.Sample.Quality.String()
				ct.Value = v.formatValue(&t.Sample)
				if t.Sample.Err != nil {
					ct.Err = t.Sample.Err.Error()
				}
			}
			tags[j] = ct
		}
		out[d.Name] = tags
	}
	return out
}

// formatValue is the sample's value as its JSON payload writes it, strings
// unquoted. The caller holds bufMu.
func (v *consoleView) formatValue(s *mapping.Sample) string {
	switch s.Value.Kind {
	case mapping.KindNone:
		return ""
	case mapping.KindString:
		return s.Value.Str
	}
	v.buf = mapping.AppendJSON(v.buf[:0], s)
	b := v.buf[len(`{"v":`):]
	if i := bytes.LastIndex(b, []byte(`,"ts":`)); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Device implements console.Source: settings (never secrets), where each
// tag lives, and for Modbus the plan, what was learned and the bus.
func (v *consoleView) Device(name string) (console.DeviceDetail, bool) {
	var drv southbound.Driver
	for _, d := range v.rt.Gateway.SnapshotOf(nil) {
		if d.Name == name {
			drv = d.Source
		}
	}
	if drv == nil {
		return console.DeviceDetail{}, false
	}
	var dd console.DeviceDetail
	if d, ok := drv.(southbound.Describer); ok {
		desc := d.Describe()
		for _, kv := range desc.Settings {
			dd.Settings = append(dd.Settings, console.KeyValue(kv))
		}
		for _, tp := range desc.Tags {
			dd.Tags = append(dd.Tags, tagInfo(tp.Spec, tp.Where))
		}
		for _, pr := range desc.Plan {
			dd.Plan = append(dd.Plan, console.PlanRead(pr))
		}
		for _, kv := range desc.Learned {
			dd.Learned = append(dd.Learned, console.KeyValue(kv))
		}
	}
	dd.Bus = laneBus(v.rt.Gateway.Lanes(), name)
	return dd, true
}

func tagInfo(s *mapping.Spec, where string) console.TagInfo {
	ti := console.TagInfo{Name: s.Name, Address: where, Type: s.Type.String(), Writable: s.Writable}
	switch s.Type.String() {
	case "int32", "uint32", "float32", "int64", "uint64", "float64":
		ti.Type += " " + s.Order.String() // word order matters from two registers on
	}
	if s.Bit != nil {
		ti.Type += " bit " + strconv.Itoa(*s.Bit)
	}
	if s.Scale != 0 && s.Scale != 1 {
		ti.Type += fmt.Sprintf(" ×%g", s.Scale)
	}
	if s.Offset != 0 {
		ti.Type += fmt.Sprintf(" %+g", s.Offset)
	}
	if s.Min != nil || s.Max != nil {
		lo, hi := "…", "…"
		if s.Min != nil {
			lo = strconv.FormatFloat(*s.Min, 'g', -1, 64)
		}
		if s.Max != nil {
			hi = strconv.FormatFloat(*s.Max, 'g', -1, 64)
		}
		ti.Limits = lo + " to " + hi
	}
	return ti
}

// laneBus is the shared medium (a serial line) of the device's lane, when
// its driver says what it is; nil for a device that has its medium alone.
func laneBus(h *host.Host, device string) *console.Bus {
	for _, l := range h.Lanes() {
		mi, ok := l.Medium.(host.MediumInfo)
		if !ok || !slices.ContainsFunc(l.Members, func(m host.MemberStat) bool { return m.Name == device }) {
			continue
		}
		port, mode, busy := mi.MediumInfo()
		bus := &console.Bus{Port: port, Mode: mode, Overruns: l.Overruns}
		if l.Uptime > 0 {
			bus.Utilisation = float64(busy) / float64(l.Uptime)
		}
		for _, o := range l.Members {
			bus.Devices = append(bus.Devices, console.KeyValue{Key: o.Name,
				Value: fmt.Sprintf("cycle %s of %s · %d overruns", o.LastCycle.Round(time.Millisecond), o.Interval, o.Overruns)})
		}
		return bus
	}
	return nil
}

// endpointHost drops anything secret a URL may carry (user, password,
// query) and keeps scheme, host and path.
func endpointHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// Uplinks implements console.Source.
func (v *consoleView) Uplinks() []console.Uplink {
	cfg := v.config()
	byName := map[string]*configs.Upstream{}
	for _, uc := range cfg.Upstreams {
		byName[uc.Name] = uc
	}
	ups := v.rt.Uplinks()
	out := make([]console.Uplink, 0, len(ups))
	for _, u := range ups {
		s := u.Stats()
		b := s.Buffer
		cu := console.Uplink{Name: s.Name, State: s.State, LastErr: s.LastErr, Connects: s.Connects, ConnectAttempts: s.ConnectAttempts, InFlight: s.InFlight,
			Sent: s.Sent, Replayed: s.Replayed, Acked: s.Acked, ReplayBacklog: s.ReplayBacklog,
			Depth: b.Depth, Bytes: b.Bytes, OldestAge: b.OldestAge, Dropped: b.Dropped, DiskBytes: b.DiskBytes,
			AtCap: b.AtCap, DiskFull: b.DiskFull, Recovered: b.Recovered}
		cu.Lost, cu.LostWhy = lostMessages(s.Lost, b.LostDamaged, b.LostUnstored)
		if uc := byName[s.Name]; uc != nil {
			cu.URL, cu.Window, cu.MaxBytes = endpointHost(uc.URL), uc.MaxInflight, int64(uc.MaxBytes)
			cu.InFlight = min(cu.InFlight, cu.Window) // not the one waiting for a slot: "11 of 10" reads as a bug
		}
		out = append(out, cu)
	}
	return out
}

// lostMessages sums what an uplink gave up unsent beyond the buffer's
// caps (refused for good by reason, a damaged store, a crash before the
// store) and says why, reasons in name order.
func lostMessages(refused map[string]uint64, damaged, unstored uint64) (uint64, string) {
	var n uint64
	var why []string
	add := func(reason string, k uint64) {
		if k > 0 {
			n += k
			why = append(why, reason+" "+strconv.FormatUint(k, 10))
		}
	}
	for _, r := range slices.Sorted(maps.Keys(refused)) {
		add(r, refused[r])
	}
	add("damaged store", damaged)
	add("unstored at a crash", unstored)
	return n, strings.Join(why, " · ")
}

// Config implements console.Source.
func (v *consoleView) Config() console.ConfigInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	return console.ConfigInfo{Path: v.cfg.File, Fingerprint: v.fp, LoadedAt: v.loadedAt, Reload: v.reload}
}

// Write implements console.Writer: through the write door, as source
// console with the logged-in user, under the same policy and audit as
// every other write.
func (v *consoleView) Write(ctx context.Context, device, tag, value, user string) console.WriteResult {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res := v.rt.Control.Door.Write(ctx, door.Request{Device: device, Tag: tag, Text: value,
		Source: door.Source{Kind: door.FromConsole, User: user}})
	return console.WriteResult{OK: res.OK, Reason: string(res.Reason), Message: res.Message, ReadBack: string(res.ReadBack)}
}

var (
	_ console.Source = (*consoleView)(nil)
	_ console.Writer = (*consoleView)(nil)
)
