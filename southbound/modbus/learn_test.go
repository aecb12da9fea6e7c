package modbus

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// watch records, after every poll of d, whether any tag was ever reported
// as refused by the device for good (a learned hole) and the most
// requests a plan had.
type watch struct {
	mu       sync.Mutex
	holeSeen string // the first hole error seen, "" if none
	maxPlan  int
	polls    int
}

func watchPolls(d *TCP, s *sink) *watch {
	w := &watch{}
	s.onSample = func(name string) {
		l := d.Learned()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.polls++
		w.maxPlan = max(w.maxPlan, len(l.Plan))
		for _, smp := range s.samples(name) {
			if smp.Err != nil && strings.Contains(smp.Err.Error(), "the device refuses this address") && w.holeSeen == "" {
				w.holeSeen = smp.Tag.Name + ": " + smp.Err.Error()
			}
		}
		if len(l.Unreadable) > 0 && w.holeSeen == "" {
			w.holeSeen = fmt.Sprintf("learned unreadable %+v", l.Unreadable)
		}
	}
	return w
}

func (w *watch) get() (hole string, maxPlan, polls int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.holeSeen, w.maxPlan, w.polls
}

// allGood reports whether every sample of the last poll is good with the
// value holeySim-style devices hold (100+i at tag i).
func allGood(samples []mapping.Sample) bool {
	if len(samples) == 0 {
		return false
	}
	for i, smp := range samples {
		if v, ok := smp.Value.Float64(); smp.Quality != mapping.Good || !ok || v != float64(100+i) {
			return false
		}
	}
	return true
}

// plainSim holds 100+i at holding 4*i for the 20 holeyTags and refuses
// nothing.
func plainSim(t *testing.T) *modbussim.Server {
	sim := startSim(t, "127.0.0.1:0")
	for i := range 20 {
		sim.SetHolding(4*i, uint16(100+i))
	}
	return sim
}

// TestTransientExceptionsLearnNoHoles: a device that refuses two reads of
// five at random (exception 02, busy now and then) but answers every
// register is never taught a hole, and once it stops refusing the plan
// is the configured one again with every tag good. Before, the first
// refused poll bisected into holes and cuts at once: tags reported "the
// device refuses this address" for 100 polls and the plan degraded.
func TestTransientExceptionsLearnNoHoles(t *testing.T) {
	for _, code := range []byte{2, 3} {
		t.Run(fmt.Sprintf("exception %02d", code), func(t *testing.T) {
			sim := plainSim(t)
			sim.Inject(modbussim.Fault{Area: modbussim.Holding, From: 0, To: 79, Answer: modbussim.FaultException,
				Code: code, Of: 2, Every: 5, Seed: uint64(code)})
			d := device(t, "plc", sim.Addr(), holeyTags())
			d.dev.holeRetry = 5
			var logs logBuffer
			d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			configured := len(d.Requests())
			s := newSink()
			w := watchPolls(d, s)
			run(t, d, s)
			testwait.For(t, testwait.Timeout, "40 polls with transient refusals", func() bool { _, _, n := w.get(); return n >= 40 })
			if sim.Faulted() == 0 {
				t.Fatal("no read was refused: the fault is not injected")
			}
			if hole, _, _ := w.get(); hole != "" {
				t.Errorf("a transient refusal became a hole: %s", hole)
			}
			if st, err := s.state("plc"); st != southbound.StateOnline {
				t.Errorf("state %v (%v), want online", st, err)
			}
			sim.ClearFaults()
			testwait.For(t, testwait.Timeout, "the configured plan and every tag good once the device stops refusing", func() bool {
				return len(d.Learned().Plan) == configured && allGood(s.samples("plc"))
			})
			_, maxPlan, _ := w.get()
			t.Logf("%d reads refused; the plan had at most %d requests (configured %d)", sim.Faulted(), maxPlan, configured)
			if maxPlan > configured && !strings.Contains(logs.String(), `msg="read plan degraded"`) {
				t.Errorf("the plan grew to %d requests (configured %d) without a log line saying why:\n%s", maxPlan, configured, logs.String())
			}
		})
	}
}

