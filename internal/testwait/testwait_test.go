package testwait

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 5 {
			n.Add(1)
			time.Sleep(time.Millisecond) // the thing waited for takes a while
		}
	}()
	if !Until(Timeout, func() bool { return n.Load() == 5 }) {
		t.Fatalf("n = %d, want 5", n.Load())
	}
}

func TestUntilGivesUp(t *testing.T) {
	calls := 0
	if Until(30*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("a condition that never holds held")
	}
	if calls < 2 {
		t.Fatalf("condition looked at %d times, want it polled", calls)
	}
}

// For fails the test that waited in vain, naming what it waited for.
func TestForFailsNamingWhat(t *testing.T) {
	ft := &fakeT{}
	func() {
		defer func() { _ = recover() }()
		For(ft, 10*time.Millisecond, "the moon", func() bool { return false }, func() string { return "; last seen: cheese" })
	}()
	if want := "timed out after 10ms waiting for the moon; last seen: cheese"; ft.msg != want {
		t.Fatalf("failure %q, want %q", ft.msg, want)
	}
}

type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = sprintf(format, args...)
	panic("fatal")
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
