package systemd

import (
	"fmt"
	"time"
)

// Watchdog feeds systemd's watchdog (WatchdogSec= in the unit) from the
// caller's main loop: select on C and call Ping when it fires. systemd kills
// and restarts the service when no keep-alive arrives within the interval, so
// keep-alives must come from a loop that stops when the process hangs — not
// from a goroutine of their own, which would go on ticking in a deadlocked
// process.
//
// When the watchdog is off (not under systemd, or no WatchdogSec=) C is nil,
// which blocks for ever in a select, and Ping and Stop do nothing.
type Watchdog struct {
	// C fires every half watchdog interval; nil when the watchdog is off.
	C <-chan time.Time

	interval time.Duration
	alive    func() error
	ticker   *time.Ticker
}

// NewWatchdog returns the watchdog systemd asked this process to feed (see
// WatchdogInterval). alive is called by every Ping before the keep-alive is
// sent; it says whether the process still does its work, and should return
// an error — or block — when it does not. nil means always alive.
func NewWatchdog(alive func() error) *Watchdog {
	w := &Watchdog{interval: WatchdogInterval(), alive: alive}
	if w.interval > 0 {
		w.ticker = time.NewTicker(w.interval / 2)
		w.C = w.ticker.C
	}
	return w
}

// Interval is the timeout systemd enforces, or 0 when the watchdog is off.
func (w *Watchdog) Interval() time.Duration { return w.interval }

// Ping checks that the process is alive and then sends a keep-alive
// (WATCHDOG=1). When alive fails no keep-alive is sent and the error is
// returned: if that lasts for the whole interval, systemd aborts the process
// with WatchdogSignal (SIGABRT, so the Go runtime writes every goroutine's
// stack to the journal) and Restart= starts it again. When alive blocks, Ping
// blocks, with the same outcome. Ping does nothing when the watchdog is off.
func (w *Watchdog) Ping() error {
	if w.interval <= 0 {
		return nil
	}
	if w.alive != nil {
		if err := w.alive(); err != nil {
			return fmt.Errorf("watchdog: not alive, keep-alive withheld: %w", err)
		}
	}
	return Notify("WATCHDOG=1")
}

// Stop stops the ticker; C fires no more.
func (w *Watchdog) Stop() {
	if w.ticker != nil {
		w.ticker.Stop()
	}
}
