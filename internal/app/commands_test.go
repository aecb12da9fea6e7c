package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound/door"
)

// commandsConfig is a gateway with one Modbus TCP device and a broker
// user "op" who may publish the command topics.
func commandsConfig(t *testing.T, dir, sim, writes, commands string) string {
	t.Helper()
	return writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
%s

[broker]
listen = "127.0.0.1:0"
%s

[[broker.user]]
name = "op"
password_hash = %q
publish = ["edged/gw/+/+/set"]

[[broker.user]]
name = "viewer"
password_hash = %q
publish = ["apps/#"]
subscribe = ["#"]

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
  max = 1000
  [[device.tag]]
  name = "sp2"
  area = "holding"
  address = 8
  type = "uint16"
  writable = true
  [[device.tag]]
  name = "ro"
  area = "holding"
  address = 6
  type = "uint16"
  [[device.tag]]
  name = "slow"
  area = "holding"
  address = 7
  type = "uint16"
  writable = true
  write_interval = "1h"
`, filepath.Join(dir, "data"), writes, commands, bcryptHash(t, "op-pw", bcrypt.MinCost), bcryptHash(t, "viewer-pw", bcrypt.MinCost), sim))
}

// replySub is mosquitto_sub -V 5 printing topic, correlation data and
// payload of every reply.
type replySub struct {
	mu    sync.Mutex
	lines []string
}

func startReplySub(t *testing.T, addr string, filters ...string) *replySub {
	t.Helper()
	return startReplySubAs(t, addr, []string{"-u", "op", "-P", "op-pw"}, filters...)
}

func startReplySubAs(t *testing.T, addr string, login []string, filters ...string) *replySub {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatal("mosquitto_sub not found: run `make test-deps` (installs Debian's mosquitto-clients)")
	}
	host, port, _ := net.SplitHostPort(addr)
	args := append([]string{"-V", "5", "-h", host, "-p", port, "-q", "1", "-F", "%t|%D|%p", "-i", fmt.Sprintf("reply-sub-%d", time.Now().UnixNano())}, login...)
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	cmd := exec.Command("mosquitto_sub", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s := &replySub{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
	}()
	return s
}

// wait returns the first reply on topic with correlation data corr that
// it had not returned before.
func (s *replySub) wait(t *testing.T, topic, corr string) control.Reply {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for i, l := range s.lines {
			parts := strings.SplitN(l, "|", 3)
			if len(parts) == 3 && parts[0] == topic && parts[1] == corr {
				s.lines = slices.Delete(s.lines, i, i+1)
				s.mu.Unlock()
				var r control.Reply
				if err := json.Unmarshal([]byte(parts[2]), &r); err != nil {
					t.Fatalf("reply %q: %v", parts[2], err)
				}
				return r
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("no reply on %s with correlation %q; got %q", topic, corr, s.lines)
	return control.Reply{}
}

func pub(t *testing.T, addr string, args ...string) {
	t.Helper()
	mosquittoPub(t, addr, append([]string{"-u", "op", "-P", "op-pw"}, args...)...)
}

func commandAudit(t *testing.T, cfgDir string) []door.Line {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(control.AuditDir(filepath.Join(cfgDir, "data")), door.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []door.Line
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var a door.Line
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, a)
	}
	return out
}

// TestLocalSetCommands: a /set from mosquitto_pub (MQTT 5 with Response
// Topic and Correlation Data, and 3.1.1 with the reply on …/set/reply)
// changes the register on the Modbus simulator and the reply carries the
// read back; every refusal answers with its reason, is audited with the
// sender, and leaves the simulator's write log as it was.
func TestLocalSetCommands(t *testing.T) {
	sim := startSim(t)
	sim.SetHolding(5, 11)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true", "commands = true")
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	replies := startReplySub(t, addr, "replies/#", "edged/gw/+/+/set/reply")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub subscribed (a reply before would be missed: the next wait fails loudly)

	v5 := func(tag, payload, corr string, extra ...string) control.Reply {
		t.Helper()
		pub(t, addr, append([]string{"-V", "5", "-i", "hmi-5", "-t", "edged/gw/plc/" + tag + "/set", "-m", payload,
			"-D", "publish", "response-topic", "replies/hmi", "-D", "publish", "correlation-data", corr}, extra...)...)
		return replies.wait(t, "replies/hmi", corr)
	}

	r := v5("sp", `{"v": 42, "id": "c-1"}`, "corr-1")
	if !r.OK || r.ID != "c-1" || string(r.V) != "42" || string(r.ReadBack) != "42" || string(r.Old) != "11" || r.Ts == 0 {
		t.Fatalf("MQTT 5 set: %+v", r)
	}
	if got := sim.Holding(5, 1)[0]; got != 42 {
		t.Fatalf("register 5 = %d after the set, want 42", got)
	}

	pub(t, addr, "-V", "311", "-i", "hmi-3", "-t", "edged/gw/plc/sp2/set", "-m", "7")
	r = replies.wait(t, "edged/gw/plc/sp2/set/reply", "")
	if !r.OK || string(r.ReadBack) != "7" || sim.Holding(8, 1)[0] != 7 {
		t.Fatalf("MQTT 3.1.1 set: %+v, register 8 = %d", r, sim.Holding(8, 1)[0])
	}
	if r := v5("slow", "3", "corr-slow"); !r.OK {
		t.Fatalf("first write of slow: %+v", r)
	}

	writes := len(sim.WriteLog())
	old := time.Now().Add(-time.Minute).UnixMilli()
	refusals := []struct {
		tag, payload string
		reason       door.Reason
	}{
		{"ro", "1", door.NotWritable},
		{"nope", "1", door.NotWritable},
		{"sp", "5000", door.OutOfRange},
		{"slow", "4", door.TooSoon},
		{"sp", `{"v": 43, "id": "c-1"}`, door.Duplicate},
		{"sp", fmt.Sprintf(`{"v": 44, "ts": %d}`, old), door.Expired},
		{"sp", "fast", door.BadPayload},
		{"sp", `{"v": 1, "x": 2}`, door.BadPayload},
		{"sp", `{"v": 1.5}`, door.BadPayload},
	}
	for i, c := range refusals {
		corr := fmt.Sprintf("ref-%d", i)
		r := v5(c.tag, c.payload, corr)
		if r.OK || r.Reason != c.reason || r.Message == "" {
			t.Errorf("%s %s: reply %+v, want reason %s", c.tag, c.payload, r, c.reason)
		}
	}
	// ACL denied: viewer may not publish on /set; the broker refuses it
	// and the door answers denied on …/set/reply and audits it.
	mosquittoPub(t, addr, "-V", "311", "-i", "viewer-1", "-u", "viewer", "-P", "viewer-pw", "-t", "edged/gw/plc/sp/set", "-m", "77")
	if r := replies.wait(t, "edged/gw/plc/sp/set/reply", ""); r.OK || r.Reason != door.Denied || !strings.Contains(r.Message, "publish ACL of user viewer") {
		t.Errorf("ACL denied: %+v", r)
	}
	if got := len(sim.WriteLog()); got != writes {
		t.Fatalf("refusals reached the wire: %d writes, %d before", got, writes)
	}
	if got := sim.Holding(5, 1)[0]; got != 42 {
		t.Fatalf("register 5 = %d after the refusals, want 42", got)
	}
	audit := commandAudit(t, dir)
	if len(audit) != 4+len(refusals) {
		t.Fatalf("%d audit lines, want %d: %+v", len(audit), 4+len(refusals), audit)
	}
	if l := audit[len(audit)-1]; l.Reason != door.Denied || l.Source.Name != "viewer-1" || l.Source.User != "viewer" || l.Result != "refused" {
		t.Errorf("audit of the ACL-denied command: %+v", l)
	}
	first := audit[0]
	if first.Source.Kind != door.FromLocal || first.Source.Name != "hmi-5" || first.Source.User != "op" || first.Topic != "edged/gw/plc/sp/set" || first.Result != "ok" {
		t.Fatalf("audit of the MQTT 5 set: %+v", first)
	}
	for i, c := range refusals {
		l := audit[3+i]
		if l.Reason != c.reason || l.Result != "refused" || l.Source.Name != "hmi-5" {
			t.Errorf("audit of %s %s: %+v, want reason %s", c.tag, c.payload, l, c.reason)
		}
	}
}

// TestLocalSetSwitches: with [gateway] writes = false a /set is answered
// denied and audited; with [broker] commands = false the broker refuses
// the publish (MQTT 5: not authorized) and nothing is written or answered.
func TestLocalSetSwitches(t *testing.T) {
	sim := startSim(t)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = false", "commands = true")
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	replies := startReplySub(t, addr, "replies/#")
	time.Sleep(300 * time.Millisecond)
	pub(t, addr, "-V", "5", "-i", "hmi", "-t", "edged/gw/plc/sp/set", "-m", "5", "-D", "publish", "response-topic", "replies/x", "-D", "publish", "correlation-data", "c")
	r := replies.wait(t, "replies/x", "c")
	if r.OK || r.Reason != door.Denied || !strings.Contains(r.Message, "writes = false") {
		t.Fatalf("writes off: %+v", r)
	}
	if a := commandAudit(t, dir); len(a) != 1 || a[0].Reason != door.Denied || a[0].Source.Name != "hmi" {
		t.Fatalf("audit %+v", a)
	}
	if n := len(sim.WriteLog()); n != 0 {
		t.Fatalf("%d writes reached the device", n)
	}
	_ = rt.Stop()

	sim2 := startSim(t)
	dir2 := t.TempDir()
	rt2, _ := startFromFile(t, commandsConfig(t, dir2, sim2.Addr(), "writes = true", "commands = false"))
	addr2 := rt2.Broker.Addr()
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt2, "plc") > 1 })
	host, port, _ := net.SplitHostPort(addr2)
	replies2 := startReplySub(t, addr2, "edged/gw/+/+/set/reply")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub subscribed (a reply before would be missed: the wait fails loudly)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The broker refuses it (MQTT 5: PUBACK 0x87, mosquitto_pub says so)
	// and the door audits and answers it: source not enabled.
	out, _ := exec.CommandContext(ctx, "mosquitto_pub", "-V", "5", "-q", "1", "-h", host, "-p", port, "-u", "op", "-P", "op-pw", "-i", "hmi-off",
		"-t", "edged/gw/plc/sp/set", "-m", "5", "-D", "publish", "response-topic", "replies/elsewhere").CombinedOutput()
	if !strings.Contains(strings.ToLower(string(out)), "not authorized") {
		t.Errorf("mosquitto_pub was not told: %s", out)
	}
	r = replies2.wait(t, "edged/gw/plc/sp/set/reply", "")
	if r.OK || r.Reason != door.Denied || !strings.Contains(r.Message, "commands are not enabled") {
		t.Fatalf("commands = false: %+v", r)
	}
	if n := len(sim2.WriteLog()); n != 0 {
		t.Fatalf("commands = false: %d writes reached the device", n)
	}
	if a := commandAudit(t, dir2); len(a) != 1 || a[0].Reason != door.Denied || a[0].Source.Name != "hmi-off" || a[0].Source.User != "op" || string(a[0].Requested) != "5" {
		t.Fatalf("commands = false: audit %+v", a)
	}
}

// TestLocalSetOnRTUBus: a /set from a local client and one from the cloud
// (mosquitto through the TLS upstream) reach an RTU slave on a pty bus
// (socat) through the bus lane, with the read back in the reply; a refusal
// sends no frame.
func TestLocalSetOnRTUBus(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	pty, err := modbussim.StartPtyPair(t.TempDir())
	if errors.Is(err, modbussim.ErrNoSocat) {
		t.Fatalf("%v: run `make test-deps`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pty.Close() })
	sim := modbussim.New()
	resp, err := sim.ServeRTU(pty.B, modbussim.RTUOptions{Units: []byte{1}, Baud: 19200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Close() })
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
writes = true

[broker]
listen = "127.0.0.1:0"
commands = true

[[broker.user]]
name = "op"
password_hash = %q
publish = ["edged/gw/+/+/set"]

[[device]]
name = "rtu"
driver = "modbus-rtu"
port = %q
baud = 19200
unit_id = 1
poll_interval = "100ms"
timeout = "2s"
  [[device.tag]]
  name = "level"
  area = "holding"
  address = 10
  type = "uint16"
  writable = true
  max = 500
`, filepath.Join(dir, "data"), bcryptHash(t, "op-pw", bcrypt.MinCost), pty.A))
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", "commands = true"))
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	testwait.For(t, 20*time.Second, "the RTU device polled", func() bool { return pollsOf(rt, "rtu") > 1 })
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
	cloud.WaitTopic(20*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	replies := startReplySub(t, addr, "replies/#")
	remote := startReplySubAs(t, mq.PlainAddr(), nil, "cloud/replies/#")
	time.Sleep(300 * time.Millisecond) // the subscribers subscribed (a reply before would be missed: the wait fails loudly)
	set := func(payload, corr string) control.Reply {
		t.Helper()
		pub(t, addr, "-V", "5", "-i", "hmi", "-t", "edged/gw/rtu/level/set", "-m", payload,
			"-D", "publish", "response-topic", "replies/rtu", "-D", "publish", "correlation-data", corr)
		return replies.wait(t, "replies/rtu", corr)
	}
	if r := set("123", "r1"); !r.OK || string(r.ReadBack) != "123" || sim.Holding(10, 1)[0] != 123 {
		t.Fatalf("RTU set: %+v, register %d", r, sim.Holding(10, 1)[0])
	}
	writes := len(sim.WriteLog())
	if r := set("900", "r2"); r.Reason != door.OutOfRange {
		t.Fatalf("RTU set above max: %+v", r)
	}
	if got := len(sim.WriteLog()); got != writes {
		t.Fatalf("the refusal reached the bus: %d writes, %d before", got, writes)
	}
	mosquittoPub(t, mq.PlainAddr(), "-V", "5", "-t", "edged/gw/rtu/level/set", "-m", `{"v": 321, "id": "cloud-rtu"}`,
		"-D", "publish", "response-topic", "cloud/replies/rtu", "-D", "publish", "correlation-data", "c1")
	if r := remote.wait(t, "cloud/replies/rtu", "c1"); !r.OK || string(r.ReadBack) != "321" || string(r.Old) != "123" || sim.Holding(10, 1)[0] != 321 {
		t.Fatalf("cloud RTU set: %+v, register %d", r, sim.Holding(10, 1)[0])
	}
}

