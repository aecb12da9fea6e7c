package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/mapping"
)

//go:embed demo
var demoFiles embed.FS

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:1883", "address of the embedded MQTT broker")
	duration := fs.Duration("for", 0, "stop after this long (0: until Ctrl-C)")
	plain := fs.Bool("plain", false, "print the value table as plain lines instead of redrawing the screen")
	keep := fs.String("dir", "", "write the demo config here instead of a temporary folder")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	logs := newLogging(stderr)
	log := logs.logger

	plc, meter := modbussim.New(), modbussim.New()
	for _, s := range []*modbussim.Server{plc, meter} {
		if err := s.Listen("127.0.0.1:0"); err != nil {
			log.Error("start simulator", "err", err)
			return exitFailure
		}
		defer s.Close()
	}

	dir := *keep
	if dir == "" {
		tmp, err := os.MkdirTemp("", "edged-demo-")
		if err != nil {
			log.Error("make demo folder", "err", err)
			return exitFailure
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	cfgPath, err := writeDemoConfig(dir, map[string]string{
		"{{BROKER}}": *listen, "{{PLC}}": plc.Addr(), "{{METER}}": meter.Addr(),
	})
	if err != nil {
		log.Error("write demo config", "err", err)
		return exitFailure
	}
	cfg, err := configs.Load(cfgPath, app.Drivers(log))
	if err != nil {
		printConfigError(stderr, cfgPath, err)
		return exitConfig
	}
	if err := logs.apply(cfg.Gateway); err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	go simulatePlant(ctx, plc, meter)

	app.ApplyMemoryLimit(cfg)
	rt, err := app.Start(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "edged demo: simulated PLC at %s, meter at %s\n", plc.Addr(), meter.Addr())
	fmt.Fprintf(stdout, "config: %s\n", cfgPath)
	fmt.Fprintf(stdout, "MQTT broker on %s — try: mosquitto_sub -h %s -p %s -t 'edged/#' -v\n",
		rt.Broker.Addr(), hostOf(rt.Broker.Addr()), portOf(rt.Broker.Addr()))
	if rt.Metrics != nil {
		fmt.Fprintf(stdout, "metrics: http://%s/metrics  health: http://%s/readyz\n", rt.Metrics.Addr(), rt.Metrics.Addr())
	}
	fmt.Fprintln(stdout)

	redraw := !*plain && isTerminal(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			renderTable(stdout, rt.Gateway, redraw)
		}
	}
	if err := rt.Stop(); err != nil {
		log.Error("shutdown", "err", err)
		return exitFailure
	}
	c := rt.Gateway.Counters()
	fmt.Fprintf(stdout, "edged demo stopped: %d samples read, %d messages published\n", c.Samples, c.Published)
	return exitOK
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

// simulatePlant moves the simulators' registers like a small process.
func simulatePlant(ctx context.Context, plc, meter *modbussim.Server) {
	plc.SetHolding(10, stringWords("EDGED-DEMO-0001", 8)...)
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var energy uint32 = 1234500 // 12345.00 kWh
	for {
		t := time.Since(start).Seconds()
		count := uint32(t)
		level := float32(50 + 40*math.Sin(2*math.Pi*t/60))
		flow := float32(12.5 + 3*math.Sin(2*math.Pi*t/17))
		temp := int16(215 + 80*math.Sin(2*math.Pi*t/45)) // 13.5 … 29.5 °C
		status := uint16(0)
		if level < 80 {
			status |= 1 // pump running while not full
		}
		if int(t)%20 < 10 {
			status |= 2 // valve cycles every 10 s
		}
		if level > 85 {
			status |= 4
		}
		plc.SetHolding(0, uint16(count>>16), uint16(count))
		plc.SetHolding(2, f32words(level)...)
		plc.SetHolding(4, status)
		fw := f32words(flow)
		plc.SetHolding(6, fw[1], fw[0]) // word-swapped on the wire
		plc.SetInput(0, uint16(temp))
		plc.SetCoil(0, status&1 == 1)

		volts := f32words(float32(230 + 2*math.Sin(2*math.Pi*t/7)))
		energy += 1
		meter.SetInput(0, volts[1], volts[0])
		meter.SetInput(2, uint16(energy), uint16(energy>>16))

		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func f32words(f float32) []uint16 {
	b := math.Float32bits(f)
	return []uint16{uint16(b >> 16), uint16(b)}
}

func stringWords(s string, n int) []uint16 {
	w := make([]uint16, n)
	for i := 0; i < n && 2*i < len(s); i++ {
		hi := uint16(s[2*i]) << 8
		var lo uint16
		if 2*i+1 < len(s) {
			lo = uint16(s[2*i+1])
		}
		w[i] = hi | lo
	}
	return w
}

func renderTable(w io.Writer, gw *gateway.Gateway, redraw bool) {
	var b strings.Builder
	if redraw {
		b.WriteString("\033[H\033[2J")
	}
	now := time.Now().UnixMilli()
	c := gw.Counters()
	fmt.Fprintf(&b, "%s  samples %d  published %d\n", time.Now().Format("15:04:05"), c.Samples, c.Published)
	for _, d := range gw.Snapshot() {
		state := d.State.String()
		if d.Err != nil {
			state += " (" + d.Err.Error() + ")"
		}
		fmt.Fprintf(&b, "\n%-10s %s, %d polls\n", d.Name, state, d.Polls)
		for _, t := range d.Tags {
			v := formatValue(t.Sample)
			age := ""
			if t.Sample.TimeMs > 0 {
				age = fmt.Sprintf("%5.1fs ago", float64(now-t.Sample.TimeMs)/1000)
			}
			fmt.Fprintf(&b, "  %-18s %18s %-5s %-9s %s  %s\n", t.Name, v, t.Unit, t.Sample.Quality, age, t.Topic)
		}
	}
	if !redraw {
		b.WriteString("\n")
	}
	io.WriteString(w, b.String())
}

func formatValue(s mapping.Sample) string {
	v := s.Value
	switch v.Kind {
	case mapping.KindBool:
		return fmt.Sprint(v.Bool)
	case mapping.KindInt:
		return fmt.Sprint(v.Int)
	case mapping.KindUint:
		return fmt.Sprint(v.Uint)
	case mapping.KindFloat:
		return fmt.Sprintf("%.3f", v.Float)
	case mapping.KindString:
		return fmt.Sprintf("%q", v.Str)
	}
	return "—"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return "1883"
}
