package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/door"
)

func init() {
	register(command{"write", "-c FILE DEVICE TAG VALUE   write one tag (writable = true) through the running daemon, read it back and print it", cmdWrite})
}

// cmdWrite hands the write to the running daemon's write door over the
// control socket; only when no daemon answers there does it open the
// device itself (and then waits for it to come online first). Exit codes:
// 0 written and read back; 1 no answer (the daemon went away mid-write, a
// socket problem) or written but not read back; 2 refused or failed with a
// reason, whatever the reason (device_offline and timeout too), and bad
// command lines; 3 invalid config.
func cmdWrite(args []string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr}
	fs := newFlags("write", stderr)
	path := fs.String("c", defaultConfig, "config file")
	wait := fs.Duration("timeout", 10*time.Second, "give up after this long (the write and its read back)")
	id := fs.String("id", "", "command id: the daemon applies one id once")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	socket := fs.String("socket", "", "the daemon's control socket (default: control.sock in the config's data_dir)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 3 {
		fmt.Fprintln(stderr, "usage: edged write -c FILE DEVICE TAG VALUE")
		return exitUsage
	}
	if *wait <= 0 || *wait > control.MaxTimeout {
		fmt.Fprintf(stderr, "edged write: -timeout %v: allowed is more than 0 and at most %v\n", *wait, control.MaxTimeout)
		return exitUsage
	}
	devName, tagName, text := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	logs := newLogging(stderr)
	cfg, err := app.LoadConfig(*path, logs.logger)
	if err != nil {
		printConfigError(stderr, *path, err)
		return exitConfig
	}
	sock := *socket
	if sock == "" {
		sock = control.SocketPath(cfg.Gateway.DataDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait+10*time.Second)
	defer cancel()
	res, err := control.Write(ctx, sock, control.Request{Device: devName, Tag: tagName, Text: text, ID: *id}, *wait)
	via := "the running daemon"
	switch {
	case errors.Is(err, control.ErrNoDaemon):
		via = "this command (no daemon runs)"
		res, err = writeDirect(cfg, devName, tagName, text, *id, *wait)
	case errors.Is(err, control.ErrNoAnswer):
		fmt.Fprintf(stderr, "edged write: %v: the daemon stopped or crashed during the write, which may or may not have reached the device; check %s and read the tag\n",
			err, control.AuditDir(cfg.Gateway.DataDir))
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "edged write: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return report(res, via, stdout, stderr, *asJSON)
}

// report prints a result and returns the exit code.
func report(res door.Result, via string, stdout, stderr io.Writer, quiet bool) int {
	if !res.OK {
		what := "refused"
		if res.Sent {
			what = "failed"
		}
		fmt.Fprintf(stderr, "edged write: %s/%s %s (%s): %s\n", res.Device, res.Tag, what, res.Reason, res.Message)
		return exitUsage
	}
	if res.ReadBack == nil {
		fmt.Fprintf(stderr, "edged write: %s/%s = %s written by %s; %s\n", res.Device, res.Tag, res.Written, via, res.Message)
		return exitFailure
	}
	if !quiet {
		unit := ""
		if res.Unit != "" {
			unit = " " + res.Unit
		}
		was := ""
		if res.Old != nil {
			was = ", was " + string(res.Old)
		}
		fmt.Fprintf(stdout, "%s/%s = %s%s (written %s%s, read back; %.1f ms, by %s)\n",
			res.Device, res.Tag, res.ReadBack, unit, res.Written, was, res.LatencyMs, via)
	}
	return exitOK
}

// writeDirect writes through a door of this process's own, with the one
// device started here: used only when no daemon runs, so that the device
// is not opened twice. The policy's write_interval then cannot span two
// commands; everything else applies, and the attempt is audited in the
// data dir like the daemon's.
func writeDirect(cfg *configs.Config, devName, tagName, text, id string, wait time.Duration) (door.Result, error) {
	opts := control.DoorOptions(cfg, nil)
	dev := &directDevice{name: devName, ready: make(chan struct{})}
	for _, d := range cfg.Devices {
		if d.Name == devName {
			dev.drv, _ = d.Settings.(southbound.Driver)
		}
	}
	if dev.drv != nil {
		if u, ok := dev.drv.(southbound.DataDirUser); ok {
			u.SetDataDir(cfg.Gateway.DataDir)
		}
	}
	d := door.New(dev, opts)
	defer d.Close()
	defer dev.stop()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	src := door.Source{Kind: door.FromCLI, Name: "direct"}
	if u, err := user.Current(); err == nil {
		src.User = u.Username
	}
	return d.Write(ctx, door.Request{Device: devName, Tag: tagName, Text: text, ID: id, Source: src}), nil
}

// directDevice is the one device of a direct write, started on the
// first write that passes the policy (a refused write never opens it).
type directDevice struct {
	name string
	drv  southbound.Driver

	once    sync.Once
	started bool
	ready   chan struct{} // closed on the first online or offline state

	mu      sync.Mutex
	state   southbound.State
	err     error
	tag     *mapping.Spec
	sample  mapping.Sample
	batches uint64
}

func (d *directDevice) Target(device, tag string) (door.Target, error) {
	if device != d.name || d.drv == nil {
		return door.Target{}, fmt.Errorf("no device %q in the config", device)
	}
	for _, s := range d.drv.Tags() {
		if s.Name == tag {
			d.tag = s
		}
	}
	if d.tag == nil {
		return door.Target{}, fmt.Errorf("device %q has no tag %q", device, tag)
	}
	t := door.Target{Spec: d.tag, State: southbound.StateOnline, Last: d.last}
	if _, ok := d.drv.(southbound.Writer); ok {
		t.Writer = d
	}
	if _, ok := d.drv.(southbound.TagReader); ok {
		t.Reader = d
	}
	return t, nil
}

// online starts the device and waits for it to be online (an OPC UA
// session is up, a Modbus device answered a poll), or to fail.
func (d *directDevice) online(ctx context.Context) error {
	var err error
	d.once.Do(func() {
		err = d.drv.Start(ctx, d)
		d.started = err == nil
	})
	if err != nil {
		return err
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		return fmt.Errorf("device %q: not online after waiting: %w", d.name, southbound.ErrOffline)
	}
	d.mu.Lock()
	state, serr := d.state, d.err
	d.mu.Unlock()
	if state != southbound.StateOnline {
		return fmt.Errorf("device %q: %v: %w", d.name, serr, southbound.ErrOffline)
	}
	return nil
}

// Write implements southbound.Writer once the device is online.
func (d *directDevice) Write(ctx context.Context, tag string, v mapping.Value) error {
	if err := d.online(ctx); err != nil {
		return err
	}
	return d.drv.(southbound.Writer).Write(ctx, tag, v)
}

// ReadTag implements southbound.TagReader once the device is online.
func (d *directDevice) ReadTag(ctx context.Context, tag string) (mapping.Sample, error) {
	if err := d.online(ctx); err != nil {
		return mapping.Sample{}, err
	}
	return d.drv.(southbound.TagReader).ReadTag(ctx, tag)
}

func (d *directDevice) stop() {
	if !d.started {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.drv.Stop(ctx)
}

func (d *directDevice) last() (mapping.Sample, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sample, d.batches
}

// Samples implements southbound.Sink.
func (d *directDevice) Samples(_ string, samples []mapping.Sample) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.batches++
	for _, s := range samples {
		if s.Tag == d.tag {
			d.sample = s
		}
	}
}

// State implements southbound.Sink.
func (d *directDevice) State(_ string, s southbound.State, err error) {
	d.mu.Lock()
	d.state, d.err = s, err
	d.mu.Unlock()
	if s == southbound.StateOnline || s == southbound.StateOffline {
		select {
		case <-d.ready:
		default:
			close(d.ready)
		}
	}
}

// lockedWriter serialises writes of the device goroutines' logger and the
// command's own messages to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
