package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
)

// The console against a running runtime: a Modbus simulator, the metrics
// port, the write door and its audit file.

const consoleConfig = `[gateway]
id = "it"
data_dir = "{{DIR}}/data"
writes = true

[metrics]
listen = "{{LISTEN}}"

[broker]
listen = "127.0.0.1:0"

{{CONSOLE}}

[[device]]
name = "boiler"
driver = "modbus-tcp"
address = "{{BOILER}}"
poll_interval = "{{POLL}}"
timeout = "200ms"
retries = 0

  [[device.tag]]
  name = "temperature"
  area = "holding_register"
  address = 0
  type = "float32"
  unit = "°C"

  [[device.tag]]
  name = "setpoint"
  area = "holding_register"
  address = 10
  type = "int16"
  writable = true
  min = 0.0
  max = 90.0

{{EXTRA}}
`

type consoleSetup struct {
	listen, console, extra, poll string
}

func writeConsoleConfig(t *testing.T, boiler string, s consoleSetup) string {
	t.Helper()
	dir := t.TempDir()
	if s.poll == "" {
		s.poll = "100ms"
	}
	text := strings.NewReplacer("{{DIR}}", dir, "{{LISTEN}}", s.listen, "{{CONSOLE}}", s.console, "{{BOILER}}", boiler,
		"{{EXTRA}}", s.extra, "{{POLL}}", s.poll).Replace(consoleConfig)
	return writeConfig(t, dir, text)
}

// consoleURL is the console's base URL on the runtime's metrics port,
// dialled on loopback whatever address it listens on.
func consoleURL(t *testing.T, rt *Runtime, scheme string) string {
	t.Helper()
	if rt.Metrics == nil {
		t.Fatal("metrics endpoint not started")
	}
	addr := rt.Metrics.Addr()
	_, port, _ := strings.Cut(addr, "]:")
	if port == "" {
		port = addr[strings.LastIndex(addr, ":")+1:]
	}
	return scheme + "://127.0.0.1:" + port
}

// userEntry is a [[table]] of one user with a bcrypt hash of pw.
func userEntry(t *testing.T, table, name, pw string) string {
	t.Helper()
	return fmt.Sprintf("\n  [[%s]]\n  name = %q\n  password_hash = %q\n", table, name, bcryptHash(t, pw, bcrypt.MinCost))
}

// consoleHTTP is the console's base URL and a client for it.
func consoleHTTP(t *testing.T, rt *Runtime) (string, *http.Client) {
	t.Helper()
	return consoleURL(t, rt, "http"), &http.Client{Timeout: 10 * time.Second}
}

type reply struct {
	code int
	hdr  http.Header
	body string
}

