package control

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/door"
)

// AuditDir is where the door audits, under the data dir.
func AuditDir(dataDir string) string { return filepath.Join(dataDir, "audit") }

// DoorOptions are the door's options for a config. Of the sources beyond
// the CLI, the console may write when [console] writes = true, for a
// logged-in user.
func DoorOptions(cfg *configs.Config, log *slog.Logger) door.Options {
	consoleWrites := cfg.Console.Writes
	allow := func(s door.Source) bool { return s.Kind == door.FromConsole && consoleWrites && s.User != "" }
	return door.Options{Writes: cfg.Gateway.Writes, Allow: allow, AuditDir: AuditDir(cfg.Gateway.DataDir), Logger: log}
}

// Daemon is the running daemon's write door and its control socket.
type Daemon struct {
	Door   *door.Door
	Server *Server // nil when the socket could not be made (logged)
}

// Start makes the door over the gateway's devices and serves it on the
// control socket under the data dir. A socket that cannot be made is
// logged as an error and leaves the daemon running: `edged write` then
// says no daemon answers.
func Start(cfg *configs.Config, gw *gateway.Gateway, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{Door: door.New(GatewayDevices{GW: gw}, DoorOptions(cfg, log))}
	srv, err := Listen(SocketPath(cfg.Gateway.DataDir), d.Door, log)
	if err != nil {
		log.Error("edged write cannot reach this daemon", "err", err)
		return d
	}
	d.Server = srv
	log.Info("control socket ready", "path", srv.Path())
	return d
}

// Reload applies a reloaded config's write settings.
func (d *Daemon) Reload(cfg *configs.Config, log *slog.Logger) {
	if d == nil {
		return
	}
	d.Door.Configure(DoorOptions(cfg, log))
}

// Close closes the socket and the audit file.
func (d *Daemon) Close() error {
	if d == nil {
		return nil
	}
	var err error
	if d.Server != nil {
		err = d.Server.Close()
	}
	if cerr := d.Door.Close(); err == nil {
		err = cerr
	}
	return err
}

// GatewayDevices shows the gateway's running devices to the door.
type GatewayDevices struct{ GW *gateway.Gateway }

// Target implements door.Devices.
func (g GatewayDevices) Target(device, tag string) (door.Target, error) {
	v, ok := g.view(device)
	if !ok {
		return door.Target{}, fmt.Errorf("no device %q runs in this gateway", device)
	}
	var spec *mapping.Spec
	if v.Source != nil {
		for _, s := range v.Source.Tags() {
			if s.Name == tag {
				spec = s
			}
		}
	}
	if spec == nil {
		return door.Target{}, fmt.Errorf("device %q has no tag %q", device, tag)
	}
	t := door.Target{Spec: spec, State: v.State}
	if w, ok := v.Source.(southbound.Writer); ok {
		t.Writer = w
	}
	if r, ok := v.Source.(southbound.TagReader); ok {
		t.Reader = r
	}
	t.Last = func() (mapping.Sample, uint64) {
		v, ok := g.view(device)
		if !ok {
			return mapping.Sample{}, 0
		}
		for _, tv := range v.Tags {
			if tv.Name == tag {
				return tv.Sample, v.Polls
			}
		}
		return mapping.Sample{}, v.Polls
	}
	return t, nil
}

func (g GatewayDevices) view(device string) (gateway.DeviceView, bool) {
	for _, v := range g.GW.Snapshot() {
		if v.Name == device {
			return v, true
		}
	}
	return gateway.DeviceView{}, false
}
