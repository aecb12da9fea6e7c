package host

import (
	"testing"
	"time"
)

// TestPollTimesAreAHistogram: every poll counts in the distribution, not
// only the last one; buckets are cumulative and the sum is every poll's.
func TestPollTimesAreAHistogram(t *testing.T) {
	var c Counter
	for _, d := range []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second, time.Minute} {
		c.Polled(d)
	}
	st := c.Stats()
	h := st.PollTimes
	if h.Count != 5 {
		t.Fatalf("count %d, want 5", h.Count)
	}
	if want := (3*time.Millisecond + 80*time.Millisecond + 2*time.Second + time.Minute).Seconds(); h.Sum < want-1e-9 || h.Sum > want+1e-9 {
		t.Errorf("sum %v, want %v", h.Sum, want)
	}
	want := map[float64]uint64{0.005: 1, 0.01: 1, 0.025: 1, 0.05: 3, 1: 3, 2.5: 4, 30: 4}
	for i, le := range []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30} {
		if w, ok := want[le]; ok && h.Counts[i] != w {
			t.Errorf("le=%v: %d polls, want %d (%v)", le, h.Counts[i], w, h.Counts)
		}
	}
	if st.LastPoll != 60 {
		t.Errorf("last poll %v s, want 60", st.LastPoll)
	}
}
