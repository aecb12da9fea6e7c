package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// edgedBin is the binary built once for the end-to-end tests.
var edgedBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edged-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	edgedBin = filepath.Join(dir, "edged")
	out, err := exec.Command("go", "build", "-o", edgedBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build edged: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "edged ") || !strings.Contains(out, "commit") {
		t.Fatalf("version: code %d, %q", code, out)
	}
	bin, err := exec.Command(edgedBin, "version").Output()
	if err != nil || !strings.Contains(string(bin), "edged dev") {
		t.Fatalf("binary version: %q %v", bin, err)
	}
}

func TestUnknownCommandAndNoArgs(t *testing.T) {
	if code, _, errOut := runCLI("frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) || !strings.Contains(errOut, "edged validate") {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(); code != exitUsage || !strings.Contains(errOut, "Usage") {
		t.Fatalf("no args: %d %q", code, errOut)
	}
}

func TestValidateShippedExample(t *testing.T) {
	code, out, errOut := runCLI("validate", "-c", "../../configs/examples/edged.toml")
	if code != exitOK {
		t.Fatalf("shipped example does not validate (exit %d):\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "OK") || !strings.Contains(out, "device(s)") {
		t.Fatalf("validate output %q", out)
	}
}

func TestValidateListsEveryError(t *testing.T) {
	dir := t.TempDir()
	cfg := `[gateway]
id = "gw"

[[device]]
name = "m1"
driver = "modbus-tcp"
address = "127.0.0.1:502"
pol_interval = "1s"

  [[device.tag]]
  name = "t"
  area = "holding_register"
  address = 0
  type = "float32"

[[device]]
name = "m2"
driver = "modbus-tcp"
address = "127.0.0.1:502"
timeout = "soon"
`
	path := writeConfig(t, dir, cfg)
	code, _, errOut := runCLI("validate", "-c", path)
	if code != exitConfig {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, errOut)
	}
	for _, want := range []string{
		path + ":8:", "pol_interval", "poll_interval", // unknown key with line and suggestion
		path + ":20:", "timeout", // bad duration in the second device, also reported
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// lineWriter collects a child's output and lets a test wait for a line.
type lineWriter struct {
	mu    sync.Mutex
	lines []string
	buf   bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			break
		}
		w.lines = append(w.lines, strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}

func (w *lineWriter) wait(t *testing.T, timeout time.Duration, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, l := range w.lines {
			if m := re.FindStringSubmatch(l); m != nil {
				w.mu.Unlock()
				return m
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("no line matching %s within %v; output:\n%s", re, timeout, strings.Join(w.lines, "\n"))
	return nil
}

// mosquittoSub runs Debian's mosquitto_sub as an independent subscriber.
// make test installs it (scripts/test-deps.sh); a missing one is a failure.
func mosquittoSub(t *testing.T, addr string, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatalf("mosquitto_sub not found: run `make test-deps` (Debian package mosquitto-clients): %v", err)
	}
	host, port := hostOf(addr), portOf(addr)
	return exec.Command(bin, append([]string{"-h", host, "-p", port}, args...)...)
}

func TestDemoPublishesLiveValuesToAnIndependentSubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := &lineWriter{}
	demo := exec.CommandContext(ctx, edgedBin, "demo", "--listen", "127.0.0.1:0", "--plain", "--for", "40s")
	demo.Stdout, demo.Stderr = out, out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = demo.Process.Kill(); _ = demo.Wait() })
	m := out.wait(t, 20*time.Second, regexp.MustCompile(`MQTT broker on (127\.0\.0\.1:\d+)`))
	addr := m[1]

	// -C 40: exit after 40 messages; -v prints "topic payload".
	sub := mosquittoSub(t, addr, "-t", "edged/#", "-v", "-C", "40", "-W", "30")
	subOut, err := sub.Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s\ndemo output:\n%s", err, subOut, strings.Join(out.lines, "\n"))
	}
	seen := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(subOut))
	for sc.Scan() {
		topic, body, _ := strings.Cut(sc.Text(), " ")
		var p map[string]any
		if json.Unmarshal([]byte(body), &p) == nil {
			seen[topic] = p
		} else {
			seen[topic] = map[string]any{"raw": body}
		}
	}
	if seen["edged/demo/status"]["raw"] != "online" {
		t.Errorf("gateway status: %v", seen["edged/demo/status"])
	}
	for _, topic := range []string{"edged/demo/plc1/tank_level", "edged/demo/plc1/flow_rate", "edged/demo/plc1/cycle_count", "edged/demo/plc1/pump_running", "edged/demo/meter1/voltage_l1"} {
		p, ok := seen[topic]
		if !ok {
			t.Errorf("no message on %s; got topics %v", topic, keys(seen))
			continue
		}
		if p["q"] != "good" {
			t.Errorf("%s: %v", topic, p)
		}
	}
	if v, ok := seen["edged/demo/plc1/flow_rate"]["v"].(float64); !ok || v < 9 || v > 16 {
		t.Errorf("word-swapped flow_rate decoded to %v, want 9.5…15.5", seen["edged/demo/plc1/flow_rate"]["v"])
	}
	if v, ok := seen["edged/demo/meter1/voltage_l1"]["v"].(float64); !ok || v < 227 || v > 233 {
		t.Errorf("meter voltage decoded to %v, want ≈230", seen["edged/demo/meter1/voltage_l1"]["v"])
	}
	if s, _ := seen["edged/demo/plc1/serial_number"]["v"].(string); s != "EDGED-DEMO-0001" {
		t.Errorf("serial_number %q", s)
	}
	// The terminal view shows live values too.
	out.wait(t, 10*time.Second, regexp.MustCompile(`tank_level\s+\d+\.\d+ %\s+good`))

	// SIGINT: graceful stop with a summary.
	_ = demo.Process.Signal(os.Interrupt)
	out.wait(t, 15*time.Second, regexp.MustCompile(`edged demo stopped: \d+ samples read, \d+ messages published`))
}

