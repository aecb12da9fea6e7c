package modbus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// holeyTags are 20 uint16 tags every 4 registers from 0; holeySim refuses
// three of them and two registers between tags, so the blind plan (one
// read of holding 0+77) is refused and split.
func holeyTags() string {
	var b strings.Builder
	for i := range 20 {
		b.WriteString(tagToml(fmt.Sprintf("t%d", i), "holding", 4*i, "uint16"))
	}
	return b.String()
}

func holeySim(t *testing.T) *modbussim.Server {
	sim := startSim(t, "127.0.0.1:0")
	for i := range 20 {
		sim.SetHolding(4*i, uint16(100+i))
	}
	for _, a := range []int{20, 24, 52} { // tags t5, t6, t13
		sim.Reject(modbussim.Holding, a, a)
	}
	sim.Reject(modbussim.Holding, 34, 34) // between t8 and t9
	sim.Reject(modbussim.Holding, 65, 65) // between t16 and t17
	return sim
}

// firstPoll is what one start of a device did: its counters after the
// first poll, the samples of that poll and what it had learned when
// stopped.
type firstPoll struct {
	stats   southbound.Stats
	samples []mapping.Sample
	learned Learned
	logs    string
}

// startOnce starts d with data_dir dir, waits for two polls and stops it.
func startOnce(t *testing.T, d southbound.Driver, dir string) firstPoll {
	t.Helper()
	var logs logBuffer
	var name string
	switch d := d.(type) {
	case *TCP:
		d.Logger, name = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), d.Name
	case *RTU:
		d.Logger, name = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), d.Name
	}
	d.(southbound.DataDirUser).SetDataDir(dir)
	var mu sync.Mutex
	var fp firstPoll
	polls := 0
	s := newSink()
	s.onSample = func(string) {
		// Called on the goroutine that polls, right after the poll.
		mu.Lock()
		defer mu.Unlock()
		if polls++; polls == 1 {
			fp.stats = d.(southbound.StatsReporter).Stats()
			fp.samples = s.samples(name)
		}
	}
	if err := d.Start(context.Background(), s); err != nil {
		t.Fatalf("start: %v", err)
	}
	testwait.For(t, testwait.Timeout, "2 polls", func() bool { return s.pollCount(name) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	fp.learned = d.(interface{ Learned() Learned }).Learned()
	fp.logs = logs.String()
	return fp
}

// checkHoleySamples: the refused tags are bad with the device's reason,
// all others good with their values.
func checkHoleySamples(t *testing.T, samples []mapping.Sample) {
	t.Helper()
	if len(samples) != 20 {
		t.Fatalf("%d samples, want 20", len(samples))
	}
	for i, smp := range samples {
		switch i {
		case 5, 6, 13:
			if smp.Quality != mapping.Bad || smp.Err == nil ||
				!strings.Contains(smp.Err.Error(), fmt.Sprintf("read holding %d+1: modbus exception 02 (illegal data address)", 4*i)) {
				t.Errorf("%s: quality %v err %v, want bad with exception 02", smp.Tag.Name, smp.Quality, smp.Err)
			}
		default:
			if smp.Quality != mapping.Good || fmt.Sprint(smp.Value.Float64()) != fmt.Sprint(float64(100+i), true) {
				t.Errorf("%s: %v %v err %v, want good %d", smp.Tag.Name, smp.Quality, smp.Value, smp.Err, 100+i)
			}
		}
	}
}

// TestLearnedPlanSurvivesRestart: a device that learned its plan saves it
// under data_dir; a new driver with the same config and data_dir starts
// from it: its first poll sends exactly the learned reads and not one
// refused read. Without persistence the first poll bisects again.
func TestLearnedPlanSurvivesRestart(t *testing.T) {
	for _, kind := range []string{kindTCP, kindRTU} {
		t.Run(kind, func(t *testing.T) {
			sim := holeySim(t)
			newDev := func() southbound.Driver { return device(t, "plc", sim.Addr(), holeyTags()) }
			if kind == kindRTU {
				p := ptyPair(t)
				serveRTU(t, sim, p.B, modbussim.RTUOptions{})
				newDev = func() southbound.Driver { return rtuDevice(t, "plc", p.A, 1, "", holeyTags()) }
			}
			dir := t.TempDir()

			first := startOnce(t, newDev(), dir)
			if first.stats.Exceptions == 0 || first.learned.Changes == 0 || first.learned.Loaded != "" {
				t.Fatalf("first start: stats %+v, learned %+v: want a poll that learns", first.stats, first.learned)
			}
			checkHoleySamples(t, first.samples)
			path := filepath.Join(dir, "modbus", "plc.plan.json")
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("saved plan: %v, %v; want a 0600 file", fi, err)
			}
			if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("plan folder: %v, %v; want 0700", fi, err)
			}
			if !strings.Contains(first.logs, `msg="learned plan saved"`) {
				t.Errorf("no save logged:\n%s", first.logs)
			}

			again := startOnce(t, newDev(), dir)
			if again.stats.Exceptions != 0 || again.stats.Requests != uint64(len(first.learned.Plan)) {
				t.Errorf("first poll after restart: %d requests, %d exceptions; want the %d learned reads and none refused",
					again.stats.Requests, again.stats.Exceptions, len(first.learned.Plan))
			}
			if fmt.Sprint(spans(again.learned.Plan)) != fmt.Sprint(spans(first.learned.Plan)) ||
				fmt.Sprint(again.learned.Unreadable) != fmt.Sprint(first.learned.Unreadable) ||
				fmt.Sprint(again.learned.Cuts) != fmt.Sprint(first.learned.Cuts) {
				t.Errorf("restarted with\n %+v\nwant what was learned\n %+v", again.learned, first.learned)
			}
			if again.learned.Loaded != path || again.learned.Changes != 0 {
				t.Errorf("Loaded %q, Changes %d; want %q, 0", again.learned.Loaded, again.learned.Changes, path)
			}
			checkHoleySamples(t, again.samples)
			if !strings.Contains(again.logs, `msg="learned plan loaded"`) || strings.Count(again.logs, `msg="tag unreadable"`) != 3 {
				t.Errorf("want the load and the 3 unreadable tags logged:\n%s", again.logs)
			}
		})
	}
}

