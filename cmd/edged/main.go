// Command edged is the industrial edge gateway: it polls field devices,
// turns their registers into named tags and publishes them over MQTT.
//
//	edged run -c /etc/edged/edged.toml   run the gateway
//	edged validate -c FILE               check a config, list every error
//	edged demo                           a simulated plant, no hardware needed
//	edged version                        version and commit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/internal/residency"
	"github.com/edged-gw/edged/internal/systemd"
	"github.com/edged-gw/edged/southbound"
)

// Set at build time: -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

const defaultConfig = "/etc/edged/edged.toml"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad flags or arguments
	exitConfig  = 3 // the config is invalid
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand. Commands register themselves from their own
// files with register, so adding one touches no other file.
type command struct {
	name    string
	summary string // one line for the usage text, starting with its flags
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands []command

func register(c command) { commands = append(commands, c) }

func init() {
	register(command{"run", "-c FILE   run the gateway from a config file", cmdRun})
	register(command{"validate", "-c FILE   check a config file; exit 0 if valid, else list every error", cmdValidate})
	register(command{"demo", "          run a simulated plant with live values (no hardware needed)", cmdDemo})
	register(command{"version", "          print version and commit", func(_ []string, stdout, _ io.Writer) int {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}})
}

// allCommands are edged's own commands and the protocols'.
func allCommands() []command {
	return append(commands[:len(commands):len(commands)], protocolCommands()...)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "-v":
		name = "version"
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	for _, c := range allCommands() {
		if c.name == name {
			if wantsHelp(rest) { // see help.go
				return commandHelp(c, stdout)
			}
			return c.run(rest, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "edged: unknown command %q\n\n%s", name, usage())
	return exitUsage
}

func versionString() string {
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("edged %s (commit %s)", version, c)
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edged "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	path := fs.String("c", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil || noPositional(fs, "validate", stderr) {
		return exitUsage
	}
	logs := newLogging(stderr)
	cfg, err := app.LoadConfig(*path, logs.logger)
	if err != nil {
		printConfigError(stderr, *path, err)
		return exitConfig
	}
	if err := app.Check(cfg); err != nil {
		// LoadConfig ran the same checks, located: only a driver's own
		// mistake gets here.
		printConfigError(stderr, *path, err)
		return exitConfig
	}
	tags := 0
	for _, d := range cfg.Devices {
		if drv, ok := d.Settings.(southbound.Driver); ok {
			tags += len(drv.Tags())
		}
	}
	fmt.Fprintf(stdout, "%s: OK — gateway %q, %d device(s), %d tag(s)\n", *path, cfg.Gateway.ID, len(cfg.Devices), tags)
	if len(cfg.Warnings) > 0 {
		fmt.Fprintf(stderr, "%s: %d warning(s):\n", *path, len(cfg.Warnings))
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "  %s\n", w.Error())
		}
	}
	return exitOK
}

func printConfigError(w io.Writer, path string, err error) {
	var errs configs.Errors
	if errors.As(err, &errs) {
		fmt.Fprintf(w, "%s: %d error(s):\n", path, len(errs))
		for _, e := range errs {
			fmt.Fprintf(w, "  %s\n", e.Error())
		}
		return
	}
	leaves := leafErrors(err)
	fmt.Fprintf(w, "%s: %d error(s):\n", path, len(leaves))
	for _, e := range leaves {
		fmt.Fprintf(w, "  %v\n", e)
	}
}

