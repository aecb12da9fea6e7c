package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

var planCommand = southbound.Command{Name: "plan", Summary: "-c FILE [--live] [DEVICE]   show each Modbus device's read requests per poll (and wire time on RTU)", Run: cmdPlan}

// modbusDevice is what plan needs of a Modbus device, TCP or RTU.
type modbusDevice interface {
	southbound.Driver
	Requests() []Request
	TagList() []Tag
	Learned() Learned
	SavedPlan(dataDir string) SavedPlan
}

func cmdPlan(env southbound.CommandEnv, args []string, stdout, stderr io.Writer) int {
	fs := southbound.NewFlags("plan", stderr)
	path := fs.String("c", env.DefaultConfig, "config file")
	live := fs.Bool("live", false, "connect, poll (up to 4 times while a refused read awaits confirmation), print the values read and show what the device taught the planner (split reads, unreadable tags); starts from the saved learned plan and saves what it learned, as edged run does")
	wait := fs.Duration("wait", 10*time.Second, "with --live: how long to wait for the first poll")
	if err := fs.Parse(args); err != nil {
		return southbound.ExitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "edged plan: give at most one device name")
		return southbound.ExitUsage
	}
	cfg, code := env.LoadConfig(*path)
	if cfg == nil {
		return code
	}
	shown := 0
	for _, d := range cfg.Devices {
		if fs.NArg() == 1 && d.Name != fs.Arg(0) {
			continue
		}
		dev, ok := d.Settings.(modbusDevice)
		if !ok {
			continue
		}
		shown++
		reqs := dev.Requests()
		var learned *Learned
		var values []mapping.Sample
		if *live {
			l, samples, err := pollOnce(dev, *wait, cfg.Gateway.DataDir)
			if err != nil {
				fmt.Fprintf(stderr, "device %q: %v\n", d.Name, err)
				return southbound.ExitFailure
			}
			learned, reqs, values = &l, l.Plan, samples
		}
		printPlan(stdout, d.Name, dev, reqs, learned)
		if *live {
			printValues(stdout, values)
		}
		printSavedPlan(stdout, dev.SavedPlan(cfg.Gateway.DataDir))
		fmt.Fprintln(stdout)
	}
	if shown == 0 {
		if fs.NArg() == 1 {
			fmt.Fprintf(stderr, "edged plan: no Modbus device %q in %s\n", fs.Arg(0), *path)
			return southbound.ExitUsage
		}
		fmt.Fprintf(stdout, "%s: no Modbus devices\n", *path)
	}
	return southbound.ExitOK
}

