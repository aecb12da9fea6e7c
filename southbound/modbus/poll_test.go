package modbus

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// sink collects what drivers report.
type sink struct {
	mu       sync.Mutex
	polls    map[string]int
	last     map[string][]mapping.Sample // copy of the latest Samples call
	states   map[string][]southbound.State
	errs     map[string][]error // err of each State call
	onSample func(device string)
	closed   atomic.Bool // set after Stop returned
	late     atomic.Int32
}

func newSink() *sink {
	return &sink{polls: map[string]int{}, last: map[string][]mapping.Sample{},
		states: map[string][]southbound.State{}, errs: map[string][]error{}}
}

func (s *sink) Samples(device string, samples []mapping.Sample) {
	if s.closed.Load() {
		s.late.Add(1)
	}
	s.mu.Lock()
	s.polls[device]++
	s.last[device] = append(s.last[device][:0], samples...)
	f := s.onSample
	s.mu.Unlock()
	if f != nil {
		f(device)
	}
}

func (s *sink) State(device string, state southbound.State, err error) {
	if s.closed.Load() {
		s.late.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states[device] = append(s.states[device], state)
	s.errs[device] = append(s.errs[device], err)
}

func (s *sink) samples(device string) []mapping.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mapping.Sample(nil), s.last[device]...)
}

func (s *sink) pollCount(device string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls[device]
}

func (s *sink) state(device string) (southbound.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[device]
	if len(st) == 0 {
		return southbound.StateStopped, nil
	}
	return st[len(st)-1], s.errs[device][len(st)-1]
}

func startSim(t testing.TB, addr string) *modbussim.Server {
	t.Helper()
	s := modbussim.New()
	if err := s.Listen(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// device makes an initialised fast-polling device for addr from tag tables.
func device(t testing.TB, name, addr string, tags string) *TCP {
	t.Helper()
	d, err := decodeDevice(t, fmt.Sprintf("[[device]]\nname = %q\naddress = %q\npoll_interval = \"20ms\"\ntimeout = \"500ms\"\n%s", name, addr, tags), "")
	if err != nil {
		t.Fatal(err)
	}
	d.minBackoff, d.maxBackoff = 5*time.Millisecond, 50*time.Millisecond
	return d
}

// run starts d with s as its sink and stops it at the end of the test.
func run(t testing.TB, d southbound.Driver, s *sink) {
	t.Helper()
	if err := d.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Error(err)
		}
		s.closed.Store(true)
	})
}

func tagToml(name, area string, addr int, typ string, extra ...string) string {
	return fmt.Sprintf("[[device.tag]]\nname = %q\narea = %q\naddress = %d\ntype = %q\n%s\n",
		name, area, addr, typ, strings.Join(extra, "\n"))
}

var valueTags = tagToml("f_abcd", "holding", 0, "float32") +
	tagToml("f_cdab", "holding", 2, "float32", `order = "CDAB"`) +
	tagToml("neg", "holding", 4, "int16") +
	tagToml("neg_scaled", "holding", 4, "int16", "scale = 0.1") +
	tagToml("bit0", "holding", 5, "bool", "bit = 0") +
	tagToml("bit3", "holding", 5, "bool", "bit = 3") +
	tagToml("bit15", "holding", 5, "bool", "bit = 15") +
	tagToml("word_nonzero", "holding", 5, "bool") +
	tagToml("serial", "holding", 10, "string", "length = 4") +
	tagToml("big", "input", 7, "uint32") +
	tagToml("pump", "coil", 3, "bool") +
	tagToml("valve", "coil", 12, "bool") +
	tagToml("door", "discrete", 9, "bool")

func fillValues(s *modbussim.Server) {
	s.SetFloat32(modbussim.Holding, 0, 21.5, mapping.OrderABCD)
	s.SetFloat32(modbussim.Holding, 2, -0.125, mapping.OrderCDAB)
	s.SetHolding(4, uint16(0x10000-1234), 0b1000_0000_0000_1001)
	s.SetString(modbussim.Holding, 10, "EDGE-01", 4)
	s.SetUint32(modbussim.Input, 7, 3_000_000_000, mapping.OrderABCD)
	s.SetCoil(3, true)
	s.SetCoil(12, false)
	s.SetCoil(11, true) // neighbours of a tag must not leak into it
	s.SetCoil(13, true)
	s.SetDiscrete(9, true)
}

