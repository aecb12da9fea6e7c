package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/testwait"
)

// lockedLog collects every log line of a runtime.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestNoSecretInLogs runs what an installer's day brings with upstream
// passwords, with every log line captured at debug level: a daemon start
// with a password from password_file and a wrong one from ${ENV} (refused
// by mosquitto), an outage and reconnects, a reload, a config with
// credentials in the url (refused at load), and stop. Neither password
// appears in any log line or error.
func TestNoSecretInLogs(t *testing.T) {
	const (
		user   = "plant7"
		secret = "Pw-7f3e-TEST-SECRET"  // the right password
		wrong  = "Wrong-9a1b-TEST-PASS" // a wrong one, from the environment
		inURL  = "Url-55c2-TEST-SECRET" // in a url, which is refused
	)
	mq := mosquittotest.Start(t, mosquittotest.Options{Username: user, Password: secret})
	proxy := mosquittotest.NewProxy(t, mq.PasswordAddr())
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/it/seq/#")
	boiler, meter := startSim(t), startSim(t)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	dir := filepath.Dir(path)
	if err := os.WriteFile(filepath.Join(dir, "cloud-password"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EDGED_TEST_WRONG_PASSWORD", wrong)
	upstreams := func(keepalive string) string {
		return fmt.Sprintf(`
[[upstream]]
name = "cloud"
url = "mqtts://%s"
client_id = "edged-it-cloud"
ca_file = %q
username = %q
password_file = "cloud-password"
topics = ["edged/it/seq/#"]
keepalive = %q
max_bytes = "16MiB"

[[upstream]]
name = "wrong"
url = "mqtts://%s"
client_id = "edged-it-wrong"
ca_file = %q
username = %q
password = "${EDGED_TEST_WRONG_PASSWORD}"
topics = ["edged/it/seq/#"]
max_bytes = "16MiB"
`, proxy.Addr(), mq.CAFile, user, keepalive, mq.PasswordAddr(), mq.CAFile, user)
	}
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(append([]byte(nil), base...), upstreams("5s")...), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs lockedLog
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var errs []string
	cfg, err := configs.Load(path, Drivers(log))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = rt.Stop()
		}
	})
	ups := rt.Uplinks()
	testwait.For(t, 10*time.Second, "the uplink with the right password online", func() bool { return ups[0].Stats().State == "online" })
	testwait.For(t, 10*time.Second, "the one with the wrong password refused", func() bool {
		return ups[1].Stats().ConnectAttempts >= 2 && ups[1].Stats().LastErr != ""
	})
	errs = append(errs, ups[1].Stats().LastErr)
	publishSeq(t, rt, "edged/it/seq/a", 0, 50)
	cloud.WaitFor(10*time.Second, "the first messages", func(ms []mqtttest.Message) bool { return allSeqs(seqsOn(ms, "edged/it/seq/a"), 50) })

	// An outage and the reconnect.
	before := ups[0].Stats().Connects
	proxy.Cut()
	testwait.For(t, 10*time.Second, "offline", func() bool { return ups[0].Stats().State != "online" })
	publishSeq(t, rt, "edged/it/seq/a", 50, 100)
	proxy.Restore()
	testwait.For(t, 20*time.Second, "online again", func() bool { return ups[0].Stats().Connects > before })
	cloud.WaitFor(20*time.Second, "the backlog", func(ms []mqtttest.Message) bool { return allSeqs(seqsOn(ms, "edged/it/seq/a"), 100) })

	// A reload that restarts the uplink (keepalive changed).
	if err := os.WriteFile(path, append(append([]byte(nil), base...), upstreams("7s")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Reload(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "online after the reload", func() bool {
		u := rt.Uplinks()
		return len(u) == 2 && u[0].Stats().State == "online"
	})

	// Credentials in a url: refused at load (and at reload), without
	// showing them.
	bad := strings.Replace(upstreams("7s"), "mqtts://"+proxy.Addr(), "mqtts://"+user+":"+inURL+"@"+proxy.Addr(), 1)
	badPath := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badPath, append(append([]byte(nil), base...), bad...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := configs.Load(badPath, Drivers(log)); err == nil {
		t.Errorf("a url with credentials was accepted")
	} else {
		errs = append(errs, err.Error())
		if !strings.Contains(err.Error(), "upstream[0].url") || !strings.Contains(err.Error(), "password_file") {
			t.Errorf("the error does not name the key and the way out: %v", err)
		}
	}
	if _, _, err := rt.Reload(context.Background(), badPath, cfg); err == nil {
		t.Errorf("a reload to a url with credentials was accepted")
	} else {
		errs = append(errs, err.Error())
	}

	if err := rt.Stop(); err != nil {
		errs = append(errs, err.Error())
	}
	stopped = true
	all := logs.String() + "\n" + strings.Join(errs, "\n")
	lines := strings.Count(all, "\n")
	for _, s := range []string{secret, wrong, inURL} {
		for _, line := range strings.Split(all, "\n") {
			if strings.Contains(line, s) {
				t.Errorf("a secret shows in: %s", line)
			}
		}
	}
	if !strings.Contains(all, "not authorized") && !strings.Contains(all, "Not authorized") && !strings.Contains(all, "0x87") && !strings.Contains(all, "0x86") {
		t.Errorf("the refused login is not in the log: the flow did not run as meant\n%s", all)
	}
	t.Logf("%d log and error lines checked for 3 passwords", lines)
}
