// Package app wires edged together: the config registry over the drivers
// registered with southbound, and a runtime made of the embedded broker,
// the gateway and the metrics endpoint, shared by the CLI and the bench
// programs so that what is measured is what ships. It knows no protocol.
package app

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/internal/metrics"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
)

// registry makes drivers from the drivers registered with southbound
// (cmd/edged imports southbound/all) and gives each the logger.
type registry struct{ log *slog.Logger }

func (r registry) New(name string) (configs.Settings, bool) {
	d, ok := southbound.New(name)
	if ok {
		host.Provision(d, host.Env{Log: r.log})
	}
	return d, ok
}

func (registry) Names() []string { return southbound.Names() }

// Drivers returns the registry the config loader makes drivers from; the
// drivers it makes log to log.
func Drivers(log *slog.Logger) configs.Drivers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return registry{log: log}
}

// Runtime is a started broker, gateway and metrics server.
type Runtime struct {
	Broker  *northbound.Broker
	Gateway *gateway.Gateway
	Metrics *metrics.Server // nil when disabled or when its port was busy
	Control *control.Daemon // the write door and its control socket
	log     *slog.Logger

	// uplinks bridge to the [[upstream]] brokers, one buffer each.
	uplinks *northbound.UplinkSet
	// upMu serializes changes to the uplinks (Reload, Stop).
	upMu             sync.Mutex
	lastUplinkReload atomic.Pointer[northbound.UplinkReloadReport]
	console          *consoleView // the web console (console.go); nil when off
}

// LastUplinkReload is what the last successful Reload did to the uplinks
// (nil before any).
func (r *Runtime) LastUplinkReload() *northbound.UplinkReloadReport { return r.lastUplinkReload.Load() }

// Uplinks returns the running uplinks, in config order.
func (r *Runtime) Uplinks() []*northbound.Uplink { return r.uplinks.Uplinks() }