func printPlan(w io.Writer, name string, dev modbusDevice, reqs []Request, learned *Learned) {
	tags := dev.TagList()
	rtu, isRTU := dev.(*RTU)
	switch {
	case isRTU:
		fmt.Fprintf(w, "device %s (modbus-rtu %s %s, unit %d, every %v)\n", name, rtu.Port, rtu.LineMode(), rtu.UnitID, rtu.PollInterval.D())
	default:
		switch t := dev.(type) {
		case *TCP:
			fmt.Fprintf(w, "device %s (modbus-tcp %s, unit %d, every %v)\n", name, t.Address, t.UnitID, t.PollInterval.D())
		case *RTUOverTCP:
			fmt.Fprintf(w, "device %s (modbus-rtu-tcp %s, unit %d, every %v)\n", name, t.Address, t.UnitID, t.PollInterval.D())
		}
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tfunction\tstart\tcount\ttags")
	var wire time.Duration
	for i, r := range reqs {
		names := make([]string, len(r.Tags))
		for j, k := range r.Tags {
			names[j] = tags[k].Name
		}
		fmt.Fprintf(tw, "  %d\t%d (read %s)\t%d\t%d\t%s\n", i+1, r.Area.FunctionCode(), r.Area, r.Start, r.Count, strings.Join(names, " "))
		if isRTU {
			wire += r.WireTime(rtu.LineMode())
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "  %d request(s) per poll for %d tag(s)\n", len(reqs), len(tags))
	if isRTU {
		fmt.Fprintf(w, "  wire time per poll at %s: %v (%.0f%% of the %v poll interval)\n", rtu.LineMode(),
			wire.Round(100*time.Microsecond), 100*float64(wire)/float64(rtu.PollInterval.D()), rtu.PollInterval.D())
	}
	if learned != nil {
		fmt.Fprintf(w, "  learned: %d change(s), max_registers %d, max_bits %d\n", learned.Changes, learned.MaxRegisters, learned.MaxBits)
		for _, c := range learned.Cuts {
			fmt.Fprintf(w, "  learned: no read across %s %d|%d\n", c.Area, c.Address-1, c.Address)
		}
		for _, h := range learned.Unreadable {
			fmt.Fprintf(w, "  unreadable: tag %s (%s %d): %s\n", h.Tag, h.Area, h.Address, h.Reason)
		}
	}
}

// printSavedPlan says whether edged starts the device from a saved learned
// plan (--live starts from it too, and saves what it learned).
func printSavedPlan(w io.Writer, sp SavedPlan) {
	switch {
	case sp.Path == "":
		fmt.Fprintf(w, "  saved learned plan: none (%v)\n", sp.Err)
	case errors.Is(sp.Err, fs.ErrNotExist):
		fmt.Fprintf(w, "  saved learned plan: none yet (%s)\n", sp.Path)
	case sp.Err != nil:
		fmt.Fprintf(w, "  saved learned plan: %s, not used: %v\n", sp.Path, sp.Err)
	default:
		fmt.Fprintf(w, "  saved learned plan: %s, used at start: %d request(s) per poll, %d unreadable tag(s)\n",
			sp.Path, len(sp.Learned.Plan), len(sp.Learned.Unreadable))
	}
}

// printValues prints the values of the last poll, one tag a line, as
// `telegraf --test` does: what the gateway would publish.
func printValues(w io.Writer, samples []mapping.Sample) {
	fmt.Fprintf(w, "  values read (last poll):\n")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, smp := range samples {
		name, unit := "?", ""
		if smp.Tag != nil {
			name, unit = smp.Tag.Name, smp.Tag.Unit
		}
		switch {
		case smp.Quality == mapping.Good:
			v := mapping.FormatValue(smp.Value)
			if unit != "" {
				v += " " + unit
			}
			fmt.Fprintf(tw, "    %s\t= %s\n", name, v)
		case smp.Err != nil:
			fmt.Fprintf(tw, "    %s\t(%s: %v)\n", name, smp.Quality, smp.Err)
		default:
			fmt.Fprintf(tw, "    %s\t= %s (%s)\n", name, mapping.FormatValue(smp.Value), smp.Quality)
		}
	}
	tw.Flush()
}

// pollOnce starts the device as the daemon does, from the learned plan
// saved under dataDir (saving there what it learns), waits for its first
// completed poll (more while a refused read awaits confirmation) and
// returns what it learned and the values of its last poll.
func pollOnce(dev modbusDevice, wait time.Duration, dataDir string) (Learned, []mapping.Sample, error) {
	if u, ok := dev.(southbound.DataDirUser); ok && dataDir != "" {
		u.SetDataDir(dataDir)
	}
	s := &onceSink{polled: make(chan struct{}, 1)}
	if err := dev.Start(context.Background(), s); err != nil {
		return Learned{}, nil, err
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dev.Stop(ctx)
	}
	// A refused read is learned only when later polls refuse it the same
	// way: poll until nothing is pending (at most 4 polls, see
	// southbound/modbus/learn.go).
	deadline := time.After(wait)
	for polls := 0; polls == 0 || (polls < 4 && dev.Learned().Pending > 0); polls++ {
		select {
		case <-s.polled:
		case <-deadline:
			stop()
			return Learned{}, nil, fmt.Errorf("no poll completed in %v (last error: %v)", wait, s.lastErr())
		}
	}
	// Stopped before reading what was learned: the poll in flight ends
	// (and saves) first.
	stop()
	if err := s.lastErr(); err != nil {
		return Learned{}, nil, err
	}
	return dev.Learned(), s.last(), nil
}

// onceSink signals each Samples call and keeps the last one; a poll whose
// every tag is bad (the device is unreachable) is kept as an error.
type onceSink struct {
	polled  chan struct{}
	mu      sync.Mutex
	err     error
	samples []mapping.Sample
}

func (s *onceSink) Samples(_ string, samples []mapping.Sample) {
	var err error
	for i, smp := range samples {
		if smp.Quality != mapping.Bad {
			err = nil
			break
		}
		if i == 0 {
			err = smp.Err
		}
	}
	s.mu.Lock()
	s.err = err
	s.samples = append(s.samples[:0], samples...)
	s.mu.Unlock()
	select {
	case s.polled <- struct{}{}:
	default:
	}
}

func (s *onceSink) last() []mapping.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

func (s *onceSink) State(string, southbound.State, error) {}

func (s *onceSink) lastErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