func TestPollValues(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	fillValues(sim)
	d := device(t, "plc", sim.Addr(), valueTags)
	if got := len(d.Requests()); got != 4 {
		t.Fatalf("plan has %d requests, want 4 (one per area): %v", got, spans(d.Requests()))
	}
	s := newSink()
	var mu sync.Mutex
	var perPoll []uint64 // sim.Requests() at each Samples call
	s.onSample = func(string) {
		mu.Lock()
		perPoll = append(perPoll, sim.Requests())
		mu.Unlock()
	}
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "4 polls", func() bool { return s.pollCount("plc") >= 4 })

	want := map[string]mapping.Value{
		"f_abcd":       {Kind: mapping.KindFloat, Float: 21.5},
		"f_cdab":       {Kind: mapping.KindFloat, Float: -0.125},
		"neg":          {Kind: mapping.KindInt, Int: -1234},
		"neg_scaled":   {Kind: mapping.KindFloat, Float: -123.4},
		"bit0":         {Kind: mapping.KindBool, Bool: true},
		"bit3":         {Kind: mapping.KindBool, Bool: true},
		"bit15":        {Kind: mapping.KindBool, Bool: true},
		"word_nonzero": {Kind: mapping.KindBool, Bool: true},
		"serial":       {Kind: mapping.KindString, Str: "EDGE-01"},
		"big":          {Kind: mapping.KindUint, Uint: 3_000_000_000},
		"pump":         {Kind: mapping.KindBool, Bool: true},
		"valve":        {Kind: mapping.KindBool, Bool: false},
		"door":         {Kind: mapping.KindBool, Bool: true},
	}
	got := s.samples("plc")
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d", len(got), len(want))
	}
	for i, smp := range got {
		if smp.Tag != d.Tags()[i] {
			t.Errorf("sample %d is for %q, want Tags() order (%q)", i, smp.Tag.Name, d.Tags()[i].Name)
		}
		w := want[smp.Tag.Name]
		if smp.Quality != mapping.Good || smp.Err != nil || smp.TimeMs == 0 {
			t.Errorf("%s: quality %v err %v time %d", smp.Tag.Name, smp.Quality, smp.Err, smp.TimeMs)
		}
		if w.Kind == mapping.KindFloat && smp.Value.Kind == w.Kind && math.Abs(smp.Value.Float-w.Float) < 1e-9 {
			continue
		}
		if smp.Value != w {
			t.Errorf("%s = %+v, want %+v", smp.Tag.Name, smp.Value, w)
		}
	}
	if st, _ := s.state("plc"); st != southbound.StateOnline {
		t.Errorf("state %v, want online", st)
	}

	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(perPoll); i++ {
		if n := perPoll[i] - perPoll[i-1]; n != uint64(len(d.Requests())) {
			t.Errorf("poll %d sent %d requests, want len(Plan(...)) = %d", i, n, len(d.Requests()))
		}
	}
}

func TestValuesFollowTheDevice(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	d := device(t, "plc", sim.Addr(), tagToml("level", "input", 100, "uint16"))
	s := newSink()
	run(t, d, s)
	for _, v := range []uint16{1, 2, 65535} {
		sim.SetInput(100, v)
		testwait.For(t, testwait.Timeout, fmt.Sprintf("level = %d", v), func() bool {
			got := s.samples("plc")
			return len(got) == 1 && got[0].Value.Uint == uint64(v)
		})
	}
}

