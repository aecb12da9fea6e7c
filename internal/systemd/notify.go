// Package systemd speaks the service manager's side protocols that edged
// needs to run for years under systemd: readiness and status notification
// (sd_notify) and the watchdog. It is a few datagrams on a unix socket, so it
// is written here instead of pulling in a dependency.
//
// Every function is a no-op that returns nil when the process was not started
// by systemd with NOTIFY_SOCKET set (a terminal, a test, a container), so
// callers never need to ask whether they run under systemd.
//
// The package knows nothing about what edged runs: the caller says when it is
// ready and what "alive" means.
package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variables set by systemd for a Type=notify service.
const (
	envNotifySocket = "NOTIFY_SOCKET"
	envWatchdogUsec = "WATCHDOG_USEC"
	envWatchdogPID  = "WATCHDOG_PID"
)

// Notify sends one notification message to the service manager, e.g.
// "READY=1" or "STATUS=polling 3 devices"; several assignments may be joined
// with newlines. It returns nil without doing anything when NOTIFY_SOCKET is
// unset. A socket path starting with '@' is in the abstract namespace.
//
// Errors are for logging: a failed notification must not stop the gateway
// (systemd then reports a start timeout or a watchdog failure, which is the
// right outcome for a process that cannot talk to it).
func Notify(state string) error {
	path := os.Getenv(envNotifySocket)
	if path == "" {
		return nil
	}
	if path[0] != '/' && path[0] != '@' {
		return fmt.Errorf("sd_notify: %s=%q is neither an absolute path nor an abstract socket", envNotifySocket, path)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL byte).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: connect %s: %w", path, err)
	}
	defer conn.Close()
	// Never block the caller on a stuck manager; datagrams are tiny and a
	// live systemd reads them at once.
	if err := conn.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: send %q to %s: %w", firstLine(state), path, err)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Ready tells systemd that start-up is complete: for a Type=notify unit,
// `systemctl start` returns and units ordered after edged start only now.
func Ready() error { return Notify("READY=1") }

// Stopping tells systemd that a graceful shutdown has begun, so that
// `systemctl status` shows "deactivating" while devices and the broker stop.
func Stopping() error { return Notify("STOPPING=1") }

// Reloading tells systemd that the configuration is being reloaded; the
// caller sends Ready again when the reload is complete. MONOTONIC_USEC is
// included as Type=notify-reload units require it.
func Reloading() error {
	return Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
}

// Status sets the one-line status that `systemctl status edged` shows.
// Line breaks are replaced by spaces: a newline would end the assignment.
func Status(s string) error {
	return Notify("STATUS=" + strings.NewReplacer("\r", " ", "\n", " ").Replace(s))
}

// WatchdogInterval returns the watchdog timeout systemd enforces on this
// process (WatchdogSec= in the unit, passed as WATCHDOG_USEC), or 0 when the
// watchdog is off, meant for another process (WATCHDOG_PID is set and is not
// ours) or malformed. The process must send a keep-alive more often than
// this; sd_watchdog_enabled(3) recommends every half interval.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv(envWatchdogUsec), 10, 63)
	if err != nil || usec == 0 {
		return 0
	}
	if p := os.Getenv(envWatchdogPID); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0
		}
	}
	return time.Duration(usec) * time.Microsecond
}
