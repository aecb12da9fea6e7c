package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeManager is the service manager's end of NOTIFY_SOCKET: a unixgram
// socket whose datagrams a test reads in order.
type fakeManager struct {
	conn *net.UnixConn
	msgs chan string
}

// listenNotify starts a fake manager on a socket path (abstract when it
// starts with '@') and points NOTIFY_SOCKET at it for the test.
func listenNotify(t *testing.T, path string) *fakeManager {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	m := &fakeManager{conn: conn, msgs: make(chan string, 100)}
	go func() {
		defer close(m.msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	t.Setenv(envNotifySocket, path)
	return m
}

// socketPath is a fresh path short enough for sun_path (108 bytes), which a
// t.TempDir named after a long test may not be.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdnotify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "notify.sock")
}

// next returns the next datagram, failing the test after a generous deadline.
func (m *fakeManager) next(t *testing.T) string {
	t.Helper()
	select {
	case msg, ok := <-m.msgs:
		if !ok {
			t.Fatal("notify socket closed")
		}
		return msg
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
		return ""
	}
}

func TestNotifyIsANoOpOutsideSystemd(t *testing.T) {
	t.Setenv(envNotifySocket, "")
	t.Setenv(envWatchdogUsec, "")
	for name, f := range map[string]func() error{
		"Ready": Ready, "Stopping": Stopping, "Reloading": Reloading,
		"Status": func() error { return Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v", name, err)
		}
	}
	w := NewWatchdog(func() error { t.Error("alive called with the watchdog off"); return nil })
	defer w.Stop()
	if w.C != nil || w.Interval() != 0 {
		t.Errorf("watchdog off: C %v, interval %v", w.C, w.Interval())
	}
	if err := w.Ping(); err != nil {
		t.Errorf("Ping with the watchdog off: %v", err)
	}
}

func TestNotifySendsStatesToPathAndAbstractSockets(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
	}{
		{"path", socketPath},
		{"abstract", func(t *testing.T) string {
			return fmt.Sprintf("@edged-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := listenNotify(t, tc.path(t))
			steps := []struct {
				send func() error
				want string
			}{
				{Ready, "READY=1"},
				{func() error { return Status("polling 3 devices\nsecond line") }, "STATUS=polling 3 devices second line"},
				{Stopping, "STOPPING=1"},
			}
			for _, s := range steps {
				if err := s.send(); err != nil {
					t.Fatalf("send %q: %v", s.want, err)
				}
				if got := m.next(t); got != s.want {
					t.Fatalf("got %q, want %q", got, s.want)
				}
			}
			if err := Reloading(); err != nil {
				t.Fatal(err)
			}
			got := m.next(t)
			first, usec, ok := strings.Cut(got, "\nMONOTONIC_USEC=")
			if n, err := strconv.ParseInt(usec, 10, 64); first != "RELOADING=1" || !ok || err != nil || n <= 0 {
				t.Fatalf("reloading: got %q, want RELOADING=1 and a positive MONOTONIC_USEC", got)
			}
		})
	}
}

func TestNotifyErrorsSayWhatFailed(t *testing.T) {
	t.Setenv(envNotifySocket, "relative/notify.sock")
	if err := Ready(); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Errorf("relative socket path: %v", err)
	}
	missing := socketPath(t) // its folder exists, the socket does not
	t.Setenv(envNotifySocket, missing)
	if err := Ready(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 30 * time.Second},
		{"30000000", me, 30 * time.Second},
		{"30000000", "1", 0}, // meant for another process
		{"30000000", "x", 0},
		{"0", "", 0},
		{"-5", "", 0},
		{"30s", "", 0},
	} {
		t.Run(tc.usec+"/"+tc.pid, func(t *testing.T) {
			t.Setenv(envWatchdogUsec, tc.usec)
			t.Setenv(envWatchdogPID, tc.pid)
			if got := WatchdogInterval(); got != tc.want {
				t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tc.usec, tc.pid, got, tc.want)
			}
		})
	}
}

func TestWatchdogPingsAtHalfTheIntervalOnlyWhileAlive(t *testing.T) {
	m := listenNotify(t, socketPath(t))
	t.Setenv(envWatchdogUsec, "200000") // 200ms: a tick every 100ms
	t.Setenv(envWatchdogPID, strconv.Itoa(os.Getpid()))
	var alive error
	calls := 0
	w := NewWatchdog(func() error { calls++; return alive })
	defer w.Stop()
	if w.Interval() != 200*time.Millisecond || w.C == nil {
		t.Fatalf("interval %v, C %v", w.Interval(), w.C)
	}

	// The caller's main loop: three ticks, three keep-alives.
	start := time.Now()
	for i := 0; i < 3; i++ {
		select {
		case <-w.C:
		case <-time.After(10 * time.Second):
			t.Fatal("watchdog ticker did not fire")
		}
		if err := w.Ping(); err != nil {
			t.Fatal(err)
		}
		if got := m.next(t); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q", i, got)
		}
	}
	if elapsed := time.Since(start); elapsed < 250*time.Millisecond {
		t.Errorf("3 ticks in %v: faster than every half interval (100ms)", elapsed)
	}

	// Not alive: the keep-alive is withheld. Datagrams from one sender
	// arrive in order, so the marker sent next must be the next one seen.
	alive = errors.New("gateway stuck")
	if err := w.Ping(); err == nil || !strings.Contains(err.Error(), "gateway stuck") {
		t.Fatalf("Ping while not alive: %v", err)
	}
	if err := Notify("MARK=1"); err != nil {
		t.Fatal(err)
	}
	if got := m.next(t); got != "MARK=1" {
		t.Fatalf("keep-alive sent although not alive: got %q", got)
	}
	if calls != 4 {
		t.Errorf("alive called %d times, want once per Ping (4)", calls)
	}

	// Since Go 1.23 a stopped ticker delivers nothing, not even a tick that
	// was due before Stop.
	w.Stop()
	select {
	case <-w.C:
		t.Error("ticker fires after Stop")
	case <-time.After(300 * time.Millisecond):
	}
}
