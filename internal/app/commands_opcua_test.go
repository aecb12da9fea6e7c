package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/southbound/door"
)

// nodeOPCUA is southbound/opcua/testdata/nodeserver/server.js (node-opcua,
// installed by `make test-deps`) as a child process, with the writes it
// reports ("written NAME TYPE VALUE": the server's own view).
type nodeOPCUA struct {
	port, ns int
	mu       sync.Mutex
	written  []string // "Limit UInt16 250"
}

func startNodeOPCUA(t *testing.T) *nodeOPCUA {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "southbound", "opcua", "testdata", "nodeserver"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed (%v): run `make test-deps`", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua", "package.json")); err != nil {
		t.Fatalf("node-opcua is not installed in %s (%v): run `make test-deps`", dir, err)
	}
	s := &nodeOPCUA{port: freeTCPPort(t)}
	cmd := exec.Command("node", "server.js", "--port", fmt.Sprint(s.port), "--pki", t.TempDir())
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe() // closing it stops the server
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ready ") {
				ready <- line
			}
			if w, ok := strings.CutPrefix(line, "written "); ok {
				s.mu.Lock()
				s.written = append(s.written, w)
				s.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case line := <-ready:
		if _, err := fmt.Sscanf(line, "ready port=%d ns=%d", &s.port, &s.ns); err != nil {
			t.Fatalf("ready line %q: %v", line, err)
		}
	case <-exited:
		t.Fatal("server.js exited before it was ready")
	case <-time.After(90 * time.Second):
		t.Fatal("server.js not ready after 90s")
	}
	return s
}

func (s *nodeOPCUA) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.written...)
}

// TestSetCommandsNodeOPCUA: a /set from a local client and one from the
// cloud (mosquitto through the TLS upstream) change node-opcua variables;
// the value is sent in the variable's own DataType (UInt16 for Limit: a
// Double there would be BadTypeMismatch; Double for Setpoint), as the
// server reports it, and the reply carries the read back. A refusal
// (above max) never reaches the server: the next write it reports is the
// accepted one after it.
func TestSetCommandsNodeOPCUA(t *testing.T) {
	ua := startNodeOPCUA(t)
	mq := mosquittotest.Start(t, mosquittotest.Options{})
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
name = "line"
driver = "opcua"
endpoint = "opc.tcp://127.0.0.1:%d"
security_policy = "None"
security_mode = "None"
publishing_interval = "50ms"
timeout = "10s"
  [[device.tag]]
  name = "limit"
  node = "ns=%d;s=Limit"
  writable = true
  max = 1000
  [[device.tag]]
  name = "setpoint"
  node = "ns=%d;s=Setpoint"
  writable = true
`, filepath.Join(dir, "data"), bcryptHash(t, "op-pw", bcrypt.MinCost), ua.port, ua.ns, ua.ns))
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", "commands = true"))
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/status", "edged/gw/line/limit")
	cloud.WaitTopic(60*time.Second, "edged/gw/status", func(p []byte) bool { return string(p) == "online" })
	cloud.WaitTopic(60*time.Second, "edged/gw/line/limit", func(p []byte) bool { return strings.Contains(string(p), `"v":100`) })
	local := startReplySub(t, addr, "replies/#")
	remote := startReplySubAs(t, mq.PlainAddr(), nil, "cloud/replies/#")
	time.Sleep(300 * time.Millisecond) // the subscribers subscribed (a reply before would be missed: the wait fails loudly)

	localSet := func(tag, payload, corr string) {
		t.Helper()
		pub(t, addr, "-V", "5", "-i", "hmi", "-t", "edged/gw/line/"+tag+"/set", "-m", payload,
			"-D", "publish", "response-topic", "replies/hmi", "-D", "publish", "correlation-data", corr)
	}
	host, port, _ := net.SplitHostPort(mq.PlainAddr())
	cloudSet := func(tag, payload, corr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-V", "5", "-t", "edged/gw/line/"+tag+"/set", "-m", payload,
			"-D", "publish", "response-topic", "cloud/replies/a", "-D", "publish", "correlation-data", corr).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	lastWrite := func(want string) {
		t.Helper()
		testwait.For(t, 20*time.Second, "node-opcua reports "+want, func() bool {
			w := ua.writes()
			return len(w) > 0 && w[len(w)-1] == want
		})
	}

	localSet("limit", "250", "l-1")
	if r := local.wait(t, "replies/hmi", "l-1"); !r.OK || string(r.V) != "250" || string(r.ReadBack) != "250" || string(r.Old) != "100" {
		t.Fatalf("local set of the UInt16 node: %+v", r)
	}
	lastWrite("Limit UInt16 250")

	cloudSet("setpoint", `{"v": 42.5, "id": "cloud-ua-1"}`, "c-1")
	if r := remote.wait(t, "cloud/replies/a", "c-1"); !r.OK || r.ID != "cloud-ua-1" || string(r.ReadBack) != "42.5" {
		t.Fatalf("cloud set of the Double node: %+v", r)
	}
	lastWrite("Setpoint Double 42.5")

	n := len(ua.writes())
	cloudSet("limit", "5000", "c-2")
	if r := remote.wait(t, "cloud/replies/a", "c-2"); r.OK || r.Reason != door.OutOfRange {
		t.Fatalf("cloud set above max: %+v", r)
	}
	cloudSet("limit", "321", "c-3")
	if r := remote.wait(t, "cloud/replies/a", "c-3"); !r.OK || string(r.ReadBack) != "321" {
		t.Fatalf("cloud set of the UInt16 node: %+v", r)
	}
	lastWrite("Limit UInt16 321")
	if w := ua.writes(); len(w) != n+1 {
		t.Fatalf("the server saw %q after the refusal, want only the accepted write", w[n:])
	}
	a := commandAudit(t, dir)
	if len(a) != 4 || a[0].Source.Kind != door.FromLocal || a[1].Source.Kind != door.FromUpstream || a[2].Reason != door.OutOfRange || a[3].Result != "ok" {
		t.Fatalf("audit %+v", a)
	}
}
