package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/northbound"
	"golang.org/x/sys/unix"
)

// demoShow runs the story on screen: the devices and their values, the
// uplink and its buffer, the link to the cloud (cut by --outage, Enter or
// SIGUSR1) and what the cloud received.
type demoShow struct {
	rt      *app.Runtime
	cloud   *demoCloud
	cfgPath string
	logPath string
	redraw  bool
	keys    bool // Enter toggles the link
	outage  time.Duration
	// replayRate is the upstream's replay_rate (messages/s), which bounds
	// how long draining the buffer at the end may take.
	replayRate int
	edged      string // how to run this binary
	pid        int

	onlineSince time.Time // the uplink's current session began (as seen here)
	outageDone  bool      // the --outage has been played
	outageEnd   time.Time // when the running --outage ends (zero: none)
}

func (s *demoShow) uplink() (northbound.UplinkStats, bool) {
	ups := s.rt.Uplinks()
	if len(ups) == 0 {
		return northbound.UplinkStats{}, false
	}
	return ups[0].Stats(), true
}

// intro prints what runs where, once (the frames repeat it on a terminal).
func (s *demoShow) intro(w io.Writer, plant *demoPlant) {
	if s.redraw {
		fmt.Fprint(w, "\033[H\033[2J")
		return
	}
	fmt.Fprintf(w, "edged demo: simulated PLC at %s, meter at %s, OPC UA server at %s\n", plant.plc.Addr(), plant.meter.Addr(), plant.uaURL)
	fmt.Fprintf(w, "config: %s\n", s.cfgPath)
	fmt.Fprintf(w, "MQTT broker on %s — try: mosquitto_sub -h %s -p %s -t 'edged/#' -v\n",
		s.rt.Broker.Addr(), hostOf(s.rt.Broker.Addr()), portOf(s.rt.Broker.Addr()))
	fmt.Fprintf(w, "cloud broker on %s (the uplink reaches it through a link at %s the demo can cut)\n", s.cloud.Addr(), s.cloud.link.Addr())
	if s.rt.Metrics != nil {
		fmt.Fprintf(w, "metrics: http://%s/metrics  health: http://%s/readyz\n", s.rt.Metrics.Addr(), s.rt.Metrics.Addr())
	}
	fmt.Fprintln(w)
}

// step plays the --outage: once the uplink has delivered for demoWarmUp,
// the link is cut for the outage, then restored.
func (s *demoShow) step(w io.Writer) {
	st, ok := s.uplink()
	if !ok {
		return
	}
	if st.State == "online" {
		if s.onlineSince.IsZero() {
			s.onlineSince = time.Now()
		}
	} else {
		s.onlineSince = time.Time{}
	}
	cut, _ := s.cloud.link.Cut()
	switch {
	case s.outage > 0 && !s.outageDone && s.outageEnd.IsZero() && !cut &&
		!s.onlineSince.IsZero() && time.Since(s.onlineSince) >= demoWarmUp && st.Acked > 0:
		s.outageEnd = time.Now().Add(s.outage)
		s.setCut(w, true, fmt.Sprintf("--outage %v", s.outage))
	case !s.outageEnd.IsZero() && time.Now().After(s.outageEnd):
		s.outageEnd, s.outageDone = time.Time{}, true
		s.setCut(w, false, "--outage over")
	}
}

func (s *demoShow) toggleCut(w io.Writer, why string) {
	cut, _ := s.cloud.link.Cut()
	if cut && !s.outageEnd.IsZero() { // restoring ends the --outage early
		s.outageEnd, s.outageDone = time.Time{}, true
	}
	s.setCut(w, !cut, why)
}

func (s *demoShow) setCut(w io.Writer, cut bool, why string) {
	s.cloud.link.SetCut(cut)
	if s.redraw {
		return // the next frame shows it
	}
	st, _ := s.uplink()
	if cut {
		fmt.Fprintf(w, "%s cloud link cut (%s): the uplink's buffer keeps every message on disk\n", time.Now().Format("15:04:05"), why)
	} else {
		fmt.Fprintf(w, "%s cloud link restored (%s): %d messages buffered (%s), replayed marked historical\n",
			time.Now().Format("15:04:05"), why, st.Buffer.Depth, sizeText(st.Buffer.Bytes))
	}
}

