package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/testwait"
	"golang.org/x/crypto/bcrypt"
)

// withBrokerUsers inserts [[broker.user]] tables (text) after the [broker]
// listen line of the e2e config at path.
func withBrokerUsers(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "[broker]\nlisten = \"127.0.0.1:0\"\n"
	if !bytes.Contains(b, []byte(anchor)) {
		t.Fatal("e2e config has no [broker] listen line")
	}
	b = bytes.Replace(b, []byte(anchor), []byte(anchor+text+"\n"), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func bcryptHash(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func mosquittoPub(t *testing.T, addr string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Fatal("mosquitto_pub not found: run `make test-deps` (installs Debian's mosquitto-clients)")
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", append([]string{"-h", host, "-p", port, "-q", "1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %v: %v %s", args, err, out)
	}
}

// TestLocalClientCannotInjectIntoTheCloudStream: with mosquitto as the
// cloud, a local client (whose ACL lets it publish anywhere) can neither
// put a value into edged's namespace, nor plant a retained status, nor
// have its messages beside the namespace forwarded; only the filters an
// [[upstream]] opts in to with forward carry local clients' messages up.
func TestLocalClientCannotInjectIntoTheCloudStream(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "#")
	boiler, meter := startSim(t), startSim(t)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	withBrokerUsers(t, path, `[[broker.user]]
name = "app"
password_hash = "`+bcryptHash(t, "app-pw", bcrypt.MinCost)+`"
publish = ["#"]`)
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "cloud", `forward = ["apps/#"]`))
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	cloud.WaitTopic(15*time.Second, "edged/it/status", func(p []byte) bool { return string(p) == "online" })
	cloud.WaitTopic(15*time.Second, "edged/it/boiler/temperature", nil)

	user := []string{"-u", "app", "-P", "app-pw"}
	mosquittoPub(t, addr, append(user, "-t", "edged/it/boiler/temperature", "-m", `{"v":99999}`)...)
	mosquittoPub(t, addr, append(user, "-V", "311", "-t", "edged/it/boiler/temperature", "-m", `{"v":99999}`)...)
	mosquittoPub(t, addr, append(user, "-r", "-t", "edged/it/status", "-m", "offline")...)
	mosquittoPub(t, addr, append(user, "-t", "edged/elsewhere/x", "-m", `{"v":99999}`)...)
	mosquittoPub(t, addr, append(user, "-t", "apps/line1/note", "-m", "forwarded")...)
	// What went up after the refused ones is there; the queue is in order.
	cloud.WaitTopic(15*time.Second, "apps/line1/note", func(p []byte) bool { return string(p) == "forwarded" })
	if err := rt.Broker.Publish("edged/it/marker", []byte("m"), false, 1); err != nil {
		t.Fatal(err)
	}
	cloud.WaitTopic(15*time.Second, "edged/it/marker", nil)
	for _, m := range cloud.Messages() {
		if strings.Contains(string(m.Payload), "99999") || m.Topic == "edged/elsewhere/x" {
			t.Errorf("a local client's message reached the cloud: %s %s", m.Topic, m.Payload)
		}
		if m.Topic == "edged/it/status" && string(m.Payload) != "online" {
			t.Errorf("cloud status %q", m.Payload)
		}
	}
	local := mqtttest.Subscribe(t, addr, "edged/it/status")
	local.WaitTopic(5*time.Second, "edged/it/status", nil)
	if err := rt.Broker.Publish("edged/it/marker2", []byte("m"), false, 1); err != nil {
		t.Fatal(err)
	}
	for _, m := range local.Messages() {
		if string(m.Payload) != "online" {
			t.Fatalf("a local client planted status %q", m.Payload)
		}
	}
}

// rawConnect311 sends one MQTT 3.1.1 CONNECT with a user name and password
// and returns the CONNACK return code (0xff: the connection closed).
func rawConnect311(t *testing.T, addr, user, pass string) byte {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Error(err)
		return 0xff
	}
	defer c.Close()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append(append(str("MQTT"), 4, 0xC2, 0, 0), str("flood")...)
	body = append(append(body, str(user)...), str(pass)...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		return 0xff
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return 0xff
	}
	return ack[3]
}

