package opcua

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// The tests in this file talk to node-opcua (testdata/nodeserver, installed
// by `make test-deps`), an OPC UA stack independent of gopcua that does
// what gopcua's test server cannot: Basic256Sha256 secure channels, user
// token checks, TranslateBrowsePathsToNodeIds and large subscriptions.

// Credentials of testdata/nodeserver/server.js.
const (
	nodeUser = "operator"
	nodePass = "s3cret-Pa55"
)

// nodeServerDir returns the node-opcua test peer's folder, failing the test
// when node or the package is missing.
func nodeServerDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "nodeserver"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed (%v): run `make test-deps`", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua", "package.json")); err != nil {
		t.Fatalf("node-opcua is not installed in %s (%v): run `make test-deps`", dir, err)
	}
	return dir
}

// nodeServer is testdata/nodeserver/server.js as a child process.
type nodeServer struct {
	t      testing.TB
	dir    string   // the script's folder
	pki    string   // the server's PKI, kept across restarts
	args   []string // extra arguments
	port   int
	ns     int    // index of urn:edged:test
	sha1   string // of the server certificate
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// slogTo logs text lines into w.
func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// startNodeServer starts server.js on a free port; t.Cleanup stops it.
func startNodeServer(t testing.TB, args ...string) *nodeServer {
	t.Helper()
	ns := &nodeServer{t: t, dir: nodeServerDir(t), pki: t.TempDir(), args: args}
	var err error
	for range 3 { // the port is free when asked for; retry if taken meanwhile
		ns.port = freePort(t)
		if err = ns.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start node-opcua server: %v", err)
	}
	t.Cleanup(ns.stop)
	return ns
}

func (ns *nodeServer) URL() string { return fmt.Sprintf("opc.tcp://127.0.0.1:%d", ns.port) }

// start runs the server on ns.port and waits for its ready line.
func (ns *nodeServer) start() error {
	args := append([]string{"server.js", "--port", fmt.Sprint(ns.port), "--pki", ns.pki}, ns.args...)
	cmd := exec.Command("node", args...)
	cmd.Dir = ns.dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	ns.stderr = &lockedBuffer{}
	cmd.Stderr = ns.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "ready ") {
				select {
				case ready <- line:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case line := <-ready:
		var port int
		if _, err := fmt.Sscanf(line, "ready port=%d ns=%d sha1=%s", &port, &ns.ns, &ns.sha1); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("ready line %q: %v", line, err)
		}
	case <-exited:
		return fmt.Errorf("server.js exited: %s", ns.stderr)
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("server.js not ready after 90s: %s", ns.stderr)
	}
	ns.cmd, ns.stdin, ns.exited = cmd, stdin, exited
	return nil
}

// stop closes the server's stdin (it shuts down) and waits, killing it if
// it lingers.
func (ns *nodeServer) stop() {
	if ns.cmd == nil {
		return
	}
	_ = ns.stdin.Close()
	select {
	case <-ns.exited:
	case <-time.After(10 * time.Second):
		_ = ns.cmd.Process.Kill()
		<-ns.exited
	}
	ns.cmd = nil
}

// kill ends the server abruptly, as a crash or power loss would.
func (ns *nodeServer) kill() {
	if ns.cmd == nil {
		return
	}
	_ = ns.cmd.Process.Kill()
	<-ns.exited
	ns.cmd = nil
}