// Alive is what systemd's watchdog checks before each keep-alive: the
// gateway's device locks can be taken (Snapshot blocks on a hung device
// loop) and no uplink's buffer writer is stuck.
func (r *Runtime) Alive() error {
	r.Gateway.Snapshot()
	var errs []error
	for _, u := range r.Uplinks() {
		if err := u.Alive(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readiness lists what is not ready: devices, uplinks not connected and
// upstreams that failed to start on a reload.
func (r *Runtime) readiness() []string {
	out := metrics.Readiness(r.Gateway)
	out = append(out, metrics.UplinkReadiness(r.Uplinks())...)
	return append(out, r.uplinks.NotRunning()...)
}

// Start starts the embedded broker and then the gateway for cfg.
func Start(ctx context.Context, cfg *configs.Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Check(cfg); err != nil {
		return nil, err
	}
	broker := northbound.NewBroker(brokerOptions(cfg, log))
	gw, err := gateway.New(cfg, broker, log)
	if err != nil {
		return nil, err
	}
	if err := broker.Start(); err != nil {
		return nil, err
	}
	// The write door comes before the uplinks: an upstream with commands
	// hands them to it.
	ctl := control.Start(cfg, gw, log)
	uplinks, err := northbound.StartUplinks(uplinkSpecs(cfg, log, ctl), broker, log)
	if err != nil {
		_ = ctl.Close()
		_ = broker.Stop()
		return nil, err
	}
	gw.SetTap(sparkplugTap{uplinks}) // before the first sample
	if err := gw.Start(ctx); err != nil {
		_ = stopUplinks(uplinks)
		_ = ctl.Close()
		_ = broker.Stop()
		return nil, err
	}
	rt := &Runtime{Broker: broker, Gateway: gw, log: log, uplinks: uplinks}
	rt.Control = ctl
	if err := rt.Control.AttachLocal(cfg, broker, log); err != nil {
		log.Error("MQTT commands from local clients are not available", "err", err)
	}
	rt.Control.AttachAudit(cfg, broker.Publish, log)
	rt.console = newConsole(rt, cfg)
	rt.startMetrics(cfg.Metrics)
	return rt, nil
}

// Commit is the commit edged was built from (cmd/edged sets it from its
// build flags); empty: the module's VCS build info.
var Commit string

// buildVersion is the version and commit for edged_build_info.
func buildVersion() (version, commit string) {
	version, commit = Version, Commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" && bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if commit == "" && s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return version, commit
}

// startMetrics serves /metrics, /healthz and /readyz. A busy port is
// logged as an error but does not stop the gateway: data keeps flowing.
func (r *Runtime) startMetrics(mc configs.Metrics) {
	if mc.Disabled {
		return
	}
	listen := mc.Listen
	if listen == "" {
		listen = metrics.DefaultListen
	}
	m := metrics.NewServer(listen, r.readiness, r.log)
	m.Registry.MustRegister(metrics.GatewayCollector{GW: r.Gateway, Broker: r.Broker}, metrics.BrokerCollector{Broker: r.Broker})
	m.Registry.MustRegister(metrics.UplinkCollector{Uplinks: r.Uplinks})
	m.Registry.MustRegister(metrics.BuildInfo(buildVersion()))
	for _, c := range host.Collectors(r.Gateway.Lanes()) {
		m.Registry.MustRegister(c) // the drivers' own: serial buses, learned plans
	}
	m.Registry.MustRegister(r.Control.Door.Collector())
	r.console.mount(m)
	if err := m.Start(); err != nil {
		r.log.Error("metrics endpoint not available", "err", err)
		return
	}
	r.Metrics = m
}

// StopTimeout bounds a graceful stop.
const StopTimeout = 10 * time.Second

// stopUplinks stops every uplink (announcing offline, closing buffers)
// within half of StopTimeout.
func stopUplinks(s *northbound.UplinkSet) error {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout/2)
	defer cancel()
	return s.Stop(ctx)
}

// Stop stops the devices first (so their last samples and the offline
// status are published and buffered), then the uplinks (offline upstream,
// buffers closed), then the broker.
func (r *Runtime) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	r.console.stop()
	err := r.Control.Close()
	err = errors.Join(err, r.Gateway.Stop(ctx))
	r.upMu.Lock()
	err = errors.Join(err, stopUplinks(r.uplinks))
	r.upMu.Unlock()
	if r.Metrics != nil {
		err = errors.Join(err, r.Metrics.Stop(ctx))
	}
	return errors.Join(err, r.Broker.Stop())
}

// Reload loads the config at path and applies it to the running gateway:
// only the devices and uplinks that changed restart; the buffers and the
// unchanged devices and uplinks keep running, and nothing buffered is lost
// (see northbound.UplinkSet.Reload). An invalid config changes nothing and the error
// lists its problems. Settings that cannot change while running (the
// broker's listener, the metrics endpoint) are kept, with a warning.
func (r *Runtime) Reload(ctx context.Context, path string, running *configs.Config) (next *configs.Config, rep gateway.ReloadReport, err error) {
	defer func() { r.console.reloaded(path, next, rep, err) }()
	cfg, err := LoadConfig(path, r.log)
	if err != nil {
		return nil, gateway.ReloadReport{}, err
	}
	if running != nil {
		if cfg.Broker.Listen != running.Broker.Listen || cfg.Broker.Disabled != running.Broker.Disabled ||
			cfg.Broker.TLS.Listen != running.Broker.TLS.Listen || cfg.Broker.WebSocket.Listen != running.Broker.WebSocket.Listen {
			r.log.Warn("broker settings changed: restart edged to apply them", "listen", cfg.Broker.Listen)
		}
		if cfg.Gateway.CommandTopicTemplate != running.Gateway.CommandTopicTemplate {
			// The upstreams resubscribe (their fingerprint has it); the
			// local subscription stays until a restart.
			r.log.Warn("command_topic_template changed: restart edged to apply it to local clients", "command_topic_template", cfg.Gateway.CommandTopicTemplate)
		}
		if cfg.Metrics != running.Metrics {
			r.log.Warn("metrics settings changed: restart edged to apply them")
		}
	}
	r.upMu.Lock()
	defer r.upMu.Unlock()
	specs := uplinkSpecs(cfg, r.log, r.Control)
	if err := r.uplinks.Plan(specs, checkUplinks(cfg)); err != nil {
		return nil, gateway.ReloadReport{}, err
	}
	rep, err = r.Gateway.Reload(ctx, cfg)
	if err != nil {
		return nil, rep, err
	}
	r.Control.Reload(cfg, r.log)
	up := r.uplinks.Reload(ctx, specs)
	r.log.Info("upstreams reloaded", "started", up.Started, "restarted", up.Restarted, "unchanged", up.Unchanged,
		"stopped", up.Stopped, "failed", up.Failed)
	r.lastUplinkReload.Store(&up)
	// The broker's users, ACLs and TLS files apply at once; its listeners
	// need a restart.
	if err := r.Broker.Reload(brokerAccess(cfg)); err != nil {
		r.log.Warn("broker reload incomplete", "err", err)
	}
	return cfg, rep, nil
}

// Checks are the checks that span devices (the topic layout is checked by
// configs itself), run by
// LoadConfig as part of loading (configs.Check): one `edged validate`
// lists their problems with the others, each at its file:line.
var Checks = []configs.Check{checkLanes}

// LoadConfig loads the config at path with every driver and Checks.
func LoadConfig(path string, log *slog.Logger) (*configs.Config, error) {
	return configs.Load(path, Drivers(log), Checks...)
}

// checkLanes is host.Check as a configs.Check: serial ports whose devices
// disagree on line settings or share a unit ID.
func checkLanes(cfg *configs.Config, r *configs.Report) {
	r.Add(host.Check(deviceDrivers(cfg)))
}

func deviceDrivers(cfg *configs.Config) []southbound.Driver {
	drivers := make([]southbound.Driver, 0, len(cfg.Devices))
	for _, d := range cfg.Devices {
		if drv, ok := d.Settings.(southbound.Driver); ok {
			drivers = append(drivers, drv)
		}
	}
	return drivers
}

// Check runs the checks that span devices, beyond what loading a config
// does: topic collisions between devices, and serial ports whose devices
// disagree on line settings or share a unit ID. edged validate and Start
// both run it (LoadConfig runs the same checks as Checks, located).
func Check(cfg *configs.Config) error {
	if _, err := gateway.New(cfg, discard{}, nil); err != nil {
		return err
	}
	return host.Check(deviceDrivers(cfg))
}

type discard struct{}

func (discard) Publish(string, []byte, bool, byte) error { return nil }

// DefaultMemoryLimit is the Go soft memory limit edged runs with unless
// configured: measured with 10 devices × 500 float32 bridged at QoS 1
// (bench/throughput.sh -publish device -upstream), 38 MB RSS at 1.26M
// points/s; with no limit 45 MB, with 24 MiB 34 MB at 0.97M points/s.
const DefaultMemoryLimit = 32 << 20

// DefaultGCPercent is the collector's GOGC edged runs with unless GOGC is
// set: the heap may grow to 1.5× what is live instead of 2× between
// collections. Measured side by side (bin/bench-compare, gateway on one
// core): at 5,000 points/s RSS 38–40 → 33 MB for the same CPU (0.8 CPU-s
// per million points); at 100,000 points/s 46 → 35 MB for +7% CPU, at
// 500,000 40 → 35 MB for +4%. GOGC=25 saved 2 MB more and cost +40% CPU
// at 5,000 points/s.
const DefaultGCPercent = 50

// ApplyMemorySettings sets the process's soft memory limit from the config,
// unless GOMEMLIMIT is set in the environment, and the collector's
// percentage to DefaultGCPercent unless GOGC is. It returns the limit in
// force (math.MaxInt64: none).
func ApplyMemorySettings(cfg *configs.Config) int64 {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	limit := int64(DefaultMemoryLimit)
	if cfg.Gateway.MemoryLimit != nil {
		limit = int64(*cfg.Gateway.MemoryLimit)
		if limit == 0 {
			limit = math.MaxInt64
		}
	}
	debug.SetMemoryLimit(limit)
	return limit
}
