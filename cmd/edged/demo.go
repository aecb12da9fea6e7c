package main

import (
	"bufio"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edged-gw/edged/internal/app"
)

//go:embed demo
var demoFiles embed.FS

// The demo's topics: the gateway's own status is not carried by the uplink
// (it sends its own), so the tally leaves it out.
const (
	demoFilter       = "edged/#"
	demoStatusTopic  = "edged/demo/status"
	demoTapID        = 900 // the tally's in-process subscription on the local broker
	demoWarmUp       = 3 * time.Second
	demoDrainTimeout = 60 * time.Second
)

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:1883", "address of the embedded MQTT broker")
	cloudListen := fs.String("cloud", "127.0.0.1:0", "address of the simulated cloud broker (loopback)")
	duration := fs.Duration("for", 0, "stop after this long (0: until Ctrl-C)")
	outage := fs.Duration("outage", 0, "cut the link to the cloud for this long, once the uplink has run a few seconds (0: only by Enter or SIGUSR1)")
	plain := fs.Bool("plain", false, "print the view as plain lines instead of redrawing the screen")
	keep := fs.String("dir", "", "write the demo config and data here instead of a temporary folder")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "edged demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	// The cloud broker lets anyone in: it may listen on loopback only.
	if !isLoopback(*cloudListen) {
		fmt.Fprintf(stderr, "edged demo: --cloud %s: the simulated cloud has no authentication and listens on loopback only (127.0.0.1:PORT, [::1]:PORT, localhost:PORT)\n", *cloudListen)
		return exitUsage
	}
	redraw := !*plain && isTerminal(stdout)

	dir := *keep
	if dir == "" {
		tmp, err := os.MkdirTemp("", "edged-demo-")
		if err != nil {
			fmt.Fprintln(stderr, "edged demo: make demo folder:", err)
			return exitFailure
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		fmt.Fprintln(stderr, "edged demo:", err)
		return exitFailure
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "edged demo:", err)
		return exitFailure
	}
	// A redrawn screen has no room for log lines: they go to a file.
	logOut := stderr
	logPath := ""
	if redraw {
		logPath = filepath.Join(dir, "edged.log")
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "edged demo: open log:", err)
			return exitFailure
		}
		defer f.Close()
		logOut = f
	}
	logs := newLogging(logOut)
	log := logs.logger

	plant, err := startPlant()
	if err != nil {
		log.Error("start simulators", "err", err)
		return exitFailure
	}
	defer plant.Close()
	cloud, err := startCloud(*cloudListen, demoStatusTopic)
	if err != nil {
		log.Error("start the simulated cloud", "err", err)
		return exitFailure
	}
	defer cloud.Close()

	cfgPath, err := writeDemoConfig(dir, map[string]string{
		"{{BROKER}}": *listen, "{{PLC}}": plant.plc.Addr(), "{{METER}}": plant.meter.Addr(),
		"{{OPCUA}}": plant.uaURL, "{{CLOUD}}": cloud.link.Addr(), "{{DATA}}": tomlEscape(dir),
	})
	if err != nil {
		log.Error("write demo config", "err", err)
		return exitFailure
	}
	cfg, err := app.LoadConfig(cfgPath, log)
	if err != nil {
		printConfigError(stderr, cfgPath, err)
		return exitConfig
	}
	if err := logs.apply(cfg.Gateway); err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}

	// The plant and the gateway run until the very end (runCtx); ctx ends
	// the show (Ctrl-C, --for), after which the devices stop and the
	// buffer is drained to the cloud.
	runCtx, endRun := context.WithCancel(context.Background())
	defer endRun()
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	go plant.run(runCtx)

	app.ApplyMemorySettings(cfg)
	rt, err := app.Start(runCtx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFailure
	}
	if err := rt.Broker.Subscribe(demoFilter, demoTapID, cloud.tally.local); err != nil {
		log.Error("count local messages", "err", err)
		_ = rt.Stop()
		return exitFailure
	}

	show := &demoShow{
		rt: rt, cloud: cloud, cfgPath: cfgPath, logPath: logPath, redraw: redraw,
		outage: *outage, edged: edgedCommand(), pid: os.Getpid(),
	}
	if len(cfg.Upstreams) > 0 {
		show.replayRate = cfg.Upstreams[0].ReplayRate
	}
	show.intro(stdout, plant)

	toggle := make(chan struct{}, 1)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	if isTerminal(os.Stdin) {
		show.keys = true
		go readEnter(os.Stdin, toggle)
	}

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	frame := 0
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-usr1:
			show.toggleCut(stdout, "SIGUSR1")
		case <-toggle:
			show.toggleCut(stdout, "Enter")
		case <-tick.C:
			show.step(stdout)
			if frame++; frame%2 == 0 {
				show.render(stdout)
			}
		}
	}
	stopSignals() // a second Ctrl-C ends the process at once

	if redraw {
		fmt.Fprintln(stdout) // below the last frame, which ends without a newline
	}
	fmt.Fprintln(stdout, "stopping the devices; the buffer goes on sending what the cloud lacks")
	sum, drained := show.finish(stdout)
	if redraw {
		fmt.Fprintln(stdout)
	}
	fmt.Fprintln(stdout, sum)
	endRun()
	if err := rt.Stop(); err != nil {
		log.Error("shutdown", "err", err)
		return exitFailure
	}
	c := rt.Gateway.Counters()
	fmt.Fprintf(stdout, "edged demo stopped: %d samples read, %d messages published\n", c.Samples, c.Published)
	if !drained {
		where := "they stay in the buffer in " + filepath.Join(dir, "buffer", "cloud")
		if *keep == "" {
			where = "the temporary folder and its buffer are removed now (--dir keeps them)"
		}
		fmt.Fprintf(stdout, "edged demo: the cloud still lacks %d messages; %s\n", len(sum.Missing), where)
		return exitFailure
	}
	return exitOK
}

// tomlEscape makes s fit between the quotes of a TOML basic string.
func tomlEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// edgedCommand is how the user runs this binary again: the path of the
// executable, or `go run ./cmd/edged` when it was built by go run.
func edgedCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, "go-build") {
		return "go run ./cmd/edged"
	}
	if p, err := os.Readlink("/proc/self/exe"); err == nil {
		exe = p
	}
	return exe
}

// readEnter signals toggle for every line read (Enter); it needs no raw
// terminal mode, so no terminal library.
func readEnter(r io.Reader, toggle chan<- struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		select {
		case toggle <- struct{}{}:
		default:
		}
	}
}

// writeDemoConfig copies the embedded demo files into dir, filling in the
// addresses, and returns the main file's path.
func writeDemoConfig(dir string, vars map[string]string) (string, error) {
	err := fs.WalkDir(demoFiles, "demo", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(p, "demo"))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := demoFiles.ReadFile(p)
		if err != nil {
			return err
		}
		s := string(b)
		for k, v := range vars {
			s = strings.ReplaceAll(s, k, v)
		}
		return os.WriteFile(dst, []byte(s), 0o644)
	})
	return filepath.Join(dir, "edged.toml"), err
}