// TestLoadedPlanLearnsAgain: a loaded plan the device now refuses (a
// firmware update moved a hole) is split again as today, and what is
// learned then is saved for the next start.
func TestLoadedPlanLearnsAgain(t *testing.T) {
	sim := holeySim(t)
	dir := t.TempDir()
	startOnce(t, device(t, "plc", sim.Addr(), holeyTags()), dir)
	sim.Reject(modbussim.Holding, 40, 40) // tag t10, inside a learned read
	got := startOnce(t, device(t, "plc", sim.Addr(), holeyTags()), dir)
	if got.stats.Exceptions == 0 || got.learned.Changes == 0 || len(got.learned.Unreadable) != 4 {
		t.Fatalf("stats %+v, learned %+v: want t10 learned unreadable", got.stats, got.learned)
	}
	again := startOnce(t, device(t, "plc", sim.Addr(), holeyTags()), dir)
	if again.stats.Exceptions != 0 || again.stats.Requests != uint64(len(got.learned.Plan)) || len(again.learned.Unreadable) != 4 {
		t.Errorf("after re-learning and a restart: stats %+v, learned %+v", again.stats, again.learned)
	}
}

// TestSavedPlanIgnored: a saved plan that no longer fits the config, or
// that cannot be read, is ignored: Start succeeds and the device learns
// as if there were none, then saves what it learned.
func TestSavedPlanIgnored(t *testing.T) {
	sim := holeySim(t)
	base := t.TempDir()
	startOnce(t, device(t, "plc", sim.Addr(), holeyTags()), base)
	good, err := os.ReadFile(filepath.Join(base, "modbus", "plc.plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		file   func(path string) // makes the saved plan at path
		tags   string
		reason string // in the log
	}{
		{"tag added", write(good), holeyTags() + tagToml("extra", "holding", 80, "uint16"), "learned with another configuration"},
		{"tag wider", write(good), strings.Replace(holeyTags(), `type = "uint16"`, `type = "uint32"`, 1), "learned with another configuration"},
		{"max_gap changed", write(good), "max_gap = 3\n" + holeyTags(), "learned with another configuration"},
		{"unit changed", write(good), "unit_id = 2\n" + holeyTags(), "learned with another configuration"},
		{"not json", write([]byte("\x00\x01garbage")), holeyTags(), "corrupt"},
		{"truncated", write(good[:len(good)/2]), holeyTags(), "corrupt"},
		{"empty", write(nil), holeyTags(), "corrupt"},
		{"other version", write([]byte(strings.Replace(string(good), `"version": 1`, `"version": 99`, 1))), holeyTags(), "format version 99"},
		{"hole not a tag", write([]byte(strings.Replace(string(good), `"address": 20,`, `"address": 21,`, 1))), holeyTags(), "not a tag of the device"},
		{"bad limit", write([]byte(strings.Replace(string(good), `"max_registers": 125`, `"max_registers": 500`, 1))), holeyTags(), "out of range"},
		{"folder in the way", func(path string) { os.MkdirAll(path, 0o700) }, holeyTags(), "is a directory"},
		{"missing", func(string) {}, holeyTags(), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "modbus", "plc.plan.json")
			os.MkdirAll(filepath.Dir(path), 0o700)
			tc.file(path)
			got := startOnce(t, device(t, "plc", sim.Addr(), tc.tags), dir)
			if got.stats.Exceptions == 0 || got.learned.Loaded != "" || got.learned.Changes == 0 {
				t.Errorf("stats %+v, learned %+v: want the device to learn from scratch", got.stats, got.learned)
			}
			if tc.reason != "" && (!strings.Contains(got.logs, `msg="saved learned plan ignored"`) || !strings.Contains(got.logs, tc.reason)) {
				t.Errorf("want the file ignored because %q:\n%s", tc.reason, got.logs)
			}
			if tc.reason == "" && !strings.Contains(got.logs, `msg="no saved learned plan"`) {
				t.Errorf("want a missing file noted at debug:\n%s", got.logs)
			}
			if tc.name == "folder in the way" {
				return // nothing saved: logged, polling goes on
			}
			again := startOnce(t, device(t, "plc", sim.Addr(), tc.tags), dir)
			if again.stats.Exceptions != 0 || again.learned.Loaded != path {
				t.Errorf("the re-learned plan was not saved: stats %+v, learned %+v", again.stats, again.learned)
			}
		})
	}
}

