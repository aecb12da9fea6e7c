package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/northbound"
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
	lines       int       // lines of the previous frame (redraw)
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
	var b strings.Builder
	now := time.Now()
	c := s.rt.Gateway.Counters()
	fmt.Fprintf(&b, "edged demo  %s  samples %d  published %d\n", now.Format("15:04:05"), c.Samples, c.Published)
	for _, d := range s.rt.Gateway.Snapshot() {
		state := d.State.String()
		if d.Err != nil {
			state += " (" + d.Err.Error() + ")"
		}
		fmt.Fprintf(&b, "\n%-10s %-10s %s, %d polls\n", d.Name, d.Driver, state, d.Polls)
		for _, t := range d.Tags {
			age := ""
			if t.Sample.TimeMs > 0 {
				age = fmt.Sprintf("%5.1fs ago", float64(now.UnixMilli()-t.Sample.TimeMs)/1000)
			}
			fmt.Fprintf(&b, "  %-18s %18s %-5s %-9s %s  %s\n", t.Name, formatValue(t.Sample), t.Unit, t.Sample.Quality, age, t.Topic)
		}
	}

	b.WriteString("\n")
	cut, since := s.cloud.link.Cut()
	link := "up"
	if cut {
		link = fmt.Sprintf("CUT for %.0fs", now.Sub(since).Seconds())
		if !s.outageEnd.IsZero() {
			link += fmt.Sprintf(" (%.0fs left)", time.Until(s.outageEnd).Seconds())
		}
	}
	if st, ok := s.uplink(); ok {
		state := st.State
		if st.LastErr != "" && st.State != "online" {
			state += " (" + st.LastErr + ")"
		}
		fmt.Fprintf(&b, "uplink %-6s %s, %d connects; link to the cloud: %s\n", st.Name, state, st.Connects, link)
		buf := st.Buffer
		fmt.Fprintf(&b, "  buffer   %d messages not yet acknowledged: %d in memory, %d on disk (%s); %d written to disk since start; store %s\n",
			buf.Depth+buf.Pending, buf.Pending, buf.Depth, sizeText(buf.Bytes), buf.Written, sizeText(buf.DiskBytes))
		if buf.Depth > 0 {
			fmt.Fprintf(&b, "           oldest %.1fs old\n", buf.OldestAge)
		}
		replay := fmt.Sprintf("%d historical sent", st.Replayed)
		if st.ReplayBacklog > 0 {
			replay = fmt.Sprintf("REPLAYING, %d of the backlog left, ", st.ReplayBacklog) + replay
		}
		fmt.Fprintf(&b, "  replay   %s; %d sent, %d acknowledged\n", replay, st.Sent, st.Acked)
	}
	sum := s.cloud.tally.summary()
	fmt.Fprintf(&b, "  cloud    received %d of the %d messages the uplink took (%d marked historical, %d sent twice), %d on their way\n",
		sum.Arrived, sum.Published, sum.Historical, sum.Repeats, len(sum.Missing))

	b.WriteString("\ntry:\n")
	fmt.Fprintf(&b, "  %s write -c %s plc1 level_setpoint 70    # the tank level follows\n", s.edged, s.cfgPath)
	if s.keys {
		fmt.Fprintf(&b, "  press Enter (or kill -USR1 %d) to cut the link to the cloud, again to restore it\n", s.pid)
	} else {
		fmt.Fprintf(&b, "  kill -USR1 %d    # cut the link to the cloud, again to restore it\n", s.pid)
	}
	fmt.Fprintf(&b, "  mosquitto_sub -h %s -p %s -t 'edged/#' -v    # the local broker\n", hostOf(s.rt.Broker.Addr()), portOf(s.rt.Broker.Addr()))
	fmt.Fprintf(&b, "  mosquitto_sub -h %s -p %s -t 'edged/#' -v    # the cloud\n", hostOf(s.cloud.Addr()), portOf(s.cloud.Addr()))
	if s.rt.Metrics != nil {
		fmt.Fprintf(&b, "  curl http://%s/metrics\n", s.rt.Metrics.Addr())
	}
	if s.logPath != "" {
		fmt.Fprintf(&b, "  log: %s   Ctrl-C stops\n", s.logPath)
	}

	if !s.redraw {
		b.WriteString("\n")
		io.WriteString(w, b.String())
		return
	}
	// Home, each line cleared to its end, the rest of the old frame cleared.
	frame := strings.ReplaceAll(b.String(), "\n", "\033[K\n")
	io.WriteString(w, "\033[H"+frame+"\033[J")
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
