package opcua

import (
	"bytes"
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

// The tests in this file run the edged binary: `edged write` to an OPC UA
// tag, with a daemon running (the write goes through its control socket
// and its session) and without one (the command opens the session itself
// and waits for it: before, it failed at once with "device is offline").
// They live here to reuse this package's test servers.

var (
	edgedOnce sync.Once
	edgedBin  string
	edgedErr  error
)

func edgedBinary(t *testing.T) string {
	t.Helper()
	edgedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edged-opcua-bin-")
		if err != nil {
			edgedErr = err
			return
		}
		edgedBin = filepath.Join(dir, "edged")
		out, err := exec.Command("go", "build", "-o", edgedBin, "../../cmd/edged").CombinedOutput()
		if err != nil {
			edgedErr = fmt.Errorf("build edged: %v\n%s", err, out)
		}
	})
	if edgedErr != nil {
		t.Fatal(edgedErr)
	}
	return edgedBin
}

// uaConfig writes an edged.toml with one OPC UA device "plc" whose tag
// "setpoint" (node) is writable; security holds its security keys.
func uaConfig(t *testing.T, data, endpoint, node, security string) string {
	t.Helper()
	cfg := fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q
[broker]
listen = "127.0.0.1:0"
[metrics]
disabled = true
[[device]]
name = "plc"
driver = "opcua"
endpoint = %q
timeout = "10s"
publishing_interval = "50ms"
%s
  [[device.tag]]
  name = "setpoint"
  node = %q
  writable = true
  max = 1000
`, data, endpoint, security, node)
	path := filepath.Join(t.TempDir(), "edged.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cliWrite runs `edged write` and returns its exit code and output.
func cliWrite(t *testing.T, path string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(edgedBinary(t), append([]string{"write", "-c", path, "-timeout", "60s"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// runDaemon starts `edged run` and waits until its control socket is
// ready and the device online; it is stopped at the end of the test.
func runDaemon(t *testing.T, path string) {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(edgedBinary(t), "run", "-c", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ready := regexp.MustCompile(`(?s)control socket ready.*device online|device online.*control socket ready`)
	deadline := time.Now().Add(60 * time.Second)
	for !ready.MatchString(out.String()) {
		select {
		case <-exited:
			t.Fatalf("edged run exited:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready with the device online after 60s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkWritten(t *testing.T, code int, out, errOut, want, via string) {
	t.Helper()
	if code != 0 || !strings.Contains(out, "plc/setpoint = "+want+" (written "+want) || !strings.Contains(out, "read back") || !strings.Contains(out, via) {
		t.Fatalf("edged write: exit %d, want 0 with the read-back %s by %s:\nstdout: %s\nstderr: %s", code, want, via, out, errOut)
	}
}

func TestCLIWriteGopcua(t *testing.T) {
	ts := startServer(t, map[string]any{"setpoint": 10.0})
	path := uaConfig(t, dataDir(t), ts.URL(), "ns=2;s=setpoint", `security_policy = "None"
security_mode = "None"`)

	t.Run("no_daemon", func(t *testing.T) {
		code, out, errOut := cliWrite(t, path, "plc", "setpoint", "42.5")
		checkWritten(t, code, out, errOut, "42.5", "no daemon runs")
		if got := ts.get("setpoint"); got != 42.5 {
			t.Fatalf("server setpoint = %v, want 42.5", got)
		}
		// The same value again: the read back does not wait for a change
		// the subscription would never report.
		code, out, errOut = cliWrite(t, path, "plc", "setpoint", "42.5")
		checkWritten(t, code, out, errOut, "42.5", "no daemon runs")
	})
	t.Run("daemon", func(t *testing.T) {
		runDaemon(t, path)
		code, out, errOut := cliWrite(t, path, "plc", "setpoint", "43.5")
		checkWritten(t, code, out, errOut, "43.5", "the running daemon")
		if got := ts.get("setpoint"); got != 43.5 {
			t.Fatalf("server setpoint = %v, want 43.5", got)
		}
		// The daemon's subscription has reported 43.5 by now or soon: the
		// next write shows it as the old value.
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			code, out, errOut = cliWrite(t, path, "plc", "setpoint", fmt.Sprint(50+i))
			checkWritten(t, code, out, errOut, fmt.Sprint(50+i), "the running daemon")
			if strings.Contains(out, fmt.Sprintf(", was %d,", 50+i-1)) || (i == 0 && strings.Contains(out, ", was 43.5,")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no old value in %q", out)
			}
		}
		before := ts.get("setpoint")
		code, _, errOut = cliWrite(t, path, "plc", "setpoint", "1001")
		if code != 2 || !strings.Contains(errOut, "refused (out_of_range)") || ts.get("setpoint") != before {
			t.Fatalf("above max: exit %d: %s (server %v)", code, errOut, ts.get("setpoint"))
		}
	})
}

func TestCLIWriteNodeOPCUA(t *testing.T) {
	data := dataDir(t)
	ns := startNodeServer(t, "--trust-user-cert", filepath.Join(data, pkiDir, filepath.FromSlash(ownCertFile)))
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(nodePass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := uaConfig(t, data, ns.URL(), ns.node("Setpoint"), fmt.Sprintf(`security_policy = "Basic256Sha256"
security_mode = "SignAndEncrypt"
auth = "username"
username = %q
password_file = %q
trusted_thumbprints = [%q]`, nodeUser, pw, ns.sha1))

	t.Run("no_daemon", func(t *testing.T) {
		code, out, errOut := cliWrite(t, path, "plc", "setpoint", "42.5")
		checkWritten(t, code, out, errOut, "42.5", "no daemon runs")
		if !strings.Contains(out, ", was 20.5,") {
			t.Errorf("no old value in %q", out)
		}
	})
	t.Run("daemon", func(t *testing.T) {
		runDaemon(t, path)
		code, out, errOut := cliWrite(t, path, "plc", "setpoint", "44.25")
		checkWritten(t, code, out, errOut, "44.25", "the running daemon")
	})
}
