package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
)

// writeDevices writes an edged.toml with the given device tables.
func writeDevices(t *testing.T, devices string) string {
	t.Helper()
	// Its own data_dir (relative: next to the file), so that no daemon of
	// another test (default /var/lib/edged) answers edged write, and plan
	// --live saves nothing outside the test.
	return writeConfig(t, t.TempDir(), "[gateway]\nid = \"gw\"\ndata_dir = \"data\"\n\n"+devices)
}

func startSim(t *testing.T) *modbussim.Server {
	t.Helper()
	s := modbussim.New()
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const planTags = `
  [[device.tag]]
  name = "a"
  area = "holding"
  address = 0
  type = "uint16"
  [[device.tag]]
  name = "b"
  area = "holding"
  address = 5
  type = "float32"
  [[device.tag]]
  name = "c"
  area = "holding"
  address = 10
  type = "uint16"
  [[device.tag]]
  name = "run"
  area = "coil"
  address = 3
  type = "bool"
`

func TestPlanStaticAndLive(t *testing.T) {
	sim := startSim(t)
	sim.Reject(modbussim.Holding, 5, 6) // b is a hole
	path := writeDevices(t, fmt.Sprintf(`
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
%s
[[device]]
name = "rtu1"
driver = "modbus-rtu"
port = "/dev/does-not-exist"
baud = 9600
%s`, sim.Addr(), planTags, planTags))
	code, out, errOut := runCLI("plan", "-c", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"device plc (modbus-tcp", "1 (read coil)", "3 (read holding_register)  0      11     a b c",
		"2 request(s) per poll for 4 tag(s)", "device rtu1 (modbus-rtu /dev/does-not-exist 9600 8E1",
		"wire time per poll at 9600 8E1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	// 2 requests at 9600 8E1: coil (8+6 chars) and 11 registers (8+27 chars)
	// plus 4 silences of 3.5 chars: 63 chars × 11 bits / 9600 ≈ 72.2ms.
	if m := regexp.MustCompile(`wire time per poll at 9600 8E1: (72\.\dms)`).FindStringSubmatch(out); m == nil {
		t.Errorf("wire time not ≈72ms:\n%s", out)
	}
	code, out, errOut = runCLI("plan", "-c", path, "--live", "plc")
	if code != exitOK {
		t.Fatalf("live: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"unreadable: tag b (holding_register 5)", "exception 02", "learned: no read across holding_register 4|5", "3 request(s) per poll"} {
		if !strings.Contains(out, want) {
			t.Errorf("live plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "rtu1") {
		t.Errorf("plan for one device showed others:\n%s", out)
	}
}

func TestPlanBusMismatchIsAConfigError(t *testing.T) {
	path := writeDevices(t, `
[[device]]
name = "a"
driver = "modbus-rtu"
port = "/dev/ttyUSB9"
baud = 9600
`+planTags+`
[[device]]
name = "b"
driver = "modbus-rtu"
port = "/dev/ttyUSB9"
baud = 19200
unit_id = 2
`+planTags)
	code, _, errOut := runCLI("plan", "-c", path)
	if code != exitConfig || !strings.Contains(errOut, "must have the same baud") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestWriteCommand(t *testing.T) {
	sim := startSim(t)
	sim.SetHolding(20, 0x8000)
	path := writeDevices(t, fmt.Sprintf(`
[[device]]
name = "drive"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
  [[device.tag]]
  name = "speed"
  area = "holding"
  address = 10
  type = "float32"
  order = "CDAB"
  writable = true
  max = 3000
  unit = "rpm"
  [[device.tag]]
  name = "enable"
  area = "holding"
  address = 20
  type = "bool"
  bit = 1
  writable = true
  [[device.tag]]
  name = "fixed"
  area = "holding"
  address = 30
  type = "uint16"
`, sim.Addr()))
	code, out, errOut := runCLI("write", "-c", path, "drive", "speed", "1450.5")
	if code != exitOK || !strings.Contains(out, "drive/speed = 1450.5 rpm") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if got := sim.Holding(10, 2); got[0] != 0x5000 || got[1] != 0x44B5 {
		t.Errorf("registers %04x, want 1450.5 word-swapped", got)
	}
	code, out, errOut = runCLI("write", "-c", path, "drive", "enable", "on")
	if code != exitOK || !strings.Contains(out, "drive/enable = true") || sim.Holding(20, 1)[0] != 0x8002 {
		t.Fatalf("bit write: exit %d: %s %s, register %04x", code, out, errOut, sim.Holding(20, 1)[0])
	}
	writes := sim.Writes()
	for _, c := range [][]string{{"speed", "5000"}, {"fixed", "1"}} {
		code, _, errOut = runCLI("write", "-c", path, "drive", c[0], c[1])
		if code != exitUsage || !strings.Contains(errOut, "write refused") {
			t.Errorf("write %v: exit %d: %s", c, code, errOut)
		}
	}
	if sim.Writes() != writes {
		t.Error("a refused write reached the device")
	}
}

// TestRestartStartsFromSavedPlan: `edged run` saves what a device with a
// hole taught the planner under data_dir; `edged plan` says the saved
// plan is used; the next `edged run` polls with it at once, without one
// refused read.
func TestRestartStartsFromSavedPlan(t *testing.T) {
	sim := startSim(t)
	sim.Reject(modbussim.Holding, 5, 6) // b is a hole
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	config := func(interval string) string {
		return writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = "gw-plan"
data_dir = %q
[broker]
listen = "127.0.0.1:0"
[metrics]
disabled = true
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = %q
%s`, dataDir, sim.Addr(), interval, planTags))
	}
	path := config("1h")
	saved := filepath.Join(dataDir, "modbus", "plc.plan.json")
	if code, out, errOut := runCLI("plan", "-c", path); code != exitOK || !strings.Contains(out, "saved learned plan: none yet ("+saved+")") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}

	// The first run learns (2 planned reads, 1 refused and split, learned
	// when the next poll refuses it again: polls every 50ms until saved);
	// the second, one poll, reads the 3 learned ones. The poll interval is
	// not part of what a saved plan depends on.
	runUntil := func(interval string, until *regexp.Regexp) uint64 {
		config(interval)
		before := sim.Requests()
		cmd, out := startRun(t, path)
		out.wait(t, 15*time.Second, until)
		n := sim.Requests() - before
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("edged run: %v\n%s", err, strings.Join(out.lines, "\n"))
		}
		return n
	}
	if n := runUntil("50ms", regexp.MustCompile(`learned plan saved.*device=plc`)); n <= 3 {
		t.Fatalf("first run sent %d requests, want a bisecting poll", n)
	}
	code, out, errOut := runCLI("plan", "-c", path)
	if code != exitOK || !strings.Contains(out, "saved learned plan: "+saved+", used at start: 3 request(s) per poll, 1 unreadable tag(s)") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if n := runUntil("1h", regexp.MustCompile(`device online.*device=plc`)); n != 3 {
		t.Errorf("after a restart the first poll sent %d requests, want the 3 learned reads", n)
	}
}

// TestPlanLivePrintsValuesAndSavesThePlan: `edged plan --live` prints the
// values it read (as `telegraf --test` does), saves what the device taught
// the planner where `edged run` saves it, and starts from that plan the
// next time: its first poll then sends only the learned reads.
func TestPlanLivePrintsValuesAndSavesThePlan(t *testing.T) {
	sim := startSim(t)
	sim.Reject(modbussim.Holding, 5, 6) // b is a hole
	sim.SetHolding(0, 42)
	sim.SetHolding(10, 7)
	sim.SetCoil(3, true)
	path := writeDevices(t, fmt.Sprintf(`
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
%s`, sim.Addr(), planTags))
	saved := filepath.Join(filepath.Dir(path), "data", "modbus", "plc.plan.json")
	code, out, errOut := runCLI("plan", "-c", path, "--live")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, re := range []string{
		`values read \(last poll\):`, `\n    a += 42\n`, `\n    b +\(bad: .*exception 02`, `\n    c += 7\n`, `\n    run += true\n`,
		`saved learned plan: ` + regexp.QuoteMeta(saved) + `, used at start: 3 request\(s\) per poll, 1 unreadable tag\(s\)`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("plan --live output lacks %s:\n%s", re, out)
		}
	}
	before := sim.Requests()
	if code, out, errOut := runCLI("plan", "-c", path, "--live"); code != exitOK || !strings.Contains(out, "a    = 42") {
		t.Fatalf("second --live: exit %d: %s%s", code, out, errOut)
	}
	if n := sim.Requests() - before; n != 3 {
		t.Errorf("the second --live sent %d requests, want the 3 learned reads of one poll", n)
	}
}
