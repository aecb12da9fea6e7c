package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunTalksToSystemd runs the built binary as systemd would run it for a
// Type=notify unit with WatchdogSec=: NOTIFY_SOCKET points at a unixgram
// socket this test reads, WATCHDOG_USEC is set. The device points at a
// closed port; edged must still report ready once broker and devices are
// started, keep the watchdog fed, survive `systemctl reload` (SIGHUP) and
// say STOPPING=1 on SIGTERM.
func TestRunTalksToSystemd(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "edged-notify-") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s", what)
			}
			return m
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s notification within 15s", what)
			return ""
		}
	}

	// A port chosen here, so that the test can dial the broker the moment
	// READY=1 arrives, without waiting for edged's log.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr := l.Addr().String()
	l.Close()

	dir := t.TempDir()
	cfg := `[gateway]
id = "gw-sd"
data_dir = "` + filepath.Join(dir, "state") + `"
[broker]
listen = "` + brokerAddr + `"
[metrics]
disabled = true
` + deadDevice
	path := writeConfig(t, dir, cfg)
	// 400ms watchdog: a keep-alive every 200ms.
	cmd, out := startRun(t, path, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })

	ready := next("READY")
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, "STATUS=gateway gw-sd: 1 device(s)") {
		t.Fatalf("first notification %q, want READY=1 with a status line", ready)
	}
	// Ready means started: the broker already listens.
	if c, err := net.DialTimeout("tcp", brokerAddr, 5*time.Second); err != nil {
		t.Fatalf("READY=1 sent but the broker at %s refuses connections: %v", brokerAddr, err)
	} else {
		c.Close()
	}

	pings := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if got := next("WATCHDOG"); got != "WATCHDOG=1" {
				t.Fatalf("got %q while waiting for keep-alive %d", got, i+1)
			}
		}
	}
	pings(3)

	// systemctl reload: RELOADING=1, the reload, READY=1 again; keep-alives go on.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for seen := ""; ; {
		got := next("RELOADING or READY")
		switch {
		case strings.HasPrefix(got, "RELOADING=1"):
			seen = "reloading"
		case got == "READY=1" && seen == "reloading":
			seen = "ready"
		case got == "WATCHDOG=1":
		default:
			t.Fatalf("got %q during a reload", got)
		}
		if seen == "ready" {
			break
		}
	}
	out.wait(t, 15*time.Second, regexp.MustCompile(`config reloaded" unchanged=1`))
	pings(2)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		got := next("STOPPING")
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("got %q while waiting for STOPPING=1", got)
		}
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("edged run exited with %v after SIGTERM; output:\n%s", err, strings.Join(out.lines, "\n"))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("edged run did not exit within 15s of SIGTERM")
	}
	// Nothing after STOPPING=1: no keep-alive from a process shutting down.
	select {
	case got, ok := <-msgs:
		if ok {
			t.Errorf("notification %q after STOPPING=1", got)
		}
	default:
	}
}