// TestRejectedRequestMarksOnlyItsTags: a merged read refused with exception
// 02 is split; only the tags the device refuses alone go bad, with the
// device's reason, and the learned plan is kept: later polls send exactly
// len(Learned().Plan) requests instead of bisecting again.
func TestRejectedRequestMarksOnlyItsTags(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetHolding(0, 7)
	sim.SetHolding(200, 1)
	sim.SetHolding(210, 2)
	sim.SetHolding(300, 8)
	sim.Reject(modbussim.Holding, 205, 205) // a hole with a tag in it
	sim.Reject(modbussim.Holding, 225, 225) // a hole between two tags
	d := device(t, "plc", sim.Addr(),
		tagToml("ok", "holding", 0, "uint16")+
			tagToml("before_hole", "holding", 200, "uint16")+
			tagToml("in_hole", "holding", 205, "uint16")+
			tagToml("after_hole", "holding", 210, "uint16")+
			tagToml("before_gap", "holding", 220, "uint16")+
			tagToml("after_gap", "holding", 230, "uint16")+
			tagToml("ok_too", "holding", 300, "uint16")+
			tagToml("coil", "coil", 0, "bool"))
	if got := len(d.Requests()); got != 4 {
		t.Fatalf("plan %v: want coil, holding 0, holding 200..230 (through the holes), holding 300", spans(d.Requests()))
	}
	var logs logBuffer
	d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := newSink()
	var mu sync.Mutex
	var perPoll []uint64
	s.onSample = func(string) {
		mu.Lock()
		perPoll = append(perPoll, sim.Requests())
		mu.Unlock()
	}
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "6 polls", func() bool { return s.pollCount("plc") >= 6 })
	for _, smp := range s.samples("plc") {
		switch smp.Tag.Name {
		case "in_hole":
			if smp.Quality != mapping.Bad || smp.Err == nil ||
				!strings.Contains(smp.Err.Error(), "read holding 205+1: modbus exception 02 (illegal data address)") {
				t.Errorf("%s: quality %v err %v, want bad with exception 02", smp.Tag.Name, smp.Quality, smp.Err)
			}
		default:
			if smp.Quality != mapping.Good {
				t.Errorf("%s: quality %v err %v, want good", smp.Tag.Name, smp.Quality, smp.Err)
			}
		}
	}
	l := d.Learned()
	want := []span{{Coil, 0, 1}, {HoldingRegister, 0, 1}, {HoldingRegister, 200, 1}, {HoldingRegister, 210, 11},
		{HoldingRegister, 230, 1}, {HoldingRegister, 300, 1}}
	if fmt.Sprint(spans(l.Plan)) != fmt.Sprint(want) {
		t.Errorf("learned plan %v, want %v", spans(l.Plan), want)
	}
	if len(l.Unreadable) != 1 || l.Unreadable[0].Tag != "in_hole" || l.Changes == 0 {
		t.Errorf("learned %+v", l)
	}
	mu.Lock()
	for i := 2; i < len(perPoll); i++ {
		if n := perPoll[i] - perPoll[i-1]; n != uint64(len(l.Plan)) {
			t.Errorf("poll %d sent %d requests, want the learned plan's %d", i, n, len(l.Plan))
		}
	}
	mu.Unlock()
	if out := logs.String(); strings.Count(out, "msg=\"request split\"") != 1 || !strings.Contains(out, "msg=\"tag unreadable\"") {
		t.Errorf("want one split logged:\n%s", out)
	}
	if st, _ := s.state("plc"); st != southbound.StateOnline {
		t.Errorf("state %v after exceptions, want online", st)
	}
}

func TestGatewayWithoutDeviceIsOffline(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetUnitIDs(7) // device unit_id is 1: the "gateway" answers 0B
	d := device(t, "plc", sim.Addr(), tagToml("x", "holding", 0, "uint16"))
	s := newSink()
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "offline", func() bool { st, _ := s.state("plc"); return st == southbound.StateOffline })
	_, err := s.state("plc")
	if err == nil || !strings.Contains(err.Error(), "exception 0B (gateway target device failed to respond)") {
		t.Errorf("offline because of %v", err)
	}
}

