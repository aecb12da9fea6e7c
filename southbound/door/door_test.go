package door

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// fakeDevice is pure logic standing in for a device host: the door's
// policy is tested here; the real drivers in cmd/edged and southbound/opcua.
type fakeDevice struct {
	mu      sync.Mutex
	specs   map[string]*mapping.Spec
	state   southbound.State
	err     error // what Write returns
	wire    []mapping.Value
	sample  mapping.Sample
	batches uint64
	noWrite bool
}

func (f *fakeDevice) Write(_ context.Context, tag string, v mapping.Value) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.wire = append(f.wire, v)
	// The next "poll" reads the value back.
	f.sample = mapping.Sample{Tag: f.specs[tag], Value: v, Quality: mapping.Good, TimeMs: time.Now().UnixMilli()}
	go func() {
		time.Sleep(5 * time.Millisecond)
		f.mu.Lock()
		f.batches++
		f.mu.Unlock()
	}()
	return nil
}

func (f *fakeDevice) written() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.wire)
}

func (f *fakeDevice) Target(device, tag string) (Target, error) {
	if device != "dev" {
		return Target{}, fmt.Errorf("no device %q", device)
	}
	spec := f.specs[tag]
	if spec == nil {
		return Target{}, fmt.Errorf("device %q has no tag %q", device, tag)
	}
	t := Target{Spec: spec, State: f.state, Writer: f, Last: func() (mapping.Sample, uint64) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.sample, f.batches
	}}
	if f.noWrite {
		t.Writer = nil
	}
	return t, nil
}