// TestWrongPasswordFloodLeavesPollingAlone: 1,000 wrong passwords (bcrypt
// at the default cost edged passwd uses) cost a handful of hashes, and the
// devices keep their polling rate while it lasts.
func TestWrongPasswordFloodLeavesPollingAlone(t *testing.T) {
	boiler, meter := startSim(t), startSim(t)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	withBrokerUsers(t, path, `[[broker.user]]
name = "hmi"
password_hash = "`+bcryptHash(t, "the-right-one", bcrypt.DefaultCost)+`"`)
	withMetrics(t, path)
	rt, _ := startFromFile(t, path)
	addr := rt.Broker.Addr()
	testwait.For(t, 15*time.Second, "the boiler polling", func() bool { return pollsOf(rt, "boiler") >= 5 })

	window := func(run func()) (polls uint64, d time.Duration) {
		p0, t0 := pollsOf(rt, "boiler"), time.Now()
		run()
		return pollsOf(rt, "boiler") - p0, time.Since(t0)
	}
	// A quiet span, the flood, another quiet span of the same length. The
	// attacker is paced like one on the network (its own CPU would
	// otherwise be this machine's too): 1000 attempts over ~4 s.
	before := rt.Broker.Stats().Auth
	floodPolls, floodTime := window(func() {
		for i := range 1000 {
			if rc := rawConnect311(t, addr, "hmi", "guess"); rc == 0 {
				t.Fatalf("attempt %d: a wrong password was accepted", i)
			}
			time.Sleep(time.Millisecond)
		}
	})
	after := rt.Broker.Stats().Auth
	quietPolls, quietTime := window(func() { time.Sleep(floodTime) })

	hashed := after.PasswordChecks - before.PasswordChecks
	if max := uint64(5) + uint64(floodTime/(10*time.Second)) + 1; hashed > max {
		t.Errorf("1000 wrong passwords cost %d bcrypt comparisons in %v, limit %d", hashed, floodTime, max)
	}
	if after.LoginsRefused-before.LoginsRefused != 1000 {
		t.Errorf("refused %d logins, want 1000", after.LoginsRefused-before.LoginsRefused)
	}
	_, body := get(t, "http://"+rt.Metrics.Addr()+"/metrics")
	if v := metric(t, body, "edged_broker_logins_refused_total"); v != 1000 {
		t.Errorf("edged_broker_logins_refused_total = %v, want 1000", v)
	}
	if v := metric(t, body, "edged_broker_password_checks_total"); v != float64(hashed) {
		t.Errorf("edged_broker_password_checks_total = %v, want %d", v, hashed)
	}
	if v := metric(t, body, "edged_broker_logins_throttled_total"); v < 990 {
		t.Errorf("edged_broker_logins_throttled_total = %v", v)
	}
	floodRate := float64(floodPolls) / floodTime.Seconds()
	quietRate := float64(quietPolls) / quietTime.Seconds()
	t.Logf("flood: %d polls in %v (%.1f/s), %d hashes; quiet: %d polls in %v (%.1f/s)", floodPolls, floodTime, floodRate, hashed, quietPolls, quietTime, quietRate)
	if floodRate < 0.8*quietRate {
		t.Errorf("polling slowed during the flood: %.1f polls/s against %.1f/s without it", floodRate, quietRate)
	}
}

// TestReloadRenewsTheBrokerCertificateAndUsers: SIGHUP's reload reads the
// TLS listener's files again and applies new users at once.
func TestReloadRenewsTheBrokerCertificateAndUsers(t *testing.T) {
	dir := t.TempDir()
	ca := mosquittotest.NewCA(t, "broker reload CA")
	writeCert := func(cn string) {
		c, k := ca.Issue(t, cn, []string{"127.0.0.1"}, false, false)
		if err := os.WriteFile(filepath.Join(dir, "broker.pem"), c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "broker.key"), k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCert("before reload")
	conf := func(user string) string {
		return `[gateway]
id = "it"
data_dir = "` + dir + `"

[broker]
listen = "127.0.0.1:0"

[broker.tls]
listen = "127.0.0.1:0"
cert_file = "broker.pem"
key_file = "broker.key"

[[broker.user]]
name = "` + user + `"
password_hash = "` + bcryptHash(t, "pw", bcrypt.MinCost) + `"
`
	}
	path := writeConfig(t, dir, conf("first"))
	rt, cfg := startFromFile(t, path)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	serverCN := func() string {
		c, err := tls.Dial("tcp", rt.Broker.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := serverCN(); cn != "before reload" {
		t.Fatalf("certificate %q", cn)
	}
	if rc := rawConnect311(t, rt.Broker.Addr(), "first", "pw"); rc != 0 {
		t.Fatalf("user first: CONNACK %d", rc)
	}
	writeCert("after reload")
	if err := os.WriteFile(path, []byte(conf("second")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Reload(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	if cn := serverCN(); cn != "after reload" {
		t.Fatalf("after reload the broker shows %q", cn)
	}
	if rc := rawConnect311(t, rt.Broker.Addr(), "second", "pw"); rc != 0 {
		t.Fatalf("new user after reload: CONNACK %d", rc)
	}
	if rc := rawConnect311(t, rt.Broker.Addr(), "first", "pw"); rc == 0 {
		t.Fatal("a removed user still logs in after reload")
	}
}