// TestDeviceWideRefusalLearnsNothing: a device that refuses every read for
// a few polls (a PLC in STOP answering exception 02 to everything) is not
// taught that its registers are holes: nothing of the poll read, so no
// refusal is confirmed. Before, every tag became unreadable for 100 polls.
func TestDeviceWideRefusalLearnsNothing(t *testing.T) {
	sim := plainSim(t)
	sim.Inject(modbussim.Fault{Area: modbussim.Holding, From: 0, To: 79, Answer: modbussim.FaultException})
	d := device(t, "plc", sim.Addr(), holeyTags())
	s := newSink()
	w := watchPolls(d, s)
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "4 refused polls", func() bool { _, _, n := w.get(); return n >= 4 })
	sim.ClearFaults()
	testwait.For(t, testwait.Timeout, "every tag good", func() bool { return allGood(s.samples("plc")) })
	if hole, _, _ := w.get(); hole != "" {
		t.Errorf("a device-wide refusal became a hole: %s", hole)
	}
	if l := d.Learned(); l.Changes != 0 || len(l.Plan) != len(d.Requests()) {
		t.Errorf("learned %+v from a device refusing everything", l)
	}
}

// TestRefusalLearnedWhenRepeated: a refusal seen on one poll only is not
// learned; the same refusal on a later poll is (the rest of the read
// answered both times). Exactly one split and the degraded plan are logged.
func TestRefusalLearnedWhenRepeated(t *testing.T) {
	sim := holeySim(t)
	d := device(t, "plc", sim.Addr(), holeyTags())
	var logs logBuffer
	d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := newSink()
	var mu sync.Mutex
	var changes []uint64
	s.onSample = func(string) {
		mu.Lock()
		changes = append(changes, d.Learned().Changes)
		mu.Unlock()
	}
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "3 polls", func() bool { return s.pollCount("plc") >= 3 })
	mu.Lock()
	first, second := changes[0], changes[1]
	mu.Unlock()
	if first != 0 || second == 0 {
		t.Errorf("changes after polls 1 and 2: %d, %d; want nothing learned from one refusal, then the confirmed split", first, second)
	}
	checkHoleySamples(t, s.samples("plc"))
	out := logs.String()
	if strings.Count(out, `msg="request split"`) != 1 || strings.Count(out, `msg="read plan degraded"`) != 1 {
		t.Errorf("want one split and one degraded plan logged:\n%s", out)
	}
}

// TestAnsweredReadUnlearns: a device that answers the reads it refused
// before (its holes filled by a firmware update) un-learns them: the plan
// is the configured one again, every tag good, and the restored plan is
// logged. Before, re-reading a hole alone made it readable but the cuts
// stayed, so the plan stayed split for good.
func TestAnsweredReadUnlearns(t *testing.T) {
	sim := holeySim(t)
	d := device(t, "plc", sim.Addr(), holeyTags())
	d.dev.holeRetry = 3
	var logs logBuffer
	d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	configured := len(d.Requests())
	s := newSink()
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "the split learned", func() bool { return len(d.Learned().Plan) > configured })
	sim.Unreject()
	testwait.For(t, testwait.Timeout, "the configured plan again", func() bool {
		l := d.Learned()
		return len(l.Plan) == configured && len(l.Unreadable) == 0 && allGood(s.samples("plc"))
	})
	if !strings.Contains(logs.String(), `msg="read plan restored"`) {
		t.Errorf("the restored plan is not logged:\n%s", logs.String())
	}
}