func TestOfflineAndRecovery(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetHolding(0, 42)
	addr := sim.Addr()
	d := device(t, "plc", addr, tagToml("x", "holding", 0, "uint16")+tagToml("y", "coil", 0, "bool"))
	var logs logBuffer
	d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := newSink()
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "online", func() bool { st, _ := s.state("plc"); return st == southbound.StateOnline })

	sim.Close()
	testwait.For(t, testwait.Timeout, "offline", func() bool { st, _ := s.state("plc"); return st == southbound.StateOffline })
	if _, err := s.state("plc"); err == nil {
		t.Error("offline without a reason")
	}
	for _, smp := range s.samples("plc") {
		if smp.Quality != mapping.Bad || smp.Err == nil {
			t.Errorf("%s after the server closed: quality %v err %v", smp.Tag.Name, smp.Quality, smp.Err)
		}
	}
	// Failed reconnects while offline report nothing new.
	polls := s.pollCount("plc")
	time.Sleep(100 * time.Millisecond) // several backoff periods; asserting absence needs a window
	if n := s.pollCount("plc"); n != polls {
		t.Errorf("%d Samples calls while offline, want none after the first", n-polls)
	}

	sim2 := modbussim.New()
	sim2.SetHolding(0, 43)
	t.Cleanup(func() { sim2.Close() })
	// The port may be busy for a moment (e.g. the driver's own dial using it
	// as source port, which it detects and drops); retry until it binds.
	testwait.For(t, testwait.Timeout, "listening again on "+addr, func() bool { return sim2.Listen(addr) == nil })
	testwait.For(t, testwait.Timeout, "online again", func() bool { st, _ := s.state("plc"); return st == southbound.StateOnline })
	testwait.For(t, testwait.Timeout, "good values", func() bool {
		got := s.samples("plc")
		return len(got) == 2 && got[0].Quality == mapping.Good && got[0].Value.Uint == 43
	})
	s.mu.Lock()
	states := fmt.Sprint(s.states["plc"])
	s.mu.Unlock()
	if states != "[connecting online offline online]" {
		t.Errorf("states %s", states)
	}
	// State changes are logged once each; failed polls and reconnects are not.
	out := logs.String()
	if strings.Count(out, "level=WARN msg=\"device offline\" device=plc") != 1 ||
		strings.Count(out, "level=INFO msg=\"device online\" device=plc") != 2 ||
		strings.Count(out, "\n") != 3 {
		t.Errorf("logs:\n%s", out)
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestDeadDeviceDoesNotSlowOthers(t *testing.T) {
	live := startSim(t, "127.0.0.1:0")
	dead := startSim(t, "127.0.0.1:0")
	dead.SetDelay(time.Hour) // accepts, never answers
	s := newSink()
	a := device(t, "live", live.Addr(), tagToml("x", "holding", 0, "uint16"))
	b := device(t, "dead", dead.Addr(), tagToml("x", "holding", 0, "uint16"))
	b.Timeout = configs.Duration(100 * time.Millisecond)
	run(t, a, s)
	run(t, b, s)
	testwait.For(t, testwait.Timeout, "live polling", func() bool { return s.pollCount("live") >= 2 })

	const window = time.Second
	before, t0 := s.pollCount("live"), time.Now()
	testwait.For(t, testwait.Timeout, "the window", func() bool { return time.Since(t0) >= window })
	polls := s.pollCount("live") - before
	expected := int(time.Since(t0) / a.PollInterval.D())
	if polls < expected*8/10 {
		t.Errorf("live device polled %d times in %v, want ≥ 80%% of %d", polls, time.Since(t0), expected)
	}
	testwait.For(t, testwait.Timeout, "dead device offline", func() bool { st, _ := s.state("dead"); return st == southbound.StateOffline })
}

func TestStopUnblocksAStuckRead(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetDelay(time.Hour)
	d := device(t, "plc", sim.Addr(), tagToml("x", "holding", 0, "uint16"))
	d.Timeout = configs.Duration(time.Minute)
	s := newSink()
	if err := d.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, testwait.Timeout, "a request in flight", func() bool { return sim.Requests() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	s.closed.Store(true)
	if took := time.Since(t0); took > time.Second {
		t.Errorf("Stop took %v with a read in flight", took)
	}
	if st, _ := s.state("plc"); st != southbound.StateStopped {
		t.Errorf("last state %v, want stopped", st)
	}
	if err := d.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if n := s.late.Load(); n > 0 {
		t.Errorf("%d sink calls after Stop returned", n)
	}
}

func TestStopWhileOfflineAndNoSinkCallsAfterStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	d := device(t, "plc", addr, tagToml("x", "holding", 0, "uint16"))
	s := newSink()
	if err := d.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, testwait.Timeout, "offline", func() bool { st, _ := s.state("plc"); return st == southbound.StateOffline })
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.closed.Store(true)
	time.Sleep(60 * time.Millisecond) // a backoff period: absence needs a window
	if n := s.late.Load(); n > 0 {
		t.Errorf("%d sink calls after Stop returned", n)
	}
}

