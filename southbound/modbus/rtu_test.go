package modbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
)

// ptyPair starts a socat pty pair for the test; a missing socat fails the
// test loudly (never skips).
func ptyPair(t testing.TB) *modbussim.PtyPair {
	t.Helper()
	p, err := modbussim.StartPtyPair(t.TempDir())
	if errors.Is(err, modbussim.ErrNoSocat) {
		t.Fatalf("%v: the RTU tests need socat; run `make test-deps`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func serveRTU(t testing.TB, sim *modbussim.Server, path string, opts modbussim.RTUOptions) *modbussim.RTUResponder {
	t.Helper()
	r, err := sim.ServeRTU(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// rtuDevice decodes and initialises one modbus-rtu [[device]] table.
func rtuDevice(t testing.TB, name, port string, unit int, extra, tags string) *RTU {
	t.Helper()
	for _, def := range []string{`poll_interval = "20ms"`, `timeout = "200ms"`} {
		if !strings.Contains(extra, strings.Fields(def)[0]+" ") {
			extra += "\n" + def
		}
	}
	doc := fmt.Sprintf("[[device]]\nname = %q\ndriver = \"modbus-rtu\"\nport = %q\nunit_id = %d\n%s\n%s",
		name, port, unit, extra, tags)
	var file struct {
		Device []toml.Primitive `toml:"device"`
	}
	md, err := toml.Decode(doc, &file)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	d := NewRTU()
	if err := md.PrimitiveDecode(file.Device[0], d); err != nil {
		t.Fatalf("decode device: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("undecoded keys: %v", und)
	}
	if err := d.Init(); err != nil {
		t.Fatalf("init: %v", err)
	}
	d.minBackoff, d.maxBackoff = 20*time.Millisecond, 500*time.Millisecond
	d.Provision(host.Env{Host: testHost})
	return d
}

// testHost holds the lanes of the RTU tests, as a gateway's host would:
// devices naming one port share its lane.
var testHost = host.New()

func busStat(port string) (BusStat, bool) {
	for _, b := range BusStats(testHost) {
		if b.Port == filepath.Clean(port) {
			return b, true
		}
	}
	return BusStat{}, false
}

// TestRTUEndToEnd: two slaves on one pty bus answered by the in-repo
// responder; every type decodes, a hole is learned around, and the bus
// reports its counters.
func TestRTUEndToEnd(t *testing.T) {
	p := ptyPair(t)
	sim := modbussim.New()
	fillValues(sim)
	sim.Reject(modbussim.Holding, 8, 8) // a hole between f_cdab/neg and serial
	serveRTU(t, sim, p.B, modbussim.RTUOptions{Units: []byte{1, 2}})
	s := newSink()
	a := rtuDevice(t, "a", p.A, 1, "", valueTags)
	b := rtuDevice(t, "b", p.A, 2, "", tagToml("level", "input", 7, "uint32"))
	run(t, a, s)
	run(t, b, s)
	testwait.For(t, testwait.Timeout, "5 polls of each", func() bool { return s.pollCount("a") >= 5 && s.pollCount("b") >= 5 })
	for _, smp := range s.samples("a") {
		if smp.Quality != mapping.Good {
			t.Errorf("%s: quality %v err %v", smp.Tag.Name, smp.Quality, smp.Err)
		}
		switch smp.Tag.Name {
		case "f_cdab":
			if smp.Value.Float != -0.125 {
				t.Errorf("f_cdab = %v", smp.Value)
			}
		case "serial":
			if smp.Value.Str != "EDGE-01" {
				t.Errorf("serial = %v", smp.Value)
			}
		case "door", "pump":
			if !smp.Value.Bool {
				t.Errorf("%s = %v", smp.Tag.Name, smp.Value)
			}
		}
	}
	if got := s.samples("b"); len(got) != 1 || got[0].Value.Uint != 3_000_000_000 {
		t.Errorf("b = %+v", got)
	}
	if l := a.Learned(); l.Changes == 0 || len(l.Cuts) == 0 {
		t.Errorf("the hole at holding 8 was not learned: %+v", l)
	}
	st, ok := busStat(p.A)
	if !ok || st.Transactions == 0 || st.Busy <= 0 || st.Utilisation <= 0 || st.Exceptions == 0 || len(st.Devices) != 2 || st.Mode != "9600 8E1" {
		t.Errorf("bus stats %+v", st)
	}
}

// TestRTUPymodbus talks to an independent implementation: Debian's
// python3-pymodbus serving RTU on the other end of the pty pair.
func TestRTUPymodbus(t *testing.T) {
	if out, err := exec.Command("/usr/bin/python3", "-c", "import pymodbus, serial, serial_asyncio").CombinedOutput(); err != nil {
		t.Fatalf("python3-pymodbus (with python3-serial, python3-serial-asyncio) is missing (%v: %s): run `make test-deps`", err, out)
	}
	p := ptyPair(t)
	script := filepath.Join(t.TempDir(), "slave.py")
	if err := os.WriteFile(script, []byte(pymodbusSlave), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", script, p.B)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d := rtuDevice(t, "py", p.A, 7, `timeout = "500ms"`,
		tagToml("f", "holding", 10, "float32")+ // 0x4148 0x0000 = 12.5
			tagToml("word", "holding", 12, "uint16", "writable = true")+
			tagToml("in", "input", 3, "int16")+
			tagToml("c", "coil", 2, "bool", "writable = true"))
	s := newSink()
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "good values from pymodbus", func() bool {
		got := s.samples("py")
		return len(got) == 4 && got[0].Quality == mapping.Good && got[0].Value.Float == 12.5
	})
	got := s.samples("py")
	if got[2].Value.Int != -2 || !got[3].Value.Bool {
		t.Errorf("pymodbus values %+v\n%s", got, out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Write(ctx, "word", mapping.Value{Kind: mapping.KindUint, Uint: 4242}); err != nil {
		t.Fatalf("write fc6 to pymodbus: %v\n%s", err, out.String())
	}
	if err := d.Write(ctx, "c", mapping.Value{Kind: mapping.KindBool, Bool: false}); err != nil {
		t.Fatalf("write fc5 to pymodbus: %v", err)
	}
	testwait.For(t, testwait.Timeout, "written values read back", func() bool {
		got := s.samples("py")
		return got[1].Value.Uint == 4242 && !got[3].Value.Bool && got[3].Quality == mapping.Good
	})
}

const pymodbusSlave = `
import sys, logging
from pymodbus.server import StartSerialServer
from pymodbus.datastore import ModbusSlaveContext, ModbusServerContext, ModbusSequentialDataBlock
from pymodbus.transaction import ModbusRtuFramer
hr = [0]*100; hr[10] = 0x4148; hr[11] = 0; hr[12] = 7
ir = [0]*100; ir[3] = 0xFFFE
co = [False]*100; co[2] = True
slave = ModbusSlaveContext(hr=ModbusSequentialDataBlock(0, hr), ir=ModbusSequentialDataBlock(0, ir),
                           co=ModbusSequentialDataBlock(0, co), di=ModbusSequentialDataBlock(0, [False]*100), zero_mode=True)
ctx = ModbusServerContext(slaves={7: slave}, single=False)
StartSerialServer(context=ctx, framer=ModbusRtuFramer, port=sys.argv[1], baudrate=9600, timeout=0.005)
`

// TestRTUDeadSlaveOthersKeepRate: three slaves on one bus, one silent; the
// other two keep at least 90% of their configured poll rate.
func TestRTUDeadSlaveOthersKeepRate(t *testing.T) {
	p := ptyPair(t)
	sim := modbussim.New()
	serveRTU(t, sim, p.B, modbussim.RTUOptions{Units: []byte{1, 2}}) // unit 3 is dead
	s := newSink()
	for unit := 1; unit <= 3; unit++ {
		d := rtuDevice(t, fmt.Sprintf("u%d", unit), p.A, unit, `poll_interval = "50ms"`+"\n"+`timeout = "100ms"`,
			tagToml("x", "holding", 0, "uint16"))
		d.minBackoff, d.maxBackoff = time.Second, 4*time.Second
		run(t, d, s)
	}
	// The yardstick: a device alone on a bus of its own, polled at the same
	// rate in the same window, so that a loaded machine slows both alike
	// (a fixed rate is more than a busy 2-core CI machine can keep).
	pc := ptyPair(t)
	ctl := modbussim.New()
	serveRTU(t, ctl, pc.B, modbussim.RTUOptions{Units: []byte{1}})
	c := rtuDevice(t, "control", pc.A, 1, `poll_interval = "50ms"`+"\n"+`timeout = "100ms"`, tagToml("x", "holding", 0, "uint16"))
	run(t, c, s)
	testwait.For(t, testwait.Timeout, "u3 offline", func() bool { st, _ := s.state("u3"); return st == southbound.StateOffline })
	testwait.For(t, testwait.Timeout, "control online", func() bool { st, _ := s.state("control"); return st == southbound.StateOnline })
	// Long enough that the dead slave's backoff probes (100 ms each, at
	// 1 s, 2 s, 4 s) cost the others a few polls of over a hundred.
	const window = 6 * time.Second
	b1, b2, bc, t0 := s.pollCount("u1"), s.pollCount("u2"), s.pollCount("control"), time.Now()
	testwait.For(t, testwait.Timeout, "the window", func() bool { return time.Since(t0) >= window })
	el := time.Since(t0)
	n1, n2, nc := s.pollCount("u1")-b1, s.pollCount("u2")-b2, s.pollCount("control")-bc
	expected := min(float64(el)/float64(50*time.Millisecond), float64(nc))
	for name, n := range map[string]int{"u1": n1, "u2": n2} {
		if float64(n) < 0.9*expected {
			t.Errorf("%s polled %d times in %v, want ≥ 90%% of %.0f (the control device alone on its bus: %d)", name, n, el, expected, nc)
		}
	}
	if st, _ := s.state("u3"); st != southbound.StateOffline {
		t.Errorf("u3 state %v", st)
	}
	st, _ := busStat(p.A)
	if st.Timeouts == 0 || st.Timeouts > 20 {
		t.Errorf("%d timeouts: the dead slave should be probed with a growing backoff", st.Timeouts)
	}
}

// TestRTUReconnect: the port disappears (socat killed, as a USB adapter
// unplugged) and comes back at the same path; the device goes offline and
// back online by itself.
func TestRTUReconnect(t *testing.T) {
	dir := t.TempDir()
	p, err := modbussim.StartPtyPair(dir)
	if err != nil {
		t.Fatalf("%v (run `make test-deps`)", err)
	}
	sim := modbussim.New()
	sim.SetHolding(0, 1)
	resp, err := sim.ServeRTU(p.B, modbussim.RTUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := rtuDevice(t, "plc", p.A, 1, "", tagToml("x", "holding", 0, "uint16"))
	s := newSink()
	run(t, d, s)
	testwait.For(t, testwait.Timeout, "online", func() bool { st, _ := s.state("plc"); return st == southbound.StateOnline })
	resp.Close()
	p.Close()
	testwait.For(t, testwait.Timeout, "offline", func() bool { st, _ := s.state("plc"); return st == southbound.StateOffline })
	sim.SetHolding(0, 2)
	p2, err := modbussim.StartPtyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	serveRTU(t, sim, p2.B, modbussim.RTUOptions{})
	testwait.For(t, testwait.Timeout, "online again with the new value", func() bool {
		st, _ := s.state("plc")
		got := s.samples("plc")
		return st == southbound.StateOnline && len(got) == 1 && got[0].Value.Uint == 2
	})
	if st, _ := busStat(p.A); st.Opens < 2 {
		t.Errorf("port opened %d times, want a reopen", st.Opens)
	}
}

// TestRTUBusSettingsMustAgree: devices on one port with different line
// settings are a config error (CheckBuses) and refused at Start.
func TestRTUBusSettingsMustAgree(t *testing.T) {
	p := ptyPair(t)
	a := rtuDevice(t, "a", p.A, 1, "baud = 9600", tagToml("x", "holding", 0, "uint16"))
	b := rtuDevice(t, "b", p.A, 2, "baud = 19200", tagToml("x", "holding", 0, "uint16"))
	c := rtuDevice(t, "c", p.A, 1, "", tagToml("x", "holding", 0, "uint16"))
	err := CheckBuses([]southbound.Driver{a, b, c})
	if err == nil || !strings.Contains(err.Error(), "must have the same baud") || !strings.Contains(err.Error(), "unit_id 1 on port") {
		t.Errorf("CheckBuses: %v", err)
	}
	s := newSink()
	run(t, a, s)
	if err := b.Start(context.Background(), s); err == nil || !strings.Contains(err.Error(), "9600 8E1") {
		t.Errorf("Start with other settings: %v", err)
		b.Stop(context.Background())
	}
}