// render draws one frame: in place on a terminal, as plain lines otherwise.
func (s *demoShow) render(w io.Writer) {
	now := time.Now()
	c := s.rt.Gateway.Counters()
	head := fmt.Sprintf("edged demo  %s  samples %d  published %d", now.Format("15:04:05"), c.Samples, c.Published)
	if s.logPath != "" {
		head += "   log: " + s.logPath + "   Ctrl-C stops"
	}
	var devices []string
	if s.redraw {
		devices = s.compactDevices(now)
	} else {
		devices = s.plainDevices(now)
	}
	tail := append(s.uplinkLines(now), "")
	tail = append(tail, s.tryLines()...)

	if !s.redraw {
		io.WriteString(w, head+"\n"+strings.Join(devices, "\n")+"\n\n"+strings.Join(tail, "\n")+"\n\n")
		return
	}
	// Fit the screen: the uplink and what to try always show; the tags
	// are cut short on a small terminal.
	width, height := terminalSize(w)
	if room := height - 1 - 1 - len(tail) - 1; len(devices) > room && room > 1 {
		more := len(devices) - room + 1
		devices = append(devices[:room-1], fmt.Sprintf("  … %d more lines: a taller terminal, or --plain, shows them", more))
	}
	lines := append([]string{head}, devices...)
	lines = append(lines, "")
	lines = append(lines, tail...)
	var b strings.Builder
	b.WriteString("\033[H") // home; each line cleared to its end, the rest of the old frame cleared
	for i, l := range lines {
		if r := []rune(l); len(r) > width {
			l = string(r[:width])
		}
		b.WriteString(l)
		b.WriteString("\033[K")
		if i < len(lines)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString("\033[J")
	io.WriteString(w, b.String())
}

// plainDevices lists every device and every tag with its quality, age and topic.
func (s *demoShow) plainDevices(now time.Time) []string {
	var out []string
	for _, d := range s.rt.Gateway.Snapshot() {
		out = append(out, "", fmt.Sprintf("%-10s %-10s %s, %d polls", d.Name, d.Driver, deviceState(d.State.String(), d.Err), d.Polls))
		for _, t := range d.Tags {
			age := ""
			if t.Sample.TimeMs > 0 {
				age = fmt.Sprintf("%5.1fs ago", float64(now.UnixMilli()-t.Sample.TimeMs)/1000)
			}
			out = append(out, fmt.Sprintf("  %-18s %18s %-5s %-9s %s  %s", t.Name, formatValue(t.Sample), t.Unit, t.Sample.Quality, age, t.Topic))
		}
	}
	return out
}

// compactDevices puts two tags on a line and names the quality only when
// it is not good, so the whole plant fits a terminal.
func (s *demoShow) compactDevices(time.Time) []string {
	var out []string
	for _, d := range s.rt.Gateway.Snapshot() {
		out = append(out, fmt.Sprintf("%-8s %-10s %s, %d polls", d.Name, d.Driver, deviceState(d.State.String(), d.Err), d.Polls))
		cell := func(i int) string {
			t := d.Tags[i]
			q := ""
			if t.Sample.Quality.String() != "good" {
				q = " " + t.Sample.Quality.String()
			}
			return fmt.Sprintf("%-18s %17s %-5s%-9s", t.Name, formatValue(t.Sample), t.Unit, q)
		}
		for i := 0; i < len(d.Tags); i += 2 {
			l := "  " + cell(i)
			if i+1 < len(d.Tags) {
				l += "  " + cell(i+1)
			}
			out = append(out, strings.TrimRight(l, " "))
		}
	}
	return out
}

func deviceState(state string, err error) string {
	if err != nil {
		return state + " (" + err.Error() + ")"
	}
	return state
}

// uplinkLines show the uplink, its buffer, the replay and the cloud's count.
func (s *demoShow) uplinkLines(now time.Time) []string {
	var out []string
	cut, since := s.cloud.link.Cut()
	link := "up"
	if cut {
		link = fmt.Sprintf("CUT for %.0fs", now.Sub(since).Seconds())
		if !s.outageEnd.IsZero() {
			link += fmt.Sprintf(" (%.0fs left)", time.Until(s.outageEnd).Seconds())
		}
	}
	if st, ok := s.uplink(); ok {
		out = append(out, fmt.Sprintf("uplink %-6s %s, %d connects; link to the cloud: %s", st.Name, deviceState(st.State, errText(st)), st.Connects, link))
		buf := st.Buffer
		line := fmt.Sprintf("  buffer   %d waiting for the cloud (%s), %d written to disk since start, store %s on disk",
			buf.Depth+buf.Pending, sizeText(buf.Bytes), buf.Written, sizeText(buf.DiskBytes))
		if buf.Depth > 0 {
			line += fmt.Sprintf(", oldest %.0fs", buf.OldestAge)
		}
		out = append(out, line)
		replay := fmt.Sprintf("%d historical sent", st.Replayed)
		if st.ReplayBacklog > 0 {
			replay = fmt.Sprintf("REPLAYING, %d of the backlog left, ", st.ReplayBacklog) + replay
		}
		out = append(out, fmt.Sprintf("  replay   %s; %d sent, %d acknowledged", replay, st.Sent, st.Acked))
	}
	sum := s.cloud.tally.summary()
	out = append(out, fmt.Sprintf("  cloud    received %d of %d (%d marked historical, %d sent twice), %d on their way",
		sum.Arrived, sum.Published, sum.Historical, sum.Repeats, len(sum.Missing)))
	return out
}

// errText is the uplink's last error while it is not online.
func errText(st northbound.UplinkStats) error {
	if st.LastErr == "" || st.State == "online" {
		return nil
	}
	return errors.New(st.LastErr)
}

// tryLines say what to do next, with this demo's paths, ports and pid.
func (s *demoShow) tryLines() []string {
	out := []string{fmt.Sprintf("  %s write -c %s plc1 level_setpoint 70    # the tank level follows", shellQuote(s.edged), shellQuote(s.cfgPath))}
	if s.keys {
		out = append(out, fmt.Sprintf("  press Enter (or kill -USR1 %d) to cut the link to the cloud, again to restore it", s.pid))
	} else {
		out = append(out, fmt.Sprintf("  kill -USR1 %d    # cut the link to the cloud, again to restore it", s.pid))
	}
	local, cloud := s.rt.Broker.Addr(), s.cloud.Addr()
	if s.redraw {
		return append(out, fmt.Sprintf("  mosquitto_sub -h %s -t 'edged/#' -v -p %s (local broker) or -p %s (the cloud)", hostOf(local), portOf(local), portOf(cloud)))
	}
	out = append(out,
		fmt.Sprintf("  mosquitto_sub -h %s -p %s -t 'edged/#' -v    # the local broker", hostOf(local), portOf(local)),
		fmt.Sprintf("  mosquitto_sub -h %s -p %s -t 'edged/#' -v    # the cloud", hostOf(cloud), portOf(cloud)))
	if s.rt.Metrics != nil {
		out = append(out, fmt.Sprintf("  curl http://%s/metrics", s.rt.Metrics.Addr()))
	}
	return out
}

// shellQuote quotes s for a POSIX shell when it holds more than safe characters.
func shellQuote(s string) string {
	if strings.HasPrefix(s, "go run ") {
		return s
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,=@", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

// terminalSize is the size of the terminal w writes to (80×24 when it
// cannot be told).
func terminalSize(w io.Writer) (width, height int) {
	width, height = 80, 24
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 && ws.Row > 0 {
			width, height = int(ws.Col), int(ws.Row)
		}
	}
	return width, height
}

// finish stops the devices, restores the link and waits until the cloud
// has every message the local broker published (or demoDrainTimeout).
func (s *demoShow) finish(w io.Writer) (demoSummary, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), app.StopTimeout)
	_ = s.rt.Gateway.Stop(ctx) // rt.Stop stops it again: a no-op for stopped devices
	cancel()
	s.cloud.tally.freeze()
	s.cloud.link.SetCut(false)
	// A minute, plus the time the replay needs for what is buffered.
	budget := demoDrainTimeout
	if st, ok := s.uplink(); ok && s.replayRate > 0 {
		budget += time.Duration(float64(st.Buffer.Depth+st.Buffer.Pending) / float64(s.replayRate) * float64(time.Second))
	}
	deadline := time.Now().Add(budget)
	last := time.Now()
	for {
		sum := s.cloud.tally.summary()
		if len(sum.Missing) == 0 {
			return sum, true
		}
		if time.Now().After(deadline) {
			return sum, false
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			if s.redraw {
				s.render(w)
			} else {
				fmt.Fprintf(w, "the cloud lacks %d of %d messages\n", len(sum.Missing), sum.Published)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
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

func isTerminal(w any) bool {
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