// deadDevice is a [[device]] at a closed port: edged starts, reports it
// offline and keeps running, for tests of everything around the devices.
const deadDevice = `[[device]]
name = "dead"
driver = "modbus-tcp"
address = "127.0.0.1:1"
poll_interval = "100ms"
timeout = "100ms"
  [[device.tag]]
  name = "x"
  area = "holding_register"
  address = 0
  type = "uint16"
`

func TestRunStopsGracefullyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	// The device points at a closed port: edged must still start, report the
	// device offline, and stop cleanly.
	cfg := `[gateway]
id = "gw-term"
[broker]
listen = "127.0.0.1:0"
` + deadDevice
	path := writeConfig(t, dir, cfg)
	cmd, out := startRun(t, path)
	m := out.wait(t, 15*time.Second, regexp.MustCompile(`local broker listening.*address=(127\.0\.0\.1:\d+)`))
	sub := mosquittoSub(t, m[1], "-t", "edged/gw-term/#", "-v", "-W", "20")
	subOut := &lineWriter{}
	sub.Stdout = subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	subOut.wait(t, 15*time.Second, regexp.MustCompile(`^edged/gw-term/dead/_status .*"offline"`))
	subOut.wait(t, 15*time.Second, regexp.MustCompile(`^edged/gw-term/dead/x .*"q":"bad"`))

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	subOut.wait(t, 15*time.Second, regexp.MustCompile(`^edged/gw-term/status offline$`))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("edged run exited with %v after SIGTERM; output:\n%s", err, strings.Join(out.lines, "\n"))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("edged run did not exit within 15 s of SIGTERM")
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestValidateRefusesMismatchedSerialBus: the port's line settings and
// unit IDs are checked in the same run as everything else (here an
// unknown key), under the error-count header, each at its file:line.
func TestValidateRefusesMismatchedSerialBus(t *testing.T) {
	dir := t.TempDir()
	cfg := `[gateway]
id = "gw"
log_levle = "info"
[[device]]
name = "a"
driver = "modbus-rtu"
port = "/dev/ttyUSB0"
baud = 9600
  [[device.tag]]
  name = "x"
  area = "holding_register"
  address = 0
  type = "uint16"
[[device]]
name = "b"
driver = "modbus-rtu"
port = "/dev/ttyUSB0"
baud = 19200
  [[device.tag]]
  name = "x"
  area = "holding_register"
  address = 0
  type = "uint16"
`
	path := writeConfig(t, dir, cfg)
	code, _, errOut := runCLI("validate", "-c", path)
	if code != exitConfig {
		t.Errorf("exit %d, want %d", code, exitConfig)
	}
	for _, w := range []string{
		path + ": 3 error(s):\n",
		path + ":3: gateway.log_levle: unknown key",
		path + ":14: device[1].unit_id: device \"b\": unit_id 1 on port /dev/ttyUSB0 is already device \"a\"",
		path + ":18: device[1].baud: device \"b\": port /dev/ttyUSB0 is 9600 8E1 for device \"a\" but 19200 8E1 here: all devices on one port must have the same baud",
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
}

// writeConfig writes text as dir/edged.toml and returns its path.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "edged.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startRun starts the built binary as `edged run -c path` with env added
// to the environment; its output goes to the returned lineWriter, and it
// is killed at the end of the test if still running.
func startRun(t *testing.T, path string, env ...string) (*exec.Cmd, *lineWriter) {
	t.Helper()
	out := &lineWriter{}
	cmd := exec.Command(edgedBin, "run", "-c", path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, out
}