func newFake() *fakeDevice {
	lo, hi := 0.0, 100.0
	return &fakeDevice{state: southbound.StateOnline, specs: map[string]*mapping.Spec{
		"sp":   {Name: "sp", Type: mapping.TypeFloat32, Writable: true, Min: &lo, Max: &hi, WriteInterval: configs.Duration(time.Second), Unit: "°C"},
		"ro":   {Name: "ro", Type: mapping.TypeUint16},
		"run":  {Name: "run", Type: mapping.TypeBool, Writable: true},
		"name": {Name: "name", Type: mapping.TypeString, Writable: true},
	}}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type exception struct{}

func (exception) Error() string       { return "exception 02 (illegal data address)" }
func (exception) DeviceRefused() bool { return true }

// gatewayErr is a Modbus gateway's "target device failed to respond".
type gatewayErr struct{}

func (gatewayErr) Error() string       { return "exception 0B (gateway target device failed to respond)" }
func (gatewayErr) DeviceRefused() bool { return false }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestPolicyAndReasons(t *testing.T) {
	on, off := true, false
	cli := Source{Kind: FromCLI, User: "root"}
	mqtt := Source{Kind: FromLocal, Name: "hmi-1", User: "op"}
	cases := []struct {
		name   string
		opts   Options
		setup  func(f *fakeDevice, c *clock)
		reqs   []Request // all but the last must be accepted
		reason Reason    // of the last; "" accepted
		sent   bool
		msg    string
	}{
		{"accepted", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "42.5", Source: cli}}, "", true, ""},
		{"json value", Options{}, nil, []Request{{Device: "dev", Tag: "run", Value: json.RawMessage(`true`), Source: cli}}, "", true, ""},
		{"not writable", Options{}, nil, []Request{{Device: "dev", Tag: "ro", Text: "1", Source: cli}}, NotWritable, false, "set writable = true"},
		{"unknown tag", Options{}, nil, []Request{{Device: "dev", Tag: "nope", Text: "1", Source: cli}}, NotWritable, false, `no tag "nope"`},
		{"unknown device", Options{}, nil, []Request{{Device: "x", Tag: "sp", Text: "1", Source: cli}}, NotWritable, false, `no device "x"`},
		{"driver cannot write", Options{}, func(f *fakeDevice, _ *clock) { f.noWrite = true }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, NotWritable, false, "cannot write"},
		{"above max", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "100.5", Source: cli}}, OutOfRange, false, "above max = 100"},
		{"NaN", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "NaN", Source: cli}}, OutOfRange, false, "NaN"},
		{"too soon", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}, {Device: "dev", Tag: "sp", Text: "2", Source: cli}}, TooSoon, false, "write_interval = 1s"},
		{"after interval", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}, {Device: "dev", Tag: "run", Text: "on", Source: cli}}, "", true, ""},
		{"duplicate id", Options{}, nil, []Request{{Device: "dev", Tag: "run", Text: "on", ID: "c-1", Source: cli}, {Device: "dev", Tag: "name", Text: "x", ID: "c-1", Source: cli}}, Duplicate, false, `"c-1"`},
		{"expired", Options{}, func(_ *fakeDevice, c *clock) {}, []Request{{Device: "dev", Tag: "run", Text: "on", Issued: time.Unix(1000, 0).Add(-11 * time.Second), Source: cli}}, Expired, false, "max_command_age = 10s"},
		{"not yet expired", Options{}, nil, []Request{{Device: "dev", Tag: "run", Text: "on", Issued: time.Unix(1000, 0).Add(-9 * time.Second), Source: cli}}, "", true, ""},
		{"message expiry passed", Options{}, nil, []Request{{Device: "dev", Tag: "run", Text: "on", Expires: time.Unix(1000, 0).Add(-time.Millisecond), Source: cli}}, Expired, false, "message expiry"},
		{"message expiry ahead", Options{}, nil, []Request{{Device: "dev", Tag: "run", Text: "on", Expires: time.Unix(1000, 0).Add(time.Second), Source: cli}}, "", true, ""},
		{"refused by the source", Options{}, nil, []Request{{Device: "dev", Tag: "run", Value: json.RawMessage(`true`), Refused: BadPayload, RefusedMsg: "unknown key \"x\"", Source: cli}}, BadPayload, false, `unknown key "x"`},
		{"source refusal after the switches", Options{}, nil, []Request{{Device: "dev", Tag: "run", Refused: BadPayload, RefusedMsg: "x", Source: mqtt}}, Denied, false, "writes = true"},
		{"offline", Options{}, func(f *fakeDevice, _ *clock) { f.state = southbound.StateOffline }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, DeviceOffline, false, "is offline"},
		{"bad payload text", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "fast", Source: cli}}, BadPayload, false, "not a number"},
		{"bad payload json", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Value: json.RawMessage(`{"v":1`), Source: cli}}, BadPayload, false, "not JSON"},
		{"bad payload type", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Value: json.RawMessage(`"x"`), Source: cli}}, BadPayload, false, "not a string"},
		{"no value", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Source: cli}}, BadPayload, false, "no value"},
		{"no source", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1"}}, BadPayload, false, "source"},
		{"writes off denies the cli", Options{Writes: &off}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, Denied, false, "writes = false"},
		{"unset denies mqtt", Options{}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: mqtt}}, Denied, false, "writes = true"},
		{"on, source off", Options{Writes: &on}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: mqtt}}, Denied, false, "may not write"},
		{"on, source on", Options{Writes: &on, Allow: func(s Source) bool { return s.Name == "hmi-1" }}, nil, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: mqtt}}, "", true, ""},
		{"device refused", Options{}, func(f *fakeDevice, _ *clock) { f.err = fmt.Errorf("device %q: write: %w", "dev", exception{}) }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, DeviceRefused, true, "exception 02"},
		{"timeout", Options{}, func(f *fakeDevice, _ *clock) { f.err = fmt.Errorf("write: %w", timeoutErr{}) }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, Timeout, true, "timeout"},
		{"gateway cannot reach the device", Options{}, func(f *fakeDevice, _ *clock) { f.err = fmt.Errorf("write: %w", gatewayErr{}) }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, DeviceOffline, true, "0B"},
		{"gone offline meanwhile", Options{}, func(f *fakeDevice, _ *clock) { f.err = fmt.Errorf("x: %w", southbound.ErrOffline) }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, DeviceOffline, false, "offline"},
		{"driver policy", Options{}, func(f *fakeDevice, _ *clock) { f.err = fmt.Errorf("x: %w", mapping.ErrRange) }, []Request{{Device: "dev", Tag: "sp", Text: "1", Source: cli}}, OutOfRange, true, "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			c := &clock{t: time.Unix(1000, 0)}
			if tc.setup != nil {
				tc.setup(f, c)
			}
			opts := tc.opts
			opts.Now = c.now
			d := New(f, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var res Result
			for i, req := range tc.reqs {
				res = d.Write(ctx, req)
				if i < len(tc.reqs)-1 && !res.OK {
					t.Fatalf("request %d refused: %+v", i, res)
				}
				if tc.name == "after interval" {
					c.add(time.Second)
				}
			}
			if tc.reason == "" {
				if !res.OK || res.Reason != "" || !res.Sent || res.ReadBack == nil || string(res.ReadBack) != string(res.Written) {
					t.Fatalf("want accepted and read back, got %+v", res)
				}
				return
			}
			if res.OK || res.Reason != tc.reason || res.Sent != tc.sent || !strings.Contains(res.Message, tc.msg) {
				t.Fatalf("got ok=%v reason=%q sent=%v %q; want reason %q sent=%v mentioning %q", res.OK, res.Reason, res.Sent, res.Message, tc.reason, tc.sent, tc.msg)
			}
			if !tc.sent && f.written() != len(tc.reqs)-1 {
				t.Fatalf("a refusal reached the wire: %d writes for %d accepted", f.written(), len(tc.reqs)-1)
			}
			if got := counter(t, d, res.Status(), string(tc.reason)); got != 1 {
				t.Fatalf("edged_writes_total{result=%q,reason=%q} = %v, want 1", res.Status(), tc.reason, got)
			}
		})
	}
}