// TestCloudSetCommands: with commands = true on an [[upstream]] (TLS,
// client certificate, real mosquitto as the cloud), a /set published on
// the cloud changes the register and the reply comes back on the cloud
// with the correlation data; audited as source upstream "cloud". An
// upstream without commands does not subscribe: nothing is written.
func TestCloudSetCommands(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	sim.SetHolding(5, 11)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true", "")
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", "commands = true"))
	host, port, _ := net.SplitHostPort(mq.PlainAddr())
	cloudPub := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "mosquitto_pub", append([]string{"-h", host, "-p", port, "-q", "1", "-V", "5"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %v: %v %s", args, err, out)
		}
	}
	// A retained /set on the cloud is not a command: the broker would
	// replay it at every connect.
	cloudPub("-r", "-t", "edged/gw/plc/sp2/set", "-m", "9")
	rt, _ := startFromFile(t, path)
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
	cloud.WaitTopic(20*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	replies := startReplySubAs(t, mq.PlainAddr(), nil, "cloud/replies/#", "edged/gw/+/+/set/reply")
	time.Sleep(300 * time.Millisecond)
	cloudPub("-t", "edged/gw/plc/sp/set", "-m", `{"v": 321, "id": "cloud-1"}`, "-D", "publish", "response-topic", "cloud/replies/a", "-D", "publish", "correlation-data", "cc-1")
	r := replies.wait(t, "cloud/replies/a", "cc-1")
	if got := sim.Holding(8, 1)[0]; got != 0 {
		t.Fatalf("the retained /set was applied: register 8 = %d", got)
	}
	if !r.OK || r.ID != "cloud-1" || string(r.ReadBack) != "321" || string(r.Old) != "11" || sim.Holding(5, 1)[0] != 321 {
		t.Fatalf("cloud set: %+v, register %d", r, sim.Holding(5, 1)[0])
	}
	writes := len(sim.WriteLog())
	cloudPub("-t", "edged/gw/plc/sp/set", "-m", fmt.Sprintf(`{"v": 5, "ts": %d}`, time.Now().Add(-time.Hour).UnixMilli()))
	if r := replies.wait(t, "edged/gw/plc/sp/set/reply", ""); r.OK || r.Reason != door.Expired {
		t.Fatalf("yesterday's setpoint: %+v, want expired", r)
	}
	cloudPub("-t", "edged/gw/plc/ro/set", "-m", "5", "-D", "publish", "response-topic", "cloud/replies/a", "-D", "publish", "correlation-data", "cc-2")
	if r := replies.wait(t, "cloud/replies/a", "cc-2"); r.OK || r.Reason != door.NotWritable {
		t.Fatalf("not writable from the cloud: %+v", r)
	}
	if got := len(sim.WriteLog()); got != writes {
		t.Fatalf("refusals reached the wire: %d writes, %d before", got, writes)
	}
	a := commandAudit(t, dir)
	if len(a) != 3 || a[0].Source.Kind != door.FromUpstream || a[0].Source.Name != "cloud" || a[0].Result != "ok" || a[1].Reason != door.Expired || a[2].Reason != door.NotWritable {
		t.Fatalf("audit %+v", a)
	}
}

// TestCloudSetSourceNotEnabled: [gateway] writes = true but the upstream
// has no commands = true: a /set on the cloud is never taken.
func TestCloudSetSourceNotEnabled(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true", "")
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", ""))
	rt, _ := startFromFile(t, path)
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status", "edged/gw/plc/sp/set/reply")
	cloud.WaitTopic(20*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	host, port, _ := net.SplitHostPort(mq.PlainAddr())
	if out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-V", "5", "-t", "edged/gw/plc/sp/set", "-m", "5").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	time.Sleep(500 * time.Millisecond) // nothing to wait for: give a taken command the time it would need
	if n := len(sim.WriteLog()); n != 0 || len(cloud.On("edged/gw/plc/sp/set/reply")) != 0 {
		t.Fatalf("an upstream without commands wrote: %d writes", n)
	}
}

// BenchmarkLocalSetToRegister measures publish → register changed on
// loopback: a paho MQTT 5 client publishes {"v": n} on a /set topic and
// the loop waits until the simulator holds n. It reports p50 and p99.
func BenchmarkLocalSetToRegister(b *testing.B) {
	benchSetToRegister(b, false)
}

// BenchmarkCloudSetToRegister is the same from the cloud: the paho client
// publishes on mosquitto (plain loopback listener), edged's upstream takes
// it over TLS with a client certificate (commands = true).
func BenchmarkCloudSetToRegister(b *testing.B) {
	benchSetToRegister(b, true)
}

func benchSetToRegister(b *testing.B, fromCloud bool) {
	sim := modbussim.New()
	if err := sim.Listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	dir := b.TempDir()
	path := filepath.Join(dir, "edged.toml")
	text := benchCommandsConfig(dir, sim.Addr())
	var mq *mosquittotest.Broker
	if fromCloud {
		mq = mosquittotest.Start(b, mosquittotest.Options{})
		text += upstreamTOML(mq, mq.TLSAddr(), "cloud", "commands = true")
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := configs.Load(path, Drivers(nil))
	if err != nil {
		b.Fatal(err)
	}
	rt, err := Start(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Stop()
	addr, login := rt.Broker.Addr(), &paho.Connect{ClientID: "bench", CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "op", PasswordFlag: true, Password: []byte("op-pw")}
	if fromCloud {
		addr, login = mq.PlainAddr(), &paho.Connect{ClientID: "bench", CleanStart: true, KeepAlive: 30}
		cloud := mqtttest.Subscribe(b, mq.PlainAddr(), "edged/gw/status")
		cloud.WaitTopic(30*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	cl := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if ca, err := cl.Connect(ctx, login); err != nil || ca.ReasonCode != 0 {
		b.Fatalf("connect: %v %+v", err, ca)
	}
	defer cl.Disconnect(&paho.Disconnect{})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		want := uint16(100 + i%800)
		if sim.Holding(5, 1)[0] == want {
			want++
		}
		start := time.Now()
		if _, err := cl.Publish(ctx, &paho.Publish{Topic: "edged/gw/plc/sp/set", QoS: 1, Payload: []byte(fmt.Sprintf(`{"v": %d, "id": "b-%d-%d"}`, want, start.UnixNano(), i))}); err != nil {
			b.Fatal(err)
		}
		for sim.Holding(5, 1)[0] != want {
			if time.Since(start) > 10*time.Second {
				b.Fatalf("register never became %d", want)
			}
			time.Sleep(50 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		// Stay under the rate limit (10 per burst, then 5/s per source and tag).
		time.Sleep(200 * time.Millisecond)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func benchCommandsConfig(dir, sim string) string {
	h, _ := bcrypt.GenerateFromPassword([]byte("op-pw"), bcrypt.MinCost)
	return fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
writes = true

[metrics]
disabled = true

[broker]
listen = "127.0.0.1:0"
commands = true

[[broker.user]]
name = "op"
password_hash = %q
publish = ["edged/gw/+/+/set"]

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
`, filepath.Join(dir, "data"), string(h), sim)
}

// TestCloudSetCommands311: commands = true on a protocol = "3.1.1"
// upstream (mosquitto through TLS with a client certificate): a 3.1.1
// /set from the cloud changes the register and the reply, with the read
// back, comes on the command topic + /reply on the cloud; a retained /set
// is dropped; a refusal is answered there too and sends nothing.
func TestCloudSetCommands311(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	sim.SetHolding(5, 11)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true", "")
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "hub", "protocol = \"3.1.1\"\ncommands = true"))
	host, port, _ := net.SplitHostPort(mq.PlainAddr())
	cloudPub := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "mosquitto_pub", append([]string{"-h", host, "-p", port, "-q", "1", "-V", "311"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %v: %v %s", args, err, out)
		}
	}
	cloudPub("-r", "-t", "edged/gw/plc/sp2/set", "-m", "9")
	rt, _ := startFromFile(t, path)
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
	cloud.WaitTopic(20*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	replies := startReplySubAs(t, mq.PlainAddr(), nil, "edged/gw/+/+/set/reply")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub subscribed (a reply before would be missed: the wait fails loudly)
	cloudPub("-t", "edged/gw/plc/sp/set", "-m", `{"v": 77, "id": "hub-1"}`)
	r := replies.wait(t, "edged/gw/plc/sp/set/reply", "")
	if !r.OK || r.ID != "hub-1" || string(r.ReadBack) != "77" || string(r.Old) != "11" || sim.Holding(5, 1)[0] != 77 {
		t.Fatalf("3.1.1 cloud set: %+v, register %d", r, sim.Holding(5, 1)[0])
	}
	if got := sim.Holding(8, 1)[0]; got != 0 {
		t.Fatalf("the retained /set was applied: register 8 = %d", got)
	}
	writes := len(sim.WriteLog())
	cloudPub("-t", "edged/gw/plc/sp/set", "-m", "5000")
	if r := replies.wait(t, "edged/gw/plc/sp/set/reply", ""); r.OK || r.Reason != door.OutOfRange {
		t.Fatalf("above max from the 3.1.1 cloud: %+v", r)
	}
	if got := len(sim.WriteLog()); got != writes {
		t.Fatalf("the refusal reached the wire: %d writes, %d before", got, writes)
	}
	a := commandAudit(t, dir)
	if len(a) != 2 || a[0].Source.Kind != door.FromUpstream || a[0].Source.Name != "hub" || a[0].Result != "ok" || a[1].Reason != door.OutOfRange {
		t.Fatalf("audit %+v", a)
	}
}

// TestCloudRefusesTheCommandSubscription: mosquitto 2.0 grants
// subscriptions its ACL denies, so the cloud here is edged's own embedded
// broker, whose ACL refuses the upstream's user the command filter (SUBACK
// 0x87 to MQTT 5, 0x80 to 3.1.1). The uplink logs that commands are off
// for the session, stays connected and keeps carrying the values.
func TestCloudRefusesTheCommandSubscription(t *testing.T) {
	for _, proto := range []string{"5", "3.1.1"} {
		t.Run("mqtt"+proto, func(t *testing.T) {
			cloud := northbound.NewBroker(northbound.BrokerOptions{Listen: "127.0.0.1:0", Access: &northbound.Access{Users: []northbound.User{
				{Name: "edged", PasswordHash: bcryptHash(t, "up-pw", bcrypt.MinCost), Publish: []string{"edged/#"}, Subscribe: []string{"apps/#"}},
				{Name: "watch", PasswordHash: bcryptHash(t, "watch-pw", bcrypt.MinCost), Subscribe: []string{"#"}},
			}}})
			if err := cloud.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cloud.Stop() })
			sim := startSim(t)
			sim.SetHolding(5, 17)
			dir := t.TempDir()
			pw := filepath.Join(dir, "up-password")
			if err := os.WriteFile(pw, []byte("up-pw\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := commandsConfig(t, dir, sim.Addr(), "writes = true", "")
			appendFile(t, path, fmt.Sprintf(`
[[upstream]]
name = "cloud"
url = "mqtt://%s"
insecure_plaintext = true
protocol = %q
username = "edged"
password_file = %q
max_bytes = "16MiB"
commands = true
`, cloud.Addr(), proto, pw))
			cfg, err := configs.Load(path, Drivers(nil))
			if err != nil {
				t.Fatal(err)
			}
			logs := &logBuffer{}
			rt, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Stop() })
			watch := startReplySubAs(t, cloud.Addr(), []string{"-u", "watch", "-P", "watch-pw"}, "edged/gw/plc/sp")
			testwait.For(t, 20*time.Second, "the refusal logged", func() bool {
				return strings.Contains(logs.String(), "commands from this upstream are off for this session")
			})
			if !strings.Contains(logs.String(), "refused the subscription to the command topics edged/gw/+/+/set") {
				t.Fatalf("the log does not say which subscription was refused:\n%s", logs)
			}
			// The same session carries the values after the refusal: the
			// subscriber sees sp (published on every change and at start).
			sim.SetHolding(5, 18)
			testwait.For(t, 20*time.Second, "a value on the cloud after the refusal", func() bool {
				watch.mu.Lock()
				defer watch.mu.Unlock()
				for _, l := range watch.lines {
					if strings.HasPrefix(l, "edged/gw/plc/sp|") && strings.Contains(l, `"v":18`) {
						return true
					}
				}
				return false
			})
			if n := strings.Count(logs.String(), "commands from this upstream are off for this session"); n != 1 {
				t.Fatalf("%d refusals logged, want 1 (one session, never dropped):\n%s", n, logs)
			}
		})
	}
}

// TestSetTopicTemplate: [gateway] command_topic_template moves the command
// topics, on the local broker (the namespace guard lets clients publish
// there, and only there) and on the cloud (the upstream subscribes to the
// template's filter); replies go to the command topic + /reply.
func TestSetTopicTemplate(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true\ncommand_topic_template = \"{prefix}/{gateway}/cmd/{device}/{tag}\"", "commands = true")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), `publish = ["edged/gw/+/+/set"]`, `publish = ["edged/gw/#"]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", "commands = true"))
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status")
	cloud.WaitTopic(20*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	local := startReplySub(t, addr, "edged/gw/cmd/#")
	remote := startReplySubAs(t, mq.PlainAddr(), nil, "edged/gw/cmd/#")
	time.Sleep(300 * time.Millisecond) // the subscribers subscribed (a reply before would be missed: the wait fails loudly)

	pub(t, addr, "-V", "311", "-i", "hmi", "-t", "edged/gw/cmd/plc/sp", "-m", "12")
	if r := local.wait(t, "edged/gw/cmd/plc/sp/reply", ""); !r.OK || string(r.ReadBack) != "12" || sim.Holding(5, 1)[0] != 12 {
		t.Fatalf("local set on the templated topic: %+v, register %d", r, sim.Holding(5, 1)[0])
	}
	// The old default topic is no command topic now: under edged's
	// namespace, the broker drops it (3.1.1: acknowledged and dropped).
	pub(t, addr, "-V", "311", "-i", "hmi", "-t", "edged/gw/plc/sp/set", "-m", "13")
	host, port, _ := net.SplitHostPort(mq.PlainAddr())
	if out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-V", "311", "-t", "edged/gw/cmd/plc/sp2", "-m", "14").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	if r := remote.wait(t, "edged/gw/cmd/plc/sp2/reply", ""); !r.OK || string(r.ReadBack) != "14" || sim.Holding(8, 1)[0] != 14 {
		t.Fatalf("cloud set on the templated topic: %+v, register %d", r, sim.Holding(8, 1)[0])
	}
	if got := sim.Holding(5, 1)[0]; got != 12 {
		t.Fatalf("the old /set topic was applied: register 5 = %d", got)
	}
	if a := commandAudit(t, dir); len(a) != 2 || a[0].Topic != "edged/gw/cmd/plc/sp" || a[1].Source.Name != "cloud" {
		t.Fatalf("audit %+v", a)
	}
}

// TestAuditTopic: with [gateway] audit_topic every attempt, accepted or
// refused, is also published there: on the local broker, and through the
// upstream on the cloud; each message is the audit file's line.
func TestAuditTopic(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true\naudit_topic = \"{prefix}/{gateway}/audit\"", "commands = true")
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", ""))
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status", "edged/gw/audit")
	cloud.WaitTopic(20*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	local := mqtttest.Subscribe(t, addr, "edged/gw/audit")

	pub(t, addr, "-V", "311", "-i", "hmi", "-t", "edged/gw/plc/sp/set", "-m", `{"v": 21, "id": "a-1"}`)
	pub(t, addr, "-V", "311", "-i", "hmi", "-t", "edged/gw/plc/ro/set", "-m", "1")
	two := func(ms []mqtttest.Message) bool { return len(ms) >= 2 }
	local.WaitFor(20*time.Second, "two audit lines locally", two)
	cloud.WaitFor(20*time.Second, "two audit lines on the cloud", func([]mqtttest.Message) bool { return len(cloud.On("edged/gw/audit")) >= 2 })
	file := commandAudit(t, dir)
	if len(file) != 2 {
		t.Fatalf("audit file %+v", file)
	}
	for name, got := range map[string][]mqtttest.Message{"local": local.On("edged/gw/audit"), "cloud": cloud.On("edged/gw/audit")} {
		if len(got) != 2 {
			t.Fatalf("%s: %d audit messages, want 2", name, len(got))
		}
		// Commands run on 4 workers: the two may come in either order.
		seen := map[string]door.Line{}
		for _, m := range got {
			var l door.Line
			if err := json.Unmarshal(m.Payload, &l); err != nil {
				t.Fatalf("%s: audit message %q: %v", name, m.Payload, err)
			}
			if m.Retain {
				t.Errorf("%s: audit message retained", name)
			}
			seen[l.Tag] = l
		}
		for _, f := range file {
			l := seen[f.Tag]
			if l.Result != f.Result || l.Reason != f.Reason || l.Time != f.Time || l.Source != f.Source || l.ID != f.ID {
				t.Errorf("%s: audit message %+v, file line %+v", name, l, f)
			}
		}
		if seen["sp"].Result != "ok" || seen["ro"].Reason != door.NotWritable {
			t.Errorf("%s: %+v", name, seen)
		}
	}
}