// restart starts the server again on the same port with the same PKI
// (hence the same certificate), retrying while the port is held.
func (ns *nodeServer) restart() {
	ns.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ns.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ns.t.Fatalf("restart node-opcua server on port %d: %v", ns.port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// node is the NodeId of a variable in the test namespace.
func (ns *nodeServer) node(s string) string { return fmt.Sprintf("ns=%d;s=%s", ns.ns, s) }

// secure configures Basic256Sha256/SignAndEncrypt with the server's
// certificate pinned and the test user's password.
func (ns *nodeServer) secure(t testing.TB, password string) func(d *Device) {
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(d *Device) {
		d.SecurityPolicy, d.SecurityMode = "Basic256Sha256", "SignAndEncrypt"
		d.Auth, d.Username, d.PasswordFile = "username", nodeUser, pw
		d.TrustedThumbprints = []string{ns.sha1}
		d.Timeout = 10 * 1e9 // asymmetric crypto under -race on a loaded machine
		d.Keepalive = 1e9
	}
}

// waitChanging waits for two different good values of tag.
func (s *sink) waitChanging(t testing.TB, tag string) mapping.Value {
	t.Helper()
	var first *mapping.Value
	var last mapping.Value
	s.waitFor(t, 30*time.Second, tag+" changing (good)", func() bool {
		x, ok := s.sample(tag)
		if !ok || x.Quality != mapping.Good {
			return false
		}
		if first == nil {
			first = &x.Value
			return false
		}
		last = x.Value
		return !x.Value.Equal(*first)
	})
	return last
}

// Against node-opcua, one server for every case (starting one costs
// seconds). The restart case runs last.
func TestNodeOPCUA(t *testing.T) {
	edgedPKI := dataDir(t) // the edged certificate every device below uses
	ns := startNodeServer(t, "--trust-user-cert", filepath.Join(edgedPKI, pkiDir, filepath.FromSlash(ownCertFile)))

	// Basic256Sha256 + SignAndEncrypt + username/password: every type
	// arrives and keeps changing; a browse-path tag resolves through
	// TranslateBrowsePathsToNodeIds; a write lands on the server and comes
	// back through the subscription; a read-only node refuses a write.
	t.Run("secure_username_values_browse_path_write", func(t *testing.T) {
		d := newDevice(t, ns.URL(), ns.secure(t, nodePass),
			tag("counter", ns.node("Counter")), tag("temp", ns.node("Temp")),
			tag("running", ns.node("Running")), tag("mode", ns.node("Mode")),
			tag("profile", ns.node("Profile")),
			Tag{Spec: mapping.Spec{Name: "setpoint", Writable: true}, Node: ns.node("Setpoint")},
			Tag{Spec: mapping.Spec{Name: "speed"}, BrowsePath: fmt.Sprintf("%d:Line1/%d:Speed", ns.ns, ns.ns)},
			Tag{Spec: mapping.Spec{Name: "ghost_path"}, BrowsePath: fmt.Sprintf("%d:Line1/%d:NoSuch", ns.ns, ns.ns)},
		)
		s := start(t, d)
		s.waitState(t, southbound.StateOnline)
		if v := s.waitChanging(t, "counter"); v.Kind != mapping.KindInt {
			t.Errorf("counter = %+v, want an int", v)
		}
		if v := s.waitChanging(t, "temp"); v.Kind != mapping.KindFloat {
			t.Errorf("temp = %+v, want a float", v)
		}
		s.waitChanging(t, "running")
		s.waitValue(t, "mode", mapping.Value{Kind: mapping.KindString, Str: "AUTO"})
		s.waitFor(t, 20*time.Second, "profile [1,2.5,n]", func() bool {
			x, ok := s.sample("profile")
			return ok && x.Quality == mapping.Good && x.Value.Kind == mapping.KindJSON && strings.HasPrefix(x.Value.Str, "[1,2.5,")
		})
		// Speed is Counter*2 on the server, found by browse path.
		if v := s.waitChanging(t, "speed"); v.Kind != mapping.KindFloat || v.Float <= 0 {
			t.Errorf("speed = %+v, want a positive float", v)
		}
		s.waitFor(t, 20*time.Second, "ghost_path bad", func() bool { x, ok := s.sample("ghost_path"); return ok && x.Quality == mapping.Bad })
		if x, _ := s.sample("ghost_path"); x.Err == nil || !strings.Contains(x.Err.Error(), "BadNoMatch") {
			t.Errorf("ghost_path err = %v, want BadNoMatch", x.Err)
		}

		s.waitValue(t, "setpoint", f64(20.5))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Write(ctx, "setpoint", f64(42.5)); err != nil {
			t.Fatalf("write setpoint: %v", err)
		}
		s.waitValue(t, "setpoint", f64(42.5))
		if c := d.Counters(); c.Connects != 1 || c.Failures != 0 {
			t.Errorf("counters %+v, want one session and no failures", c)
		}
	})

	// A read-only node: the server's refusal comes back as a status.
	t.Run("write_read_only_refused", func(t *testing.T) {
		d := newDevice(t, ns.URL(), ns.secure(t, nodePass),
			Tag{Spec: mapping.Spec{Name: "mode", Writable: true}, Node: ns.node("Mode")})
		s := start(t, d)
		s.waitValue(t, "mode", mapping.Value{Kind: mapping.KindString, Str: "AUTO"})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := d.Write(ctx, "mode", mapping.Value{Kind: mapping.KindString, Str: "MANUAL"})
		var se *StatusError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "BadNotWritable") {
			t.Errorf("write to a read-only node: %v, want a BadNotWritable StatusError", err)
		}
	})

	// A wrong password: refused with a message that names the login, the
	// device stays offline and keeps trying — slowly, not at the reconnect
	// backoff (20–300 ms here), so as not to lock the account — and
	// nothing arrives.
	t.Run("wrong_password", func(t *testing.T) {
		d := newDevice(t, ns.URL(), ns.secure(t, "not-the-password"), tag("counter", ns.node("Counter")))
		s := start(t, d)
		s.waitState(t, southbound.StateOffline)
		time.Sleep(time.Second) // ~5 attempts at the reconnect backoff; none at loginRetry (2 s)
		if f := d.Counters().Failures; f != 1 {
			t.Errorf("%d failed logins within a second of the first, want 1 (retry after %v)", f, d.loginRetry)
		}
		s.waitFor(t, 20*time.Second, "a second failed attempt", func() bool { return d.Counters().Failures >= 2 })
		_, err := s.state()
		msg := fmt.Sprint(err)
		for _, want := range []string{"BadUserAccessDenied", `"` + nodeUser + `"`, "password"} {
			if !strings.Contains(msg, want) {
				t.Errorf("offline error %q does not mention %s", msg, want)
			}
		}
		if strings.Contains(msg, "trust") {
			t.Errorf("offline error %q blames certificates for a wrong password", msg)
		}
		if x, ok := s.sample("counter"); ok && x.Quality != mapping.Bad {
			t.Errorf("value delivered without a session: %+v", x)
		}
		if c := d.Counters(); c.Connects != 0 {
			t.Errorf("%d sessions with a wrong password", c.Connects)
		}
	})

	// No pin and an empty trusted/: the server certificate is refused and
	// saved to rejected/ with guidance; moved to trusted/, the running
	// driver connects and values flow.
	t.Run("untrusted_server_certificate_then_trusted", func(t *testing.T) {
		var logs lockedBuffer
		d := newDevice(t, ns.URL(), func(d *Device) {
			ns.secure(t, nodePass)(d)
			d.TrustedThumbprints = nil
			d.Logger = slogTo(&logs)
		}, tag("counter", ns.node("Counter")))
		d.minBackoff, d.maxBackoff = 100*time.Millisecond, 500*time.Millisecond
		s := start(t, d)
		s.waitState(t, southbound.StateOffline)
		_, err := s.state()
		var ue *UntrustedError
		if !errors.As(err, &ue) {
			t.Fatalf("offline because of %v, want an UntrustedError", err)
		}
		if ue.SHA1 != ns.sha1 {
			t.Errorf("refused certificate SHA-1 %s, the server's is %s", ue.SHA1, ns.sha1)
		}
		if filepath.Base(filepath.Dir(ue.SavedTo)) != rejectedDir {
			t.Errorf("saved to %s, want pki/rejected/", ue.SavedTo)
		}
		if _, err := os.Stat(ue.SavedTo); err != nil {
			t.Fatalf("rejected copy: %v", err)
		}
		for _, want := range []string{ue.SavedTo, "trusted", "trusted_thumbprints", ue.SHA256} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		s.waitFor(t, 10*time.Second, "the guidance in the log", func() bool {
			return strings.Contains(logs.String(), "refused the server's certificate") && strings.Contains(logs.String(), "no restart")
		})
		if x, ok := s.sample("counter"); ok && x.Quality != mapping.Bad {
			t.Errorf("value delivered from an untrusted server: %+v", x)
		}

		trusted := filepath.Join(filepath.Dir(filepath.Dir(ue.SavedTo)), trustedDir, filepath.Base(ue.SavedTo))
		if err := os.Rename(ue.SavedTo, trusted); err != nil {
			t.Fatal(err)
		}
		s.waitState(t, southbound.StateOnline)
		s.waitChanging(t, "counter")
		if _, err := os.Stat(ue.SavedTo); err == nil {
			t.Error("the certificate was rejected again after it was trusted")
		}
	})

	// X.509 user token: edged's application certificate, which the server
	// trusts as a user certificate, logs in; Aes128_Sha256_RsaOaep for the
	// channel.
	t.Run("certificate_user_auth", func(t *testing.T) {
		d := newDevice(t, ns.URL(), func(d *Device) {
			ns.secure(t, nodePass)(d)
			d.SecurityPolicy = "Aes128_Sha256_RsaOaep"
			d.Auth, d.Username, d.PasswordFile = "certificate", "", ""
		}, tag("counter", ns.node("Counter")))
		s := start(t, d)
		s.waitState(t, southbound.StateOnline)
		s.waitChanging(t, "counter")
	})

	// A user certificate the server does not trust is refused.
	t.Run("certificate_user_auth_untrusted_user", func(t *testing.T) {
		dir := t.TempDir()
		other := filepath.Join(dir, "other")
		if _, _, err := NewPKI(other).Own("urn:edged:other"); err != nil {
			t.Fatal(err)
		}
		d := newDevice(t, ns.URL(), func(d *Device) {
			ns.secure(t, nodePass)(d)
			d.Auth, d.Username, d.PasswordFile = "certificate", "", ""
			d.UserCertificate = filepath.Join(NewPKI(other).Dir, filepath.FromSlash(ownCertFile))
			d.UserKey = filepath.Join(NewPKI(other).Dir, filepath.FromSlash(ownKeyFile))
		}, tag("counter", ns.node("Counter")))
		s := start(t, d)
		s.waitState(t, southbound.StateOffline)
		s.waitFor(t, 20*time.Second, "a failed login", func() bool { return d.Counters().Failures >= 1 })
		c := d.Counters()
		if c.Connects != 0 {
			t.Errorf("%d sessions with an untrusted user certificate (last error %v)", c.Connects, c.LastError)
		}
		msg := fmt.Sprint(c.LastError)
		for _, want := range []string{"user certificate", d.UserCertificate, "BadIdentityTokenRejected"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
	})

	// The server process is killed and started again on the same port with
	// the same certificate: the device goes offline and resumes on its own.
	t.Run("server_killed_and_restarted", func(t *testing.T) {
		d := newDevice(t, ns.URL(), ns.secure(t, nodePass),
			tag("counter", ns.node("Counter")),
			Tag{Spec: mapping.Spec{Name: "speed"}, BrowsePath: fmt.Sprintf("%d:Line1/%d:Speed", ns.ns, ns.ns)})
		s := start(t, d)
		s.waitState(t, southbound.StateOnline)
		s.waitChanging(t, "counter")

		ns.kill()
		s.waitState(t, southbound.StateOffline)
		if x, _ := s.sample("counter"); x.Quality != mapping.Bad {
			t.Errorf("counter %+v while the server is down, want bad", x)
		}
		ns.restart()
		s.waitState(t, southbound.StateOnline)
		// Counter starts from 0 again in the new process: any two values
		// after the restart prove the new session delivers.
		s.waitChanging(t, "counter")
		s.waitChanging(t, "speed")
		if c := d.Counters(); c.Connects < 2 {
			t.Errorf("counters %+v, want a second session", c)
		}
	})
}
