package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/southbound/door"
)

// shortDir is a data dir with a short path: a Unix socket path has at
// most 107 bytes, and t.TempDir's can be long.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "edw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// scrape returns the sum of the values of the series whose line starts
// with prefix (a metric name with some of its labels); there must be one.
func scrape(t *testing.T, addr, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			found = true
			f, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			sum += f
		}
	}
	if !found {
		t.Fatalf("no series %s… on /metrics", prefix)
	}
	return sum
}

func auditLines(t *testing.T, dataDir string) []door.Line {
	t.Helper()
	f, err := os.Open(filepath.Join(control.AuditDir(dataDir), door.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []door.Line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l door.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// startDaemon runs `edged run` and waits for its control socket and
// metrics endpoint; it returns the daemon, its output and the metrics
// address.
func startDaemon(t *testing.T, path string, online int) (*lineWriterCmd, string) {
	t.Helper()
	cmd, out := startRun(t, path)
	out.wait(t, 30*time.Second, regexp.MustCompile(`control socket ready`))
	m := out.wait(t, 30*time.Second, regexp.MustCompile(`metrics listening.* address=(\S+)`))
	deadline := time.Now().Add(30 * time.Second)
	for out.count(regexp.MustCompile(`device online`)) < online {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d devices online; output:\n%s", online, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &lineWriterCmd{cmd: cmd, out: out}, m[1]
}

// The bug of issue 10: with the daemon polling an RS-485 bus, edged write
// opened the port a second time and both sides' frames were corrupted.
// Now 20 writes during polling go through the daemon's bus lane: each
// lands once on the wire, no damaged frame or error on either side, and
// the other slaves keep ≥ 90% of the poll rate they had just before. Then two writes inside
// write_interval: the second is refused and never reaches the wire.
func TestWriteThroughDaemonOnRTUBus(t *testing.T) {
	pty, err := modbussim.StartPtyPair(t.TempDir())
	if errors.Is(err, modbussim.ErrNoSocat) {
		t.Fatalf("%v: run `make test-deps`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pty.Close() })
	sim := modbussim.New()
	resp, err := sim.ServeRTU(pty.B, modbussim.RTUOptions{Units: []byte{1, 2, 3}, Baud: 19200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Close() })
	data := shortDir(t)
	dev := func(name string, unit int, tags string) string {
		return fmt.Sprintf(`
[[device]]
name = %q
driver = "modbus-rtu"
port = %q
baud = 19200
unit_id = %d
poll_interval = "100ms"
timeout = "2s"
%s`, name, pty.A, unit, tags)
	}
	tag := func(name string, addr int, extra string) string {
		return fmt.Sprintf("  [[device.tag]]\n  name = %q\n  area = \"holding\"\n  address = %d\n  type = \"uint16\"\n%s\n", name, addr, extra)
	}
	path := writeConfig(t, t.TempDir(), fmt.Sprintf("[gateway]\nid = \"gw\"\ndata_dir = %q\n[broker]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n", data)+
		dev("s1", 1, tag("level", 10, "  writable = true\n")+tag("setpoint", 40, "  writable = true\n  write_interval = \"1h\"\n"))+
		dev("s2", 2, tag("t", 20, ""))+dev("s3", 3, tag("t", 30, ""))+
		// A control off the bus: what the daemon manages to poll on this
		// machine at this moment, whatever the load of the other tests.
		fmt.Sprintf("\n[[device]]\nname = \"control\"\ndriver = \"modbus-tcp\"\naddress = %q\npoll_interval = \"100ms\"\ntimeout = \"2s\"\n%s", startSim(t).Addr(), tag("t", 0, "")))
	d, metrics := startDaemon(t, path, 4)

	polls := func() (float64, float64, float64) {
		return scrape(t, metrics, `edged_device_polls_total{device="s2"}`), scrape(t, metrics, `edged_device_polls_total{device="s3"}`),
			scrape(t, metrics, `edged_device_polls_total{device="control"}`)
	}
	// The reference: the same slaves and the control, in the same run,
	// just before the writes, for about as long as the writes take (20
	// polls of the control: 2 s). A loaded machine slows the pty bus
	// (socat, the simulator) more than the TCP control, so the slaves'
	// own rate without writes is what they must keep, not the control's
	// nor the configured one.
	b2, b3, bc := polls()
	b0 := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, _, c := polls(); c >= bc+20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control made fewer than 20 polls in 60 s:\n%s", d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p2, p3, pc := polls()
	baseline := time.Since(b0)
	t0 := time.Now()
	const n = 20
	for i := range n {
		code, out, errOut := runCLI("write", "-c", path, "s1", "level", strconv.Itoa(100+i))
		if code != exitOK || !strings.Contains(out, fmt.Sprintf("s1/level = %d (written %d", 100+i, 100+i)) || !strings.Contains(out, "read back") ||
			!strings.Contains(out, "by the running daemon") {
			t.Fatalf("write %d: exit %d: %s %s", i, code, out, errOut)
		}
	}
	elapsed := time.Since(t0)
	q2, q3, qc := polls()

	// Every write once on the wire, to unit 1, in order.
	var got []string
	for _, w := range sim.WriteLog() {
		got = append(got, fmt.Sprintf("unit %d fc %d %x", w.Unit, w.Function, w.Data))
	}
	if len(got) != n {
		t.Fatalf("%d writes on the wire, want %d: %v", len(got), n, got)
	}
	for i, w := range sim.WriteLog() {
		if w.Unit != 1 || w.Function != 6 || binary.BigEndian.Uint16(w.Data) != 10 || binary.BigEndian.Uint16(w.Data[2:]) != uint16(100+i) {
			t.Fatalf("write %d on the wire: %s; all: %v", i, got[i], got)
		}
	}
	// No damage on either side: no torn or foreign frame at the slaves, no
	// CRC, framing (a wrong unit's answer) or exception error at the
	// master. (A timeout would not be damage: a starved machine can cause
	// one; they are logged.)
	if dmg := resp.Damaged(); dmg != 0 {
		t.Errorf("the simulator saw %d damaged frames", dmg)
	}
	for _, kind := range []string{"crc", "frame", "exception", "port"} {
		if e := scrape(t, metrics, `edged_serial_bus_errors_total{kind="`+kind+`"`); e != 0 {
			t.Errorf("edged_serial_bus_errors_total{kind=%q} = %v", kind, e)
		}
	}
	for _, kind := range []string{"exception", "other"} {
		for _, dev := range []string{"s1", "s2", "s3"} {
			if e := scrape(t, metrics, `edged_device_errors_total{device="`+dev+`",kind="`+kind+`"}`); e != 0 {
				t.Errorf("edged_device_errors_total{device=%q,kind=%q} = %v", dev, kind, e)
			}
		}
	}
	if c := d.out.count(regexp.MustCompile(`device offline`)); c != 0 { // with timeout = 2s
		t.Errorf("a device went offline during the writes:\n%s", d.out.String())
	}
	// The other slaves kept ≥ 90% of their own rate before the writes.
	// Each window's rate is taken relative to the control's in the same
	// window, so that the machine's load changing between the windows
	// moves both; one poll of slack per scrape for the phase.
	baseC, duringC := (pc-bc)/baseline.Seconds(), (qc-pc)/elapsed.Seconds()
	for _, c := range []struct {
		name         string
		base, during float64
	}{{"s2", p2 - b2, q2 - p2}, {"s3", p3 - b3, q3 - p3}} {
		baseRate, duringRate := c.base/baseline.Seconds(), c.during/elapsed.Seconds()
		want := 0.9*baseRate/baseC*duringC - 2/elapsed.Seconds()
		if duringRate < want {
			t.Errorf("%s polled %.1f/s during the writes (control %.1f/s), %.1f/s before them (control %.1f/s): want ≥ %.1f/s, 90%% of its own rate",
				c.name, duringRate, duringC, baseRate, baseC, want)
		}
	}
	t.Logf("%d writes in %v (%.1f ms each, CLI start included); polls/s before → during the writes: s2 %.1f → %.1f, s3 %.1f → %.1f, control off the bus %.1f → %.1f (configured 10); bus overruns %v, timeouts %v",
		n, elapsed, float64(elapsed.Milliseconds())/n, (p2-b2)/baseline.Seconds(), (q2-p2)/elapsed.Seconds(), (p3-b3)/baseline.Seconds(), (q3-p3)/elapsed.Seconds(),
		baseC, duringC, scrape(t, metrics, "edged_serial_bus_overruns_total"), scrape(t, metrics, `edged_serial_bus_errors_total{kind="timeout"`))

	// write_interval holds across two commands: the daemon keeps the state.
	if code, out, errOut := runCLI("write", "-c", path, "s1", "setpoint", "7"); code != exitOK {
		t.Fatalf("first setpoint write: exit %d: %s %s", code, out, errOut)
	}
	code, out, errOut := runCLI("write", "-c", path, "s1", "setpoint", "8")
	if code != exitUsage || !strings.Contains(errOut, "refused (too_soon)") || !strings.Contains(errOut, "write_interval = 1h0m0s") {
		t.Fatalf("second setpoint write: exit %d, want %d with too_soon: %s %s", code, exitUsage, out, errOut)
	}
	if w := sim.WriteLog(); len(w) != n+1 || binary.BigEndian.Uint16(w[n].Data) != 40 {
		t.Fatalf("the refused write reached the wire: %d writes, last %x", len(w), w[len(w)-1].Data)
	}
	if h := sim.Holding(40, 1)[0]; h != 7 {
		t.Fatalf("setpoint register %d, want 7", h)
	}
	if ok, soon := scrape(t, metrics, `edged_writes_total{reason="",result="ok"}`), scrape(t, metrics, `edged_writes_total{reason="too_soon",result="refused"}`); ok != n+1 || soon != 1 {
		t.Errorf("edged_writes_total ok %v, too_soon %v; want %d and 1", ok, soon, n+1)
	}
	lines := auditLines(t, data)
	if len(lines) != n+2 {
		t.Fatalf("%d audit lines, want %d", len(lines), n+2)
	}
	var lat []float64
	for _, l := range lines[:n] {
		lat = append(lat, l.LatencyMs)
	}
	slices.Sort(lat)
	t.Logf("daemon-side latency (request to answer, read back by the next poll at 100ms included): p50 %.1f ms, max %.1f ms", lat[n/2], lat[n-1])
	first, last := lines[0], lines[n+1]
	if first.Result != "ok" || first.Source.Kind != door.FromCLI || first.Source.User == "" || !strings.HasPrefix(first.Source.Name, "pid ") ||
		string(first.Requested) != `"100"` || string(first.Written) != "100" || string(first.ReadBack) != "100" || first.Device != "s1" || first.Tag != "level" {
		t.Errorf("first audit line %+v", first)
	}
	if last.Result != "refused" || last.Reason != door.TooSoon || last.Tag != "setpoint" || last.Written != nil {
		t.Errorf("last audit line %+v", last)
	}
}

// Killing the daemon while a write waits in its lane: edged write says so
// at once (no hang, no crash). The socket the dead daemon left behind is
// then recognised as stale: the next edged write opens the device itself.
func TestWriteDaemonKilledMidWrite(t *testing.T) {
	sim := startSim(t)
	data := shortDir(t)
	path := writeConfig(t, t.TempDir(), fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
[broker]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "100ms"
timeout = "30s"
  [[device.tag]]
  name = "sp"
  area = "holding"
  address = 5
  type = "uint16"
  writable = true
`, data, sim.Addr()))
	d, _ := startDaemon(t, path, 1)
	sim.SetDelay(time.Minute) // the poll in flight hangs; the write queues behind it
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI("write", "-c", path, "-timeout", "2m", "plc", "sp", "9")
		done <- result{code, out, errOut}
	}()
	d.out.wait(t, 30*time.Second, regexp.MustCompile(`write requested on the control socket.*device=plc`))
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("edged write still waiting 30s after the daemon was killed")
	}
	if r.code != exitFailure || !strings.Contains(r.errOut, "the daemon closed the connection without answering") ||
		!strings.Contains(r.errOut, "may or may not have reached the device") || strings.Contains(r.errOut, "panic") {
		t.Fatalf("exit %d, want %d with a clear message: %s %s", r.code, exitFailure, r.out, r.errOut)
	}
	// The write may have reached the device (its answer hung): at most once.
	if sim.Writes() > 1 {
		t.Fatalf("%d writes reached the device", sim.Writes())
	}
	// The stale socket is still there; nobody answers on it.
	if _, err := os.Stat(control.SocketPath(data)); err != nil {
		t.Fatalf("the killed daemon's socket: %v", err)
	}
	sim.SetDelay(0)
	code, out, errOut := runCLI("write", "-c", path, "plc", "sp", "11")
	if code != exitOK || !strings.Contains(out, "plc/sp = 11") || !strings.Contains(out, "no daemon runs") || sim.Holding(5, 1)[0] != 11 {
		t.Fatalf("direct write after the daemon died: exit %d: %s %s (register %d)", code, out, errOut, sim.Holding(5, 1)[0])
	}
	if l := auditLines(t, data); len(l) != 1 || l[0].Result != "ok" || l[0].Source.Name != "direct" {
		t.Fatalf("audit of the direct write: %+v", l)
	}
}

type lineWriterCmd struct {
	cmd *exec.Cmd
	out *lineWriter
}

// count is how many lines so far match re.
func (w *lineWriter) count(re *regexp.Regexp) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// [gateway] writes = false is a lock-out: the CLI too is refused, with
// reason denied, and nothing reaches the device; --json prints the
// structured result.
func TestWriteSwitchOffRefusesTheCLI(t *testing.T) {
	sim := startSim(t)
	data := shortDir(t)
	cfg := func(writes string) string {
		return writeConfig(t, t.TempDir(), fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
%s
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
  [[device.tag]]
  name = "sp"
  area = "holding"
  address = 5
  type = "uint16"
  writable = true
`, data, writes, sim.Addr()))
	}
	code, out, errOut := runCLI("write", "-json", "-c", cfg("writes = false"), "plc", "sp", "3")
	var res door.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if code != exitUsage || res.OK || res.Reason != door.Denied || !strings.Contains(errOut, "refused (denied)") || sim.Writes() != 0 || sim.Requests() != 0 {
		t.Fatalf("writes = false: exit %d, %+v, %s; device saw %d requests", code, res, errOut, sim.Requests())
	}
	for _, writes := range []string{"writes = true", ""} {
		code, out, errOut = runCLI("write", "-c", cfg(writes), "plc", "sp", "4")
		if code != exitOK || !strings.Contains(out, "plc/sp = 4") {
			t.Fatalf("%q: exit %d: %s %s", writes, code, out, errOut)
		}
	}
	if l := auditLines(t, data); len(l) != 3 || l[0].Reason != door.Denied || l[1].Result != "ok" {
		t.Fatalf("audit %+v", l)
	}
}

// A device that answers the write with an exception: reason
// device_refused, exit 2, and the audit says it was sent and failed.
func TestWriteDeviceRefusal(t *testing.T) {
	sim := startSim(t)
	sim.Reject(modbussim.Holding, 7, 7)
	data := shortDir(t)
	path := writeConfig(t, t.TempDir(), fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
  [[device.tag]]
  name = "ok"
  area = "holding"
  address = 5
  type = "uint16"
  [[device.tag]]
  name = "locked"
  area = "holding"
  address = 7
  type = "uint16"
  writable = true
`, data, sim.Addr()))
	code, out, errOut := runCLI("write", "-c", path, "plc", "locked", "1")
	if code != exitUsage || !strings.Contains(errOut, "plc/locked failed (device_refused)") || !strings.Contains(errOut, "exception 02") || sim.Writes() != 1 {
		t.Fatalf("exit %d: %s %s; %d writes reached the device", code, out, errOut, sim.Writes())
	}
	if l := auditLines(t, data); len(l) != 1 || l[0].Result != "failed" || l[0].Reason != door.DeviceRefused {
		t.Fatalf("audit %+v", l)
	}
}

// TestRefusedWriteExits2: a write refused or failed with a reason exits 2
// whatever the reason (the README's exit codes), and says the reason.
func TestRefusedWriteExits2(t *testing.T) {
	sim := startSim(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing answers there
	cfg := func(writes, addr string) string {
		return writeConfig(t, t.TempDir(), fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
%s
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
timeout = "200ms"
retries = 0
  [[device.tag]]
  name = "sp"
  area = "holding"
  address = 5
  type = "uint16"
  writable = true
  max = 90
  [[device.tag]]
  name = "ro"
  area = "holding"
  address = 6
  type = "uint16"
`, shortDir(t), writes, addr))
	}
	for _, c := range []struct {
		name         string
		path         string
		device, tag  string
		value, wants string
	}{
		{"no such device", cfg("", sim.Addr()), "nope", "sp", "1", "not_writable"},
		{"no such tag", cfg("", sim.Addr()), "plc", "nope", "1", "not_writable"},
		{"not writable", cfg("", sim.Addr()), "plc", "ro", "1", "not_writable"},
		{"not a number", cfg("", sim.Addr()), "plc", "sp", "high", "bad_payload"},
		{"above max", cfg("", sim.Addr()), "plc", "sp", "91", "out_of_range"},
		{"writes off", cfg("writes = false", sim.Addr()), "plc", "sp", "1", "denied"},
		{"device offline", cfg("", deadAddr), "plc", "sp", "1", "device_offline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI("write", "-timeout", "3s", "-c", c.path, c.device, c.tag, c.value)
			if code != exitUsage || !strings.Contains(errOut, "("+c.wants+")") {
				t.Errorf("exit %d, want %d with %s\nstdout: %s\nstderr: %s", code, exitUsage, c.wants, out, errOut)
			}
		})
	}
	if sim.Writes() != 0 {
		t.Errorf("%d writes reached the device", sim.Writes())
	}
}
