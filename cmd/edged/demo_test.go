package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mqtttest"
)

// The demo tells the story end to end, checked by two independent MQTT
// subscribers (one on the local broker, one on the demo's cloud broker):
// the link to the cloud is cut for --outage, the buffer keeps the backlog
// on disk, the replay sends it marked historical while live values keep
// arriving, the cloud gets every message the local broker published (the
// demo's own tally says so too, by sequence number), and `edged write`
// against the running demo changes the setpoint and reads it back.
func TestDemoOutageLosesNothingAndTheSetpointIsWritable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	out := &lineWriter{}
	demo := exec.CommandContext(ctx, edgedBin, "demo", "--listen", "127.0.0.1:0", "--plain",
		"--for", "30s", "--outage", "6s", "--dir", dir)
	demo.Stdout, demo.Stderr = out, out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- demo.Wait() }()
	t.Cleanup(func() {
		_ = demo.Process.Kill()
		<-exited
	})
	cfgPath := out.wait(t, 20*time.Second, regexp.MustCompile(`^config: (\S+)$`))[1]
	local := out.wait(t, 5*time.Second, regexp.MustCompile(`MQTT broker on (127\.0\.0\.1:\d+)`))[1]
	cloudAddr := out.wait(t, 5*time.Second, regexp.MustCompile(`cloud broker on (127\.0\.0\.1:\d+)`))[1]
	if want := dir + "/edged.toml"; cfgPath != want {
		t.Errorf("config at %s, want %s (--dir)", cfgPath, want)
	}

	// The cloud's subscriber first: whatever the local one sees later was
	// published after both were there.
	cloud := mqtttest.Subscribe(t, cloudAddr, "edged/#")
	plant := mqtttest.Subscribe(t, local, "edged/#")

	// The OPC UA line publishes, like the two Modbus devices.
	for _, topic := range []string{"edged/demo/line1/speed", "edged/demo/plc1/tank_level", "edged/demo/meter1/voltage_l1"} {
		m := plant.WaitTopic(15*time.Second, topic, nil)
		if p := payloadOf(t, m.Payload); p["q"] != "good" {
			t.Errorf("%s: %s", topic, m.Payload)
		}
	}

	m := out.wait(t, 30*time.Second, regexp.MustCompile(`cloud link cut \(--outage 6s\)`))
	t.Logf("%s", m[0])

	// A write through the running demo's daemon, during the outage: the
	// command the demo prints, with its config path.
	out.wait(t, 5*time.Second, regexp.MustCompile(regexp.QuoteMeta("write -c "+cfgPath+" plc1 level_setpoint 70")))
	w := exec.CommandContext(ctx, edgedBin, "write", "-c", cfgPath, "plc1", "level_setpoint", "72.5")
	wout, err := w.CombinedOutput()
	if err != nil || !strings.Contains(string(wout), "plc1/level_setpoint = 72.5 %") ||
		!strings.Contains(string(wout), "read back") || !strings.Contains(string(wout), "by the running daemon") {
		t.Fatalf("edged write: %v\n%s", err, wout)
	}
	plant.WaitTopic(10*time.Second, "edged/demo/plc1/level_setpoint", func(p []byte) bool {
		v, _ := payloadOf(t, p)["v"].(float64)
		return v == 72.5
	})
	// The setpoint is checked against the tag's max before anything is sent.
	w = exec.CommandContext(ctx, edgedBin, "write", "-c", cfgPath, "plc1", "level_setpoint", "95")
	if wout, err := w.CombinedOutput(); exitCode(err) != exitUsage || !strings.Contains(string(wout), "out_of_range") {
		t.Errorf("write above max: %v\n%s", err, wout)
	}

	// The backlog grew on disk while the link was cut, on screen too.
	out.wait(t, 20*time.Second, regexp.MustCompile(`^  buffer   [1-9]\d* waiting for the cloud \(.*\), [1-9]\d* written to disk since start`))
	m = out.wait(t, 20*time.Second, regexp.MustCompile(`cloud link restored \(--outage over\): (\d+) messages buffered`))
	if n, _ := strconv.Atoi(m[1]); n < 20 {
		t.Errorf("only %d messages buffered over a 6 s outage: %s", n, m[0])
	}
	// The replay's progress is on screen; SIGUSR1 cuts the link in the
	// middle of it and restores it: the rest is replayed, nothing lost.
	out.wait(t, 20*time.Second, regexp.MustCompile(`^  replay   REPLAYING, \d+ of the backlog left`))
	if err := demo.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	out.wait(t, 10*time.Second, regexp.MustCompile(`cloud link cut \(SIGUSR1\)`))
	out.wait(t, 10*time.Second, regexp.MustCompile(`link to the cloud: CUT for [1-9]`))
	if err := demo.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	out.wait(t, 10*time.Second, regexp.MustCompile(`cloud link restored \(SIGUSR1\)`))

	// The demo's own tally: every sequence number reached the cloud.
	m = out.wait(t, demoDrainTimeout+30*time.Second, regexp.MustCompile(`^cloud: received (\d+) of the (\d+) messages the uplink took \(sequence 1-(\d+)\): (\d+) lost, (\d+) marked historical`))
	received, _ := strconv.Atoi(m[1])
	published, _ := strconv.Atoi(m[2])
	lost, _ := strconv.Atoi(m[4])
	historical, _ := strconv.Atoi(m[5])
	if received != published || lost != 0 || published < 200 || historical < 20 {
		t.Errorf("tally: %s", m[0])
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("demo exited with %v\n%s", err, strings.Join(out.lines, "\n"))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not exit after --for")
	}

	// The independent check: every message the local subscriber saw
	// reached the cloud (the gateway's own status excepted: the uplink
	// sends its own), some of them marked historical, and live values kept
	// arriving while the replay drained.
	var localMsgs []mqtttest.Message
	for _, m := range plant.Messages() {
		if !m.Retain && m.Topic != "edged/demo/status" {
			localMsgs = append(localMsgs, m)
		}
	}
	inCloud := map[string]bool{}
	var firstHist, lastHist time.Time
	histCount := 0
	for _, m := range cloud.Messages() {
		p, hist := bytes.CutSuffix(m.Payload, []byte(`,"hist":true}`))
		if hist {
			p = append(p[:len(p):len(p)], '}')
			histCount++
			if firstHist.IsZero() {
				firstHist = m.At
			}
			lastHist = m.At
		}
		inCloud[m.Topic+" "+string(p)] = true
	}
	missing := 0
	for _, m := range localMsgs {
		if !inCloud[m.Topic+" "+string(m.Payload)] {
			if missing < 10 {
				t.Errorf("the cloud never received %s %s", m.Topic, m.Payload)
			}
			missing++
		}
	}
	if len(localMsgs) < 200 || missing > 0 {
		t.Errorf("%d of %d local messages missing in the cloud", missing, len(localMsgs))
	}
	if histCount < 20 {
		t.Errorf("%d historical messages in the cloud, want the outage's backlog", histCount)
	}
	liveDuringReplay := 0
	for _, m := range cloud.Messages() {
		if !bytes.HasSuffix(m.Payload, []byte(`"hist":true}`)) && m.At.After(firstHist) && m.At.Before(lastHist) {
			liveDuringReplay++
		}
	}
	if liveDuringReplay == 0 {
		t.Errorf("no live message reached the cloud while the replay ran (%d historical)", histCount)
	}
	t.Logf("local %d messages, cloud %d (%d historical, %d live during the replay); %s",
		len(localMsgs), len(cloud.Messages()), histCount, liveDuringReplay, m[0])
}

func payloadOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Errorf("payload %q: %v", b, err)
	}
	return p
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// The simulated cloud lets anyone in, so it listens on loopback only.
func TestDemoCloudOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":1884", "192.168.1.10:1884", "example.com:1884"} {
		code, _, errOut := runCLI("demo", "--cloud", addr, "--for", "1s")
		if code != exitUsage || !strings.Contains(errOut, "loopback only") {
			t.Errorf("--cloud %s: exit %d, %q", addr, code, errOut)
		}
	}
	if !isLoopback("127.0.0.1:0") || !isLoopback("[::1]:1884") || !isLoopback("localhost:1884") {
		t.Error("loopback addresses refused")
	}
}

// The command the demo prints can be pasted into a shell as it is.
func TestDemoShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/edged-demo-123/edged.toml": "/tmp/edged-demo-123/edged.toml",
		`/tmp/my "demo" dir/edged.toml`:  `'/tmp/my "demo" dir/edged.toml'`,
		"/tmp/it's/edged.toml":           `'/tmp/it'\''s/edged.toml'`,
		"go run ./cmd/edged":             "go run ./cmd/edged",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// The tally matches the cloud's copy to the local message without the
// replay's mark, and names the sequence numbers still missing.
func TestDemoTally(t *testing.T) {
	ta := newDemoTally("edged/demo/status")
	ta.local("edged/demo/status", []byte("online"), false) // not carried by the uplink
	ta.local("edged/demo/plc1/a", []byte(`{"v":1,"ts":1}`), false)
	ta.local("edged/demo/plc1/a", []byte(`{"v":2,"ts":2}`), false)
	ta.local("edged/demo/plc1/b", []byte(`{}`), false)
	ta.local("edged/demo/plc1/a", []byte(`{"v":2,"ts":2}`), false) // the same message twice: two numbers

	ta.received("edged/demo/plc1/a", []byte(`{"v":1,"ts":1,"hist":true}`), false)
	ta.received("edged/demo/plc1/a", []byte(`{"v":1,"ts":1}`), false) // a resend
	ta.received("edged/demo/plc1/b", []byte(`{"hist":true}`), false)
	ta.received("edged/demo/plc1/a", []byte(`{"v":2,"ts":2}`), true) // marked by the MQTT 5 property only
	ta.received("edged/demo/status", []byte("online"), false)        // the uplink's own
	s := ta.summary()
	if s.Published != 4 || s.Arrived != 3 || s.Historical != 3 || s.Repeats != 1 || len(s.Missing) != 1 || s.Missing[0] != 4 {
		t.Fatalf("summary %+v", s)
	}
	if want := "cloud: received 3 of the 4 messages the uplink took (sequence 1-4): 1 lost, 3 marked historical, 1 sent twice; missing [4] (seq 4: edged/demo/plc1/a {\"v\":2,\"ts\":2})"; s.String() != want {
		t.Errorf("line %q\nwant %q", s.String(), want)
	}
	ta.received("edged/demo/plc1/a", []byte(`{"v":2,"ts":2}`), false)
	ta.freeze()
	ta.local("edged/demo/plc1/a", []byte(`{"v":3,"ts":3}`), false) // after the freeze: not counted
	if s := ta.summary(); s.Published != 4 || len(s.Missing) != 0 || s.Arrived != 4 {
		t.Errorf("after the last arrival: %+v", s)
	}

	// A long demo: what was delivered is remembered only tallyKeep deep.
	ta = newDemoTally("")
	for i := range tallyKeep + 1000 {
		p := []byte(strconv.Itoa(i))
		ta.local("t", p, false)
		ta.received("t", p, false)
	}
	ta.received("t", []byte(strconv.Itoa(tallyKeep+999)), false) // a recent resend: counted
	ta.received("t", []byte("0"), false)                         // forgotten: not counted
	if s := ta.summary(); len(ta.want) != 0 || len(ta.delivered) != tallyKeep || s.Repeats != 1 || s.Arrived != tallyKeep+1000 || len(s.Missing) != 0 {
		t.Errorf("want %d, delivered %d, summary %+v", len(ta.want), len(ta.delivered), s)
	}
}