func TestLifeCycleErrors(t *testing.T) {
	if err := NewTCP().Stop(context.Background()); err != nil {
		t.Errorf("Stop without Start: %v", err)
	}
	if err := NewTCP().Start(context.Background(), newSink()); err == nil {
		t.Error("Start before Init succeeded")
	}
	sim := startSim(t, "127.0.0.1:0")
	d := device(t, "plc", sim.Addr(), tagToml("x", "holding", 0, "uint16"))
	run(t, d, newSink())
	if err := d.Start(context.Background(), newSink()); err == nil {
		t.Error("second Start succeeded")
	}
}

// BenchmarkPollCycle measures one poll of 500 tags in 8 requests against
// the in-process simulator on loopback.
func BenchmarkPollCycle(b *testing.B) {
	sim := startSim(b, "127.0.0.1:0")
	var tags strings.Builder
	for i := range 125 {
		tags.WriteString(tagToml(fmt.Sprintf("h%d", i), "holding", 2*i, "float32"))
		tags.WriteString(tagToml(fmt.Sprintf("i%d", i), "input", 2*i, "int16", "scale = 0.1"))
		tags.WriteString(tagToml(fmt.Sprintf("c%d", i), "coil", 3*i, "bool"))
		tags.WriteString(tagToml(fmt.Sprintf("b%d", i), "holding", 1000+i, "bool", "bit = 4"))
	}
	d, err := decodeDevice(b, "[[device]]\nname = \"bench\"\naddress = \""+sim.Addr()+"\"\n"+tags.String(), "")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Poll(ctx, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Poll(ctx, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(d.Requests())), "requests/op")
	b.ReportMetric(float64(len(d.tags))*float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

// TestLearningKeptWhenThePollFails: a poll that learns a refused register
// and then fails on a read the device leaves unanswered keeps what it
// learned: once the device answers again, polls use the learned plan and
// no read is refused any more (before, the plan was never rebuilt and the
// refused read was split again on every poll).
func TestLearningKeptWhenThePollFails(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetHolding(0, 1)
	sim.SetHolding(2, 2)
	sim.SetHolding(100, 3)
	sim.Reject(modbussim.Holding, 1, 1)      // a hole between two tags of one merged read
	sim.Silence(modbussim.Holding, 100, 100) // the next read of the poll hangs
	d := device(t, "plc", sim.Addr(),
		tagToml("a", "holding", 0, "uint16")+
			tagToml("b", "holding", 2, "uint16")+
			tagToml("c", "holding", 100, "uint16"))
	d.Timeout = configs.Duration(200 * time.Millisecond)
	d.Retries = 0
	if got := spans(d.Requests()); len(got) != 2 {
		t.Fatalf("plan %v: want holding 0..2 (through the hole) and holding 100", got)
	}
	s := newSink()
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "the first poll to fail on the silent register", func() bool {
		st, _ := s.state("plc")
		return st == southbound.StateOffline
	})
	sim.Unsilence()
	testwait.For(t, testwait.Timeout, "polls again", func() bool { return s.pollCount("plc") >= 3 })
	l := d.Learned()
	want := []span{{HoldingRegister, 0, 1}, {HoldingRegister, 2, 1}, {HoldingRegister, 100, 1}}
	if fmt.Sprint(spans(l.Plan)) != fmt.Sprint(want) {
		t.Fatalf("plan after the failed poll %v, want %v (what the failed poll learned)", spans(l.Plan), want)
	}
	before := d.Stats().Exceptions
	n := s.pollCount("plc")
	testwait.For(t, testwait.Timeout, "three more polls", func() bool { return s.pollCount("plc") >= n+3 })
	if ex := d.Stats().Exceptions - before; ex != 0 {
		t.Errorf("%d refused reads in three polls after learning; want none", ex)
	}
}