func do(t *testing.T, c *http.Client, method, u, user, pass string, form url.Values) reply {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if strings.HasSuffix(u, "/events") || strings.Contains(u, "/events?") {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req = req.WithContext(ctx)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return reply{resp.StatusCode, resp.Header, string(b)}
}

var consolePaths = []string{"/console/", "/console/device/boiler", "/console/uplinks", "/console/config",
	"/console/api/state", "/console/events", "/console/static/console.js", "/console/static/console.css", "/console/nope"}

// TestConsoleOffLoopbackNeedsLogin: a console on all interfaces answers
// 401 to every page, stream and file without a login or with a wrong one;
// with the right one it serves them with a strict CSP; a write needs the
// page's CSRF token (403 without, and nothing reaches the device) and then
// goes through the write door, audited as source console with the user.
func TestConsoleOffLoopbackNeedsLogin(t *testing.T) {
	sim := startSim(t)
	sim.SetFloat32(modbussim.Holding, 0, 21.5, mapping.OrderABCD)
	hash := bcryptHash(t, "ladder-7", bcrypt.MinCost)
	secretFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(secretFile, []byte("Upstream-S3cret!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "0.0.0.0:0", console: fmt.Sprintf(`[console]
writes = true

  [[console.user]]
  name = "installer"
  password_hash = %q
`, hash), extra: fmt.Sprintf(`
[[upstream]]
name = "cloud"
url = "mqtt://127.0.0.1:1"
insecure_plaintext = true
username = "edge-user"
password_file = %q
`, secretFile)})
	rt, cfg := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)

	for _, p := range consolePaths {
		for _, cred := range [][2]string{{"", ""}, {"installer", "wrong"}, {"intruder", "ladder-7"}, {"installer", ""}} {
			r := do(t, c, "GET", base+p, cred[0], cred[1], nil)
			if r.code != http.StatusUnauthorized {
				t.Errorf("GET %s as %q/%q: %d, want 401", p, cred[0], cred[1], r.code)
			}
			if !strings.HasPrefix(r.hdr.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("GET %s: 401 without a Basic challenge (%q)", p, r.hdr.Get("WWW-Authenticate"))
			}
			if strings.Contains(r.body, "21.5") || strings.Contains(r.body, "boiler") {
				t.Errorf("GET %s unauthenticated leaked page content: %q", p, r.body)
			}
		}
	}
	if r := do(t, c, "POST", base+"/console/device/boiler/write", "", "", url.Values{"tag": {"setpoint"}, "value": {"42"}}); r.code != http.StatusUnauthorized {
		t.Errorf("POST write without login: %d, want 401", r.code)
	}

	testwait.For(t, 10*time.Second, "a first poll", func() bool {
		return strings.Contains(do(t, c, "GET", base+"/console/device/boiler", "installer", "ladder-7", nil).body, "21.5")
	})
	for _, p := range []string{"/console/", "/console/device/boiler", "/console/uplinks", "/console/config"} {
		r := do(t, c, "GET", base+p, "installer", "ladder-7", nil)
		if r.code != 200 {
			t.Fatalf("GET %s logged in: %d %s", p, r.code, r.body)
		}
		csp := r.hdr.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %s", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q allows unsafe sources", p, csp)
		}
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(r.body) || strings.Contains(r.body, " style=") || strings.Contains(r.body, " onclick=") {
			t.Errorf("GET %s: inline script or style in the page", p)
		}
		for _, secret := range []string{"Upstream-S3cret!", hash, "ladder-7"} {
			if strings.Contains(r.body, secret) {
				t.Errorf("GET %s renders a secret %q", p, secret)
			}
		}
	}

	writeURL := base + "/console/device/boiler/write"
	audit := filepath.Join(cfg.Gateway.DataDir, "audit", "writes.jsonl")
	for _, form := range []url.Values{{"tag": {"setpoint"}, "value": {"42"}}, {"tag": {"setpoint"}, "value": {"42"}, "csrf": {"forged"}}} {
		r := do(t, c, "POST", writeURL, "installer", "ladder-7", form)
		if r.code != http.StatusForbidden || !strings.Contains(r.body, "CSRF") {
			t.Errorf("POST write with csrf %q: %d %q, want 403 about CSRF", form.Get("csrf"), r.code, r.body)
		}
	}
	if sim.Writes() != 0 {
		t.Fatalf("a write without the CSRF token reached the device (%d writes)", sim.Writes())
	}
	if b, _ := os.ReadFile(audit); len(b) != 0 {
		t.Fatalf("a refused CSRF check reached the door: %s", b)
	}

	page := do(t, c, "GET", base+"/console/device/boiler", "installer", "ladder-7", nil).body
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the device page has no write form with a CSRF token:\n%s", page)
	}
	r := do(t, c, "POST", writeURL, "installer", "ladder-7", url.Values{"tag": {"setpoint"}, "value": {"42"}, "csrf": {m[1]}})
	if r.code != 200 || !strings.Contains(r.body, `id="write-result"`) || !strings.Contains(r.body, "done") {
		t.Fatalf("POST write with the token: %d\n%s", r.code, r.body)
	}
	if got := sim.Holding(10, 1)[0]; got != 42 {
		t.Fatalf("holding 10 = %d after the console wrote 42", got)
	}
	b, err := os.ReadFile(audit)
	if err != nil || !strings.Contains(string(b), `"kind":"console"`) || !strings.Contains(string(b), `"user":"installer"`) {
		t.Fatalf("the console write is not audited as console/installer: %s (%v)", b, err)
	}
	// The door's policy holds for the console too: out of range is refused.
	r = do(t, c, "POST", writeURL, "installer", "ladder-7", url.Values{"tag": {"setpoint"}, "value": {"500"}, "csrf": {m[1]}})
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(r.body, "out_of_range") {
		t.Fatalf("POST write of 500 (max 90): %d\n%s", r.code, r.body)
	}
}

// TestConsoleUsersWithoutWritesIsReadOnly: a logged-in user of a console
// whose [console] writes is not set sees no write form, and a POST with the
// page's own token (or any token) is refused before the door: the device and
// the audit file see nothing.
func TestConsoleUsersWithoutWritesIsReadOnly(t *testing.T) {
	sim := startSim(t)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "0.0.0.0:0", console: "[console]\n" + userEntry(t, "console.user", "installer", "ladder-7")})
	rt, cfg := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	var page string
	testwait.For(t, 10*time.Second, "the device page", func() bool {
		page = do(t, c, "GET", base+"/console/device/boiler", "installer", "ladder-7", nil).body
		return strings.Contains(page, "setpoint")
	})
	if strings.Contains(page, `name="csrf"`) {
		t.Error("a console without writes = true shows write forms to a logged-in user")
	}
	token := "none"
	if m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page); m != nil {
		token = m[1]
	}
	r := do(t, c, "POST", base+"/console/device/boiler/write", "installer", "ladder-7", url.Values{"tag": {"setpoint"}, "value": {"42"}, "csrf": {token}})
	if r.code != http.StatusForbidden {
		t.Errorf("POST write, logged in, writes off: %d %q, want 403", r.code, r.body)
	}
	if sim.Writes() != 0 {
		t.Fatalf("a console without writes = true wrote to the device (%d writes)", sim.Writes())
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.Gateway.DataDir, "audit", "writes.jsonl")); len(b) != 0 {
		t.Fatalf("a refused console write reached the door: %s", b)
	}
}

// TestConsoleLoopbackReadOnly: on loopback without users the pages need no
// login, and the console cannot write (no form, 403 on a forged POST).
func TestConsoleLoopbackReadOnly(t *testing.T) {
	sim := startSim(t)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0"})
	rt, _ := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	for _, p := range []string{"/console/", "/console/device/boiler", "/console/uplinks", "/console/config"} {
		if r := do(t, c, "GET", base+p, "", "", nil); r.code != 200 || r.hdr.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s on loopback: %d, CSP %q", p, r.code, r.hdr.Get("Content-Security-Policy"))
		}
	}
	if body := do(t, c, "GET", base+"/console/device/boiler", "", "", nil).body; strings.Contains(body, `name="csrf"`) {
		t.Error("a read-only console shows write forms")
	}
	r := do(t, c, "POST", base+"/console/device/boiler/write", "", "", url.Values{"tag": {"setpoint"}, "value": {"42"}})
	if r.code != http.StatusForbidden || sim.Writes() != 0 {
		t.Fatalf("POST write on a read-only console: %d, %d writes", r.code, sim.Writes())
	}
	if r := do(t, c, "GET", base+"/", "", "", nil); r.code != 200 || !strings.Contains(r.body, "Overview") {
		t.Errorf("GET / does not lead to the console: %d", r.code)
	}
	// DNS rebinding: another site's name pointed at 127.0.0.1 reads nothing.
	req, _ := http.NewRequest("GET", base+"/console/device/boiler", nil)
	req.Host = "attacker.example:9272"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET with Host attacker.example: %d, want 403", resp.StatusCode)
	}
	for _, host := range []string{"localhost:9272", "[::1]:9272", "127.0.0.1"} {
		req, _ := http.NewRequest("GET", base+"/console/", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET with Host %s: %d, want 200", host, resp.StatusCode)
		}
	}
}

// TestConsoleOffLoopbackWithoutUsersIsOff: all interfaces, no users, not
// enabled explicitly: the console is not served at all (metrics stay).
func TestConsoleOffLoopbackWithoutUsersIsOff(t *testing.T) {
	sim := startSim(t)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "0.0.0.0:0"})
	rt, _ := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	for _, p := range consolePaths {
		if r := do(t, c, "GET", base+p, "", "", nil); r.code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404 (no console off loopback without users)", p, r.code)
		}
	}
	if r := do(t, c, "GET", base+"/metrics", "", "", nil); r.code != 200 {
		t.Errorf("/metrics: %d", r.code)
	}
}

// TestConsoleHTTPS: with cert_file and key_file the port speaks TLS only.
func TestConsoleHTTPS(t *testing.T) {
	sim := startSim(t)
	certFile, keyFile := selfSigned(t)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0",
		console: fmt.Sprintf("[console]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile)})
	rt, _ := startFromFile(t, path)
	tc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if r := do(t, tc, "GET", consoleURL(t, rt, "https")+"/console/", "", "", nil); r.code != 200 {
		t.Fatalf("GET https console: %d", r.code)
	}
	resp, err := http.Get(consoleURL(t, rt, "http") + "/console/")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP still serves the console with a certificate configured")
		}
	}
}

// TestConsoleConfigErrors: the keys' mistakes at their lines.
func TestConsoleConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, listen, console, want string }{
		{"writes without users", "127.0.0.1:0", "[console]\nwrites = true\n", "console.writes: writes from the console need an authenticated user"},
		{"enabled off loopback", "0.0.0.0:9272", "[console]\nenabled = true\n", "console.enabled: [metrics] listen \"0.0.0.0:9272\" is reachable from the network"},
		{"plain password", "127.0.0.1:0", "[console]\n[[console.user]]\nname = \"a\"\npassword_hash = \"hunter2\"\n", "console.user[0].password_hash: not a bcrypt hash"},
		{"cert without key", "127.0.0.1:0", "[console]\ncert_file = \"c.pem\"\n", "console.key_file: cert_file and key_file go together"},
		{"unknown key", "127.0.0.1:0", "[console]\nwrite = true\n", "console.write: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConsoleConfig(t, "127.0.0.1:1", consoleSetup{listen: tc.listen, console: tc.console})
			_, err := configs.Load(path, Drivers(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "edged.toml:") {
				t.Errorf("error %v names no file:line", err)
			}
		})
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key (PEM).
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edged console test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "console.crt"), filepath.Join(dir, "console.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestConsoleRTUDevicePage: a Modbus RTU device over a socat pty pair; its
// page shows the serial bus (line settings, utilisation, each device's
// cycle against its interval) next to the tags and the read plan.
func TestConsoleRTUDevicePage(t *testing.T) {
	pty, err := modbussim.StartPtyPair(t.TempDir())
	if errors.Is(err, modbussim.ErrNoSocat) {
		t.Fatalf("%v: run `make test-deps`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pty.Close() })
	sim := modbussim.New()
	sim.SetHolding(0, 7)
	resp, err := sim.ServeRTU(pty.B, modbussim.RTUOptions{Units: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Close() })
	dir := t.TempDir()
	path := writeConfig(t, dir, `[gateway]
id = "bus"
data_dir = "`+dir+`"
[broker]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[[device]]
name = "meter"
driver = "modbus-rtu"
port = "`+pty.A+`"
baud = 19200
unit_id = 1
poll_interval = "50ms"
timeout = "100ms"
  [[device.tag]]
  name = "v"
  area = "holding_register"
  address = 0
  type = "uint16"
`)
	rt, _ := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	var body string
	testwait.For(t, 10*time.Second, "the first value on the page", func() bool {
		body = do(t, c, "GET", base+"/console/device/meter", "", "", nil).body
		return strings.Contains(body, `data-k="t:meter:v:v">7<`)
	})
	for _, want := range []string{"Serial bus " + pty.A, "19200 8E1", "utilisation", "cycle", "of 50ms", "holding_register 0", "Read plan"} {
		if !strings.Contains(body, want) {
			t.Errorf("the RTU device page lacks %q:\n%s", want, body)
		}
	}
}

// TestConsoleLogsInTheBrokersUsers: the console takes the same hashed
// users as the local broker; off loopback, a [[broker.user]] logs in with
// its password, and nobody else does.
func TestConsoleLogsInTheBrokersUsers(t *testing.T) {
	sim := startSim(t)
	sim.SetFloat32(modbussim.Holding, 0, 21.5, mapping.OrderABCD)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "0.0.0.0:0", console: userEntry(t, "broker.user", "hmi", "hmi-pass-3")})
	rt, _ := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	for _, cred := range [][2]string{{"", ""}, {"hmi", "wrong"}, {"other", "hmi-pass-3"}} {
		if r := do(t, c, "GET", base+"/console/", cred[0], cred[1], nil); r.code != http.StatusUnauthorized {
			t.Errorf("GET /console/ as %q/%q: %d, want 401", cred[0], cred[1], r.code)
		}
	}
	testwait.For(t, 10*time.Second, "the broker's user sees the device", func() bool {
		return strings.Contains(do(t, c, "GET", base+"/console/device/boiler", "hmi", "hmi-pass-3", nil).body, "21.5")
	})
}

// TestConsoleShowsLostMessages: messages the cloud broker refused for good
// (mosquitto's ACL: PUBACK 0x87) leave the buffer uncounted as dropped by
// a cap; the overview and the uplinks page must still show them as lost,
// with the reason, or the installer reads "dropped 0" while the cloud never
// got them.
func TestConsoleShowsLostMessages(t *testing.T) {
	sim := startSim(t)
	mq := mosquittotest.Start(t, mosquittotest.Options{ACL: "user edged-test\ntopic write edged/it/seq/ok"})
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0",
		extra: upstreamTOML(mq, mq.TLSAddr(), "cloud", `topics = ["edged/it/seq/#"]`)})
	rt, _ := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	testwait.For(t, 20*time.Second, "the uplink online", func() bool {
		return strings.Contains(do(t, c, "GET", base+"/console/", "", "", nil).body, `data-k="u:cloud:state" data-v="online"`)
	})
	const n = 20
	publishSeq(t, rt, "edged/it/seq/ok", 0, n)
	publishSeq(t, rt, "edged/it/seq/denied", 0, n)
	var overview string
	testwait.For(t, 20*time.Second, "the refused messages settled", func() bool {
		overview = do(t, c, "GET", base+"/console/", "", "", nil).body
		return strings.Contains(overview, fmt.Sprintf(`data-k="u:cloud:acked">%d<`, n)) &&
			strings.Contains(overview, `data-k="u:cloud:depth">0<`)
	})
	if want := fmt.Sprintf(`data-k="u:cloud:lost">%d<`, n); !strings.Contains(overview, want) {
		t.Errorf("the overview does not show %d messages lost (%s):\n%s", n, want, overview)
	}
	up := do(t, c, "GET", base+"/console/uplinks", "", "", nil).body
	if !strings.Contains(up, fmt.Sprintf(`data-k="u:cloud:lost">%d<`, n)) || !strings.Contains(up, "not_authorized") {
		t.Errorf("the uplinks page does not show %d messages lost as not_authorized:\n%s", n, up)
	}
	var state map[string]string
	if err := json.Unmarshal([]byte(do(t, c, "GET", base+"/console/api/state", "", "", nil).body), &state); err != nil {
		t.Fatal(err)
	}
	if state["u:cloud:lost"] != strconv.Itoa(n) {
		t.Errorf("/console/api/state u:cloud:lost = %q, want %d", state["u:cloud:lost"], n)
	}
}

// TestConsoleConfigPageHidesSecretsOfARefusedReload: a refused reload's
// errors are shown at file:line on the config page, but a password in a
// mistyped URL is not (the issue: no secrets ever rendered).
func TestConsoleConfigPageHidesSecretsOfARefusedReload(t *testing.T) {
	sim := startSim(t)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0"})
	rt, cfg := startFromFile(t, path)
	bad := filepath.Join(filepath.Dir(path), "bad.toml")
	text := "[gateway]\nid = \"it\"\n[[upstream]]\nname = \"c\"\nurl = \"mqtts:/plant7:Sup3rS3cret@b.example.com:8883\"\n" +
		"[[device]]\nname = \"ua\"\ndriver = \"opcua\"\nendpoint = \"https://op:Sup3rS3cret@10.0.0.1:4840\"\n  [[device.tag]]\n  name = \"a\"\n  node = \"i=5\"\n"
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Reload(context.Background(), bad, cfg); err == nil {
		t.Fatal("a bad config reloaded")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	body := do(t, c, "GET", consoleURL(t, rt, "http")+"/console/config", "", "", nil).body
	for _, want := range []string{"refused", "bad.toml:5", "bad.toml:9"} {
		if !strings.Contains(body, want) {
			t.Errorf("the config page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "Sup3rS3cret") {
		t.Errorf("the config page shows a password:\n%s", body)
	}
	// The running config is still the one started from: its path and the
	// SHA-256 of its file.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if fp := "sha256:" + hex.EncodeToString(sum[:8]); !strings.Contains(body, "<td>"+path+"</td>") || !strings.Contains(body, fp) {
		t.Errorf("the config page does not show the running file %s with fingerprint %s:\n%s", path, fp, body)
	}
}

// TestConsoleShowsTheInFlightWindowFilling: when the cloud broker stops
// acknowledging, the uplinks page shows the in-flight window full (what
// is stuck), not only its size.
func TestConsoleShowsTheInFlightWindowFilling(t *testing.T) {
	sim := startSim(t)
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0",
		extra: upstreamTOML(mq, proxy.Addr(), "cloud", "topics = [\"edged/it/seq/#\"]\nmax_inflight = 10\nack_timeout = \"1h\"")})
	rt, _ := startFromFile(t, path)
	base, c := consoleHTTP(t, rt)
	testwait.For(t, 20*time.Second, "the uplink online", func() bool {
		return strings.Contains(do(t, c, "GET", base+"/console/uplinks", "", "", nil).body, `data-k="u:cloud:state" data-v="online"`)
	})
	proxy.StopAcks()
	publishSeq(t, rt, "edged/it/seq/a", 0, 50)
	var page string
	testwait.For(t, 20*time.Second, "the window full on the page", func() bool {
		page = do(t, c, "GET", base+"/console/uplinks", "", "", nil).body
		return strings.Contains(page, `data-k="u:cloud:inflight">10<`)
	})
	if !strings.Contains(page, "in flight <span") || !strings.Contains(page, "of window 10") {
		t.Errorf("the uplinks page does not say how full the in-flight window is:\n%s", page)
	}
	proxy.Restore()
	testwait.For(t, 30*time.Second, "the window empty again", func() bool {
		return strings.Contains(do(t, c, "GET", base+"/console/uplinks", "", "", nil).body, `data-k="u:cloud:inflight">0<`)
	})
}

// TestConsoleReadsOnlyTheTagsItShows: the console's once-a-second read of
// the device states copies no tags, and its read of one device's tags
// copies no other device's: with a browser on one page of a large config,
// copying every tag each second is what the pipeline pays for in garbage
// collection (the bar workload: 5,000 tags).
func TestConsoleReadsOnlyTheTagsItShows(t *testing.T) {
	sim := startSim(t)
	var extra strings.Builder
	for d := range 2 {
		fmt.Fprintf(&extra, "[[device]]\nname = \"big%d\"\ndriver = \"modbus-tcp\"\naddress = %q\npoll_interval = \"1s\"\n", d, sim.Addr())
		for i := range 200 {
			fmt.Fprintf(&extra, "  [[device.tag]]\n  name = \"t%d\"\n  area = \"holding_register\"\n  address = %d\n  type = \"uint16\"\n", i, i)
		}
	}
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0", extra: extra.String()})
	rt, _ := startFromFile(t, path)
	v := rt.console
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		for range 20 {
			f()
		}
		runtime.ReadMemStats(&b)
		return (b.TotalAlloc - a.TotalAlloc) / 20
	}
	oneDevice := allocated(func() { _ = v.Tags("big0") })
	states := allocated(func() { _ = v.Devices() })
	t.Logf("per call: Devices %d B, Tags(one of 200) %d B", states, oneDevice)
	// A copied tag takes ~120 B: 400 of them ~47 KB, which Devices must not
	// copy (it takes ~8 KB: the drivers' stats); Tags("big0") copies and
	// formats its 200 (~52 KB), not big1's 200 too (~82 KB).
	if states > 24<<10 {
		t.Errorf("Devices allocates %d B a call: it copies the tags of every device", states)
	}
	if oneDevice > 64<<10 {
		t.Errorf("Tags(one device) allocates %d B a call: it copies the tags of the others", oneDevice)
	}
}