// Two concurrent writes to one tag with a write_interval: one lands, the
// other is too soon (the slot is taken before the device is called).
func TestConcurrentWritesOneSlot(t *testing.T) {
	f := newFake()
	d := New(f, Options{})
	var wg sync.WaitGroup
	results := make([]Result, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = d.Write(context.Background(), Request{Device: "dev", Tag: "sp", Text: fmt.Sprint(i), Source: Source{Kind: FromCLI}})
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		if r.OK {
			ok++
		} else if r.Reason != TooSoon {
			t.Errorf("refused with %q, want too_soon: %s", r.Reason, r.Message)
		}
	}
	if ok != 1 || f.written() != 1 {
		t.Fatalf("%d accepted, %d on the wire; want 1 and 1", ok, f.written())
	}
}

func TestResultOldValueAndAudit(t *testing.T) {
	f := newFake()
	f.sample = mapping.Sample{Tag: f.specs["sp"], Value: mapping.Value{Kind: mapping.KindFloat, Float: 20}, Quality: mapping.Good}
	dir := t.TempDir()
	d := New(f, Options{AuditDir: dir})
	defer d.Close()
	src := Source{Kind: FromCLI, User: "alice", Name: "pid 42"}
	ok := d.Write(context.Background(), Request{Device: "dev", Tag: "sp", Text: "42.5", ID: "c-7", Source: src})
	bad := d.Write(context.Background(), Request{Device: "dev", Tag: "sp", Text: "500", Source: src})
	if !ok.OK || string(ok.Old) != "20" || string(ok.Written) != "42.5" || string(ok.ReadBack) != "42.5" || ok.Unit != "°C" {
		t.Fatalf("result %+v", ok)
	}
	lines := readAudit(t, filepath.Join(dir, AuditFile))
	if len(lines) != 2 {
		t.Fatalf("%d audit lines, want 2", len(lines))
	}
	a, b := lines[0], lines[1]
	if a.Result != "ok" || a.Source != src || a.ID != "c-7" || string(a.Requested) != `"42.5"` || string(a.Old) != "20" ||
		string(a.Written) != "42.5" || string(a.ReadBack) != "42.5" || a.Device != "dev" || a.Tag != "sp" || a.Time == "" {
		t.Errorf("audit line of the accepted write: %+v", a)
	}
	if b.Result != "refused" || b.Reason != OutOfRange || string(b.Requested) != `"500"` || b.Written != nil || !strings.Contains(b.Message, "above max") {
		t.Errorf("audit line of the refused write: %+v (result %+v)", b, bad)
	}
}

func readAudit(t *testing.T, path string) []Line {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []Line
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	a := NewAudit(dir, 1000, 2)
	res := &Result{Device: "dev", Tag: "sp", Reason: TooSoon, Message: strings.Repeat("m", 100)}
	const n = 40 // ~280 bytes a line: 3 a file
	for i := range n {
		if err := a.Append(Request{Device: "dev", Tag: "sp", ID: fmt.Sprintf("c-%02d", i), Source: Source{Kind: FromCLI}}, res, `1`); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	path := filepath.Join(dir, AuditFile)
	var ids []string
	for _, p := range []string{path + ".2", path + ".1", path} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1000 {
			t.Errorf("%s is %d bytes, over the 1000 cap", p, st.Size())
		}
		for _, l := range readAudit(t, p) {
			ids = append(ids, l.ID)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third rotation was kept: %v", err)
	}
	// The newest lines survive, in order, up to the last one.
	if len(ids) < 6 || ids[len(ids)-1] != fmt.Sprintf("c-%02d", n-1) {
		t.Fatalf("kept ids %v", ids)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids out of order across rotations: %v", ids)
		}
	}
	// A reopened audit continues the current file.
	b := NewAudit(dir, 1000, 2)
	before := len(readAudit(t, path))
	if err := b.Append(Request{Device: "dev", Tag: "sp", Source: Source{Kind: FromCLI}}, &Result{Device: "dev", Tag: "sp"}, ""); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if after := len(readAudit(t, path)); after != before+1 && after != 1 {
		t.Fatalf("reopened audit: %d lines, had %d", after, before)
	}
}