func write(data []byte) func(string) {
	return func(path string) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			panic(err)
		}
	}
}

// TestSavedPlanReport: SavedPlan, as `edged plan` shows it, reads the file
// without changing the device.
func TestSavedPlanReport(t *testing.T) {
	sim := holeySim(t)
	dir := t.TempDir()
	d := device(t, "plc", sim.Addr(), holeyTags())
	if sp := d.SavedPlan(dir); sp.Err == nil || !os.IsNotExist(sp.Err) {
		t.Errorf("before any save: %+v, want not exist", sp)
	}
	learned := startOnce(t, device(t, "plc", sim.Addr(), holeyTags()), dir).learned
	sp := d.SavedPlan(dir)
	if sp.Err != nil || fmt.Sprint(spans(sp.Learned.Plan)) != fmt.Sprint(spans(learned.Plan)) || len(sp.Learned.Unreadable) != 3 {
		t.Errorf("saved plan %+v, want %v", sp, spans(learned.Plan))
	}
	if len(d.Learned().Plan) != len(d.Requests()) {
		t.Errorf("SavedPlan changed the device: %v", spans(d.Learned().Plan))
	}
	other := device(t, "plc", sim.Addr(), "max_registers = 50\n"+holeyTags())
	if sp := other.SavedPlan(dir); sp.Err == nil || !strings.Contains(sp.Err.Error(), "another configuration") {
		t.Errorf("other config: %+v, want stale", sp)
	}
}

// TestSavedPlanWithHoleAtAddressZero: a plan learned with a refused
// register at address 0 is saved and loaded on the next start. Before,
// the hole's cut at address 0 was saved and the next start rejected the
// file: "corrupt: cut holding_register 0".
func TestSavedPlanWithHoleAtAddressZero(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetHolding(1, 11, 12)
	sim.Reject(modbussim.Holding, 0, 0)
	tags := tagToml("zero", "holding", 0, "uint16") + tagToml("one", "holding", 1, "uint16") + tagToml("two", "holding", 2, "uint16")
	dir := t.TempDir()
	first := startOnce(t, device(t, "plc", sim.Addr(), tags), dir)
	if len(first.learned.Unreadable) != 1 {
		t.Fatalf("first start learned %+v, want tag zero unreadable", first.learned)
	}
	again := startOnce(t, device(t, "plc", sim.Addr(), tags), dir)
	if strings.Contains(again.logs, "saved learned plan ignored") || again.learned.Loaded == "" || again.stats.Exceptions != 0 {
		t.Errorf("the plan edged saved was not loaded (stats %+v):\n%s", again.stats, again.logs)
	}
}
