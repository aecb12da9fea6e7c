package mapping

import "math"

// Filter decides which samples of one tag are published (report by
// exception). Use one Filter per tag; the zero value is ready and takes its
// settings (Deadband, OnChange, MaxSilence) from each sample's Tag. A
// Filter is not safe for concurrent use; a tag is polled by one goroutine.
type Filter struct {
	seen    bool
	last    Value
	quality Quality
	lastMs  int64
}

// Pass reports whether s should be published, and if so remembers it as the
// last published sample. It passes:
//   - the first sample, and any sample whose quality or value kind differs
//     from the last published one;
//   - with Deadband > 0: a number farther than Deadband from the last
//     published one, a change to or from NaN or ±Inf, or any change of a
//     bool or string;
//   - with Deadband == 0 and OnChange: any change (NaN equals NaN);
//   - with Deadband == 0 and not OnChange: every sample;
//   - with MaxSilence > 0: a sample at least MaxSilence after the last
//     published one (a heartbeat), or one dated before it (the clock was
//     set back, so the silence cannot be measured).
//
// A sample with a nil Tag always passes. A NaN or ±Inf value of a tag with
// nan = "drop" never passes, and is not remembered.
func (f *Filter) Pass(s *Sample) bool {
	tag := s.Tag
	if tag != nil && tag.NaN == NaNDrop && s.Value.Kind == KindFloat && (math.IsNaN(s.Value.Float) || math.IsInf(s.Value.Float, 0)) {
		return false
	}
	pass := !f.seen || tag == nil ||
		s.Quality != f.quality || s.Value.Kind != f.last.Kind
	if !pass && tag.MaxSilence > 0 {
		elapsed := s.TimeMs - f.lastMs
		pass = elapsed < 0 || elapsed >= tag.MaxSilence.D().Milliseconds()
	}
	if !pass {
		switch {
		case tag.Deadband > 0:
			pass = outsideDeadband(f.last, s.Value, tag.Deadband)
		case tag.OnChange:
			pass = !s.Value.Equal(f.last)
		default:
			pass = true
		}
	}
	if pass {
		f.seen = true
		f.last = s.Value
		f.quality = s.Quality
		f.lastMs = s.TimeMs
	}
	return pass
}

// outsideDeadband compares two values of the same kind.
func outsideDeadband(last, v Value, deadband float64) bool {
	if v.Equal(last) {
		return false
	}
	switch v.Kind {
	case KindInt:
		// The difference of two int64 always fits a uint64.
		var d uint64
		if v.Int >= last.Int {
			d = uint64(v.Int) - uint64(last.Int)
		} else {
			d = uint64(last.Int) - uint64(v.Int)
		}
		return float64(d) > deadband
	case KindUint:
		d := v.Uint - last.Uint
		if last.Uint > v.Uint {
			d = last.Uint - v.Uint
		}
		return float64(d) > deadband
	case KindFloat:
		a, b := v.Float, last.Float
		if math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0) {
			return true // not equal, and no distance to measure
		}
		return math.Abs(a-b) > deadband
	}
	return true // bool, string: any change
}
