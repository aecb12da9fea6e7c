// Package testwait is how edged's tests wait for something to happen: a
// condition polled until it holds, with a deadline generous enough for a
// loaded machine, never a sleep for luck. It knows nothing of what is
// waited for; it is imported by tests only.
package testwait

import (
	"testing"
	"time"
)

// Timeout is the deadline for waits that name none: long enough for a
// 2-core machine with a load average of 10, short enough to fail a hung
// test in seconds rather than minutes.
const Timeout = 10 * time.Second

// maxPoll is the longest pause between two looks at the condition.
const maxPoll = 20 * time.Millisecond

// Until polls cond — at once, then after 1 ms, doubling up to 20 ms — until
// it holds or timeout passes, and reports whether it held.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
	return true
}

// For waits like Until and fails the test, naming what it waited for, if
// cond does not hold within timeout. detail, when given, is called at the
// failure and its text added (the state seen last).
func For(t testing.TB, timeout time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	if Until(timeout, cond) {
		return
	}
	msg := ""
	for _, d := range detail {
		msg += d()
	}
	t.Fatalf("timed out after %v waiting for %s%s", timeout, what, msg)
}