// TestWrongFunctionCode: a reply under another function code (an
// exception for function 04 to a read of function 03, or a data reply of
// function 04) is reported as such, never as "modbus exception …" and never
// learned as a hole; the device stays online and its other tags good. A
// wrong reply now and then (2 of 5) is tried again and loses nothing.
func TestWrongFunctionCode(t *testing.T) {
	tags := tagToml("a", "holding", 0, "uint16") + tagToml("b", "holding", 1000, "uint16") + tagToml("c", "holding", 2000, "uint16")
	for _, tc := range []struct {
		name   string
		answer modbussim.FaultAnswer
		want   string
	}{
		{"exception", modbussim.FaultWrongFunctionException, "reply to function code 03 is an exception for function code 04 (code 02): not an answer to this request"},
		{"reply", modbussim.FaultWrongFunctionReply, "reply to function code 03 has function code 04: not an answer to this request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := startSim(t, "127.0.0.1:0")
			sim.SetHolding(0, 1)
			sim.SetHolding(1000, 2)
			sim.SetHolding(2000, 3)
			sim.Inject(modbussim.Fault{Area: modbussim.Holding, From: 1000, To: 1000, Answer: tc.answer})
			d := device(t, "plc", sim.Addr(), tags)
			s := newSink()
			run(t, d, s)
			testwait.For(t, testwait.Timeout, "4 polls", func() bool { return s.pollCount("plc") >= 4 })
			for _, smp := range s.samples("plc") {
				switch smp.Tag.Name {
				case "b":
					if smp.Quality != mapping.Bad || smp.Err == nil || !strings.Contains(smp.Err.Error(), tc.want) ||
						strings.Contains(smp.Err.Error(), "modbus exception") {
						t.Errorf("b: %v %v, want bad with %q", smp.Quality, smp.Err, tc.want)
					}
				default:
					if smp.Quality != mapping.Good {
						t.Errorf("%s: %v %v, want good", smp.Tag.Name, smp.Quality, smp.Err)
					}
				}
			}
			if l := d.Learned(); l.Changes != 0 || len(l.Unreadable) != 0 {
				t.Errorf("learned from a wrong reply: %+v", l)
			}
			if st, err := s.state("plc"); st != southbound.StateOnline {
				t.Errorf("state %v (%v), want online", st, err)
			}
		})
	}
	t.Run("transient", func(t *testing.T) {
		sim := startSim(t, "127.0.0.1:0")
		sim.SetHolding(0, 1)
		sim.SetHolding(1000, 2)
		sim.SetHolding(2000, 3)
		sim.Inject(modbussim.Fault{Area: modbussim.Holding, From: 0, To: 2000, Answer: modbussim.FaultWrongFunctionException,
			Of: 2, Every: 5, Seed: 7})
		d := device(t, "plc", sim.Addr(), tags)
		d.Retries = 4 // two of each five: at most four wrong replies in a row
		s := newSink()
		bad := 0
		var mu sync.Mutex
		s.onSample = func(name string) {
			mu.Lock()
			defer mu.Unlock()
			for _, smp := range s.samples(name) {
				if smp.Quality != mapping.Good {
					bad++
				}
			}
		}
		run(t, d, s)
		testwait.For(t, testwait.Timeout, "10 polls", func() bool { return s.pollCount("plc") >= 10 })
		mu.Lock()
		defer mu.Unlock()
		if bad != 0 || sim.Faulted() == 0 {
			t.Errorf("%d bad samples in 10 polls with %d wrong replies, want none (retried)", bad, sim.Faulted())
		}
		if l := d.Learned(); l.Changes != 0 {
			t.Errorf("learned from wrong replies: %+v", l)
		}
	})
}

// TestWholeReadRefusedForAWhile: a read of which nothing can be read (the
// device refuses that block, while it answers the rest of the poll) is
// learned only when four polls in a row find it: three polls of refusals
// teach nothing, a block refused for good is learned on the fourth.
func TestWholeReadRefusedForAWhile(t *testing.T) {
	tags := tagToml("a", "holding", 0, "uint16") + tagToml("b", "holding", 4, "uint16") + tagToml("c", "holding", 8, "uint16") +
		tagToml("far", "holding", 1000, "uint16")
	t.Run("three polls", func(t *testing.T) {
		sim := startSim(t, "127.0.0.1:0")
		sim.Inject(modbussim.Fault{Area: modbussim.Holding, From: 0, To: 8, Answer: modbussim.FaultException})
		d := device(t, "plc", sim.Addr(), tags)
		s := newSink()
		w := watchPolls(d, s)
		watched := s.onSample
		s.onSample = func(name string) { // on the poll goroutine, between polls
			watched(name)
			if _, _, n := w.get(); n == 3 {
				sim.ClearFaults()
			}
		}
		run(t, d, s)
		testwait.For(t, testwait.Timeout, "6 polls", func() bool { _, _, n := w.get(); return n >= 6 })
		if hole, _, _ := w.get(); hole != "" {
			t.Errorf("a block refused for three polls became a hole: %s", hole)
		}
		if l := d.Learned(); l.Changes != 0 || l.Pending != 0 {
			t.Errorf("learned %+v", l)
		}
	})
	t.Run("for good", func(t *testing.T) {
		sim := startSim(t, "127.0.0.1:0")
		sim.Reject(modbussim.Holding, 0, 8)
		d := device(t, "plc", sim.Addr(), tags)
		s := newSink()
		var mu sync.Mutex
		var unreadable []int
		s.onSample = func(string) {
			mu.Lock()
			unreadable = append(unreadable, len(d.Learned().Unreadable))
			mu.Unlock()
		}
		run(t, d, s)
		testwait.For(t, testwait.Timeout, "5 polls", func() bool { return s.pollCount("plc") >= 5 })
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(unreadable[:4]) != "[0 0 0 3]" {
			t.Errorf("unreadable tags after each poll %v, want [0 0 0 3]: learned on the fourth poll", unreadable)
		}
	})
}
