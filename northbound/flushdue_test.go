package northbound

import "testing"

// An ack-clocked stream through a full window is written in batches, and
// a full window never waits on PUBACKs that cannot come (nothing of it
// written).
func TestFlushDue(t *testing.T) {
	for _, window := range []int{1, 2, 3, 8, 100, 1000} {
		for written := 0; written <= window; written++ {
			if !flushDue(written, window-written, window) && written == 0 {
				t.Fatalf("window %d: all buffered, none written, and no flush: deadlock", window)
			}
		}
		// The stream: each PUBACK frees a slot, which the next PUBLISH
		// takes at once; a write sends what is buffered.
		written, buffered, writes := window, 0, 0
		const n = 10000
		for range n {
			written--
			buffered++
			if flushDue(written, buffered, window) {
				written, buffered = written+buffered, 0
				writes++
			}
		}
		if want := n / max(1, window/8); writes > want {
			t.Errorf("window %d: %d writes for %d messages, want at most %d", window, writes, n, want)
		}
	}
}