func TestAuditFailureDoesNotStopWrites(t *testing.T) {
	f := newFake()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(f, Options{AuditDir: filepath.Join(file, "audit")}) // under a file: cannot be made
	res := d.Write(context.Background(), Request{Device: "dev", Tag: "run", Text: "on", Source: Source{Kind: FromCLI}})
	if !res.OK || f.written() != 1 {
		t.Fatalf("write with a broken audit dir: %+v", res)
	}
}

func counter(t *testing.T, d *Door, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := d.writes.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestParseJSONNeverPanics(t *testing.T) {
	for _, spec := range newFake().specs {
		for _, in := range []string{``, `null`, `[]`, `{}`, `1e999`, `-0`, `"`, `true false`, `18446744073709551616`, `0x10`, `1`, `0`} {
			_, _ = ParseJSON(spec, json.RawMessage(in))
		}
	}
	if v, err := ParseJSON(&mapping.Spec{Name: "b", Type: mapping.TypeBool}, json.RawMessage(`1`)); err != nil || !v.Bool {
		t.Fatalf("bool from 1: %+v %v", v, err)
	}
	if _, err := ParseJSON(&mapping.Spec{Name: "b", Type: mapping.TypeBool}, json.RawMessage(`2`)); err == nil {
		t.Fatal("bool from 2 accepted")
	}
	if !errors.Is(fmt.Errorf("%w", southbound.ErrOffline), southbound.ErrOffline) {
		t.Fatal("unreachable")
	}
}

// TestRateLimit: network sources get a burst of rateBurst attempts per
// source and per tag, refused or not, then rateRefill per second; the CLI
// is not limited.
func TestRateLimit(t *testing.T) {
	on := true
	f := newFake()
	c := &clock{t: time.Unix(1000, 0)}
	d := New(f, Options{Writes: &on, Allow: func(Source) bool { return true }, Now: c.now})
	ctx := context.Background()
	a := Source{Kind: FromLocal, Name: "a"}
	for i := range rateBurst {
		if res := d.Write(ctx, Request{Device: "dev", Tag: "ro", Text: "1", Source: a}); res.Reason != NotWritable {
			t.Fatalf("attempt %d: %+v, want not_writable", i, res)
		}
	}
	res := d.Write(ctx, Request{Device: "dev", Tag: "run", Text: "on", Source: a})
	if res.Reason != TooSoon || !strings.Contains(res.Message, "rate limit") || f.written() != 0 {
		t.Fatalf("past the burst: %+v (%d written), want too_soon by the rate limit", res, f.written())
	}
	// Another source may still write another tag; but the tag "ro" is spent.
	b := Source{Kind: FromLocal, Name: "b"}
	if res := d.Write(ctx, Request{Device: "dev", Tag: "run", Text: "on", Source: b}); !res.OK {
		t.Fatalf("source b: %+v", res)
	}
	if res := d.Write(ctx, Request{Device: "dev", Tag: "ro", Text: "1", Source: b}); res.Reason != TooSoon {
		t.Fatalf("spent tag from source b: %+v, want too_soon", res)
	}
	for range 3 * rateBurst {
		if res := d.Write(ctx, Request{Device: "dev", Tag: "ro", Text: "1", Source: Source{Kind: FromCLI}}); res.Reason != NotWritable {
			t.Fatalf("the CLI was limited: %+v", res)
		}
	}
	c.add(time.Second)
	if res := d.Write(ctx, Request{Device: "dev", Tag: "name", Text: "x", Source: a}); !res.OK {
		t.Fatalf("a second later: %+v, want a refilled token", res)
	}
}