// leafErrors flattens errors.Join.
func leafErrors(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	path := fs.String("c", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil || noPositional(fs, "run", stderr) {
		return exitUsage
	}
	logs := newLogging(stderr)
	cfg, err := app.LoadConfig(*path, logs.logger)
	if err != nil {
		printConfigError(stderr, *path, err)
		return exitConfig
	}
	if err := logs.apply(cfg.Gateway); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		return exitConfig
	}
	for _, w := range cfg.Warnings {
		logs.logger.Warn("config warning", "warning", w.Error())
	}
	app.ApplyMemorySettings(cfg)
	app.Version, app.Commit = version, commit // the console and edged_build_info show them
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rt, err := app.Start(ctx, cfg, logs.logger)
	if err != nil {
		logs.logger.Error("start failed", "err", err)
		return exitFailure
	}
	// Once start-up is over, give back the executable's pages it touched
	// (see internal/residency); one timer, nothing after it.
	trim := time.AfterFunc(residency.Settle, func() {
		logs.logger.Debug("executable pages trimmed", "advised_bytes", residency.TrimExecutable())
	})
	defer trim.Stop()
	logs.logger.Info("edged running", "version", version, "gateway", cfg.Gateway.ID, "devices", len(cfg.Devices))
	// Under systemd (Type=notify): ready now, keep-alives from this loop,
	// which stops if the gateway hangs (Snapshot takes every device's lock)
	// and withholds them while a buffer writer is stuck (rt.Alive).
	// Outside systemd these are no-ops.
	if err := systemd.Notify(fmt.Sprintf("READY=1\nSTATUS=gateway %s: %d device(s)", cfg.Gateway.ID, len(cfg.Devices))); err != nil {
		logs.logger.Warn("notify systemd", "err", err)
	}
	dog := systemd.NewWatchdog(rt.Alive)
	defer dog.Stop()
	// The unit's ExecReload sends SIGHUP, which would otherwise end the
	// process as a clean exit that Restart=on-failure does not undo.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-dog.C:
			if err := dog.Ping(); err != nil {
				logs.logger.Warn("watchdog", "err", err)
			}
		case <-hup:
			cfg = reload(ctx, rt, *path, cfg, logs)
		}
	}
	if err := systemd.Stopping(); err != nil {
		logs.logger.Warn("notify systemd", "err", err)
	}
	logs.logger.Info("shutting down", "reason", context.Cause(ctx))
	if err := rt.Stop(); err != nil {
		logs.logger.Error("shutdown", "err", err)
		return exitFailure
	}
	return exitOK
}

// reload applies the config file again (SIGHUP, systemctl reload). An
// invalid file changes nothing: the errors are logged and the running
// config stays. It returns the config now in force.
func reload(ctx context.Context, rt *app.Runtime, path string, running *configs.Config, logs *logging) *configs.Config {
	log := logs.logger
	log.Info("reloading config", "file", path)
	if err := systemd.Reloading(); err != nil {
		log.Warn("notify systemd", "err", err)
	}
	defer func() {
		if err := systemd.Ready(); err != nil {
			log.Warn("notify systemd", "err", err)
		}
	}()
	next, _, err := rt.Reload(ctx, path, running)
	if err != nil {
		var errs configs.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				log.Error("config error, keeping the running config", "error", e.Error())
			}
		} else {
			log.Error("reload failed, keeping the running config", "err", err)
		}
		return running
	}
	if err := logs.apply(next.Gateway); err != nil {
		log.Warn("log settings", "err", err)
	}
	return next
}

// logging builds the process logger early (so config loading can log) and
// applies the configured level and format once the config is read.
type logging struct {
	level  *slog.LevelVar
	out    io.Writer
	logger *slog.Logger
	inner  *swapHandler
}

func newLogging(w io.Writer) *logging {
	l := &logging{level: new(slog.LevelVar), out: w}
	l.inner = &swapHandler{}
	l.inner.set(newLogHandler(w, false, l.level)) // see journal.go
	l.logger = slog.New(l.inner)
	return l
}

func (l *logging) apply(g configs.Gateway) error {
	switch strings.ToLower(g.LogLevel) {
	case "", "info":
		l.level.Set(slog.LevelInfo)
	case "debug":
		l.level.Set(slog.LevelDebug)
	case "warn", "warning":
		l.level.Set(slog.LevelWarn)
	case "error":
		l.level.Set(slog.LevelError)
	default:
		return fmt.Errorf("gateway.log_level = %q: allowed are debug, info, warn, error", g.LogLevel)
	}
	switch strings.ToLower(g.LogFormat) {
	case "", "text":
	case "json":
		l.inner.set(newLogHandler(l.out, true, l.level))
	default:
		return fmt.Errorf("gateway.log_format = %q: allowed are text, json", g.LogFormat)
	}
	return nil
}
