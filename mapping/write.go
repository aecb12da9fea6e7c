package mapping

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrWriteRefused is wrapped by every refusal of CheckWrite, so callers can
// tell a policy refusal (never sent to the device) from a device error.
var ErrWriteRefused = errors.New("write refused")

// CheckWrite applies the tag's write policy to a requested value: the tag
// must be writable, a numeric value must lie within [Min, Max], and at least
// WriteInterval must have passed since lastWrite (zero: never written).
// It does no I/O; a nil error means the driver may encode and send it.
func (s *Spec) CheckWrite(v Value, lastWrite, now time.Time) error {
	if !s.Writable {
		return fmt.Errorf("%w: tag %q is not writable (set writable = true on the tag to allow writes)", ErrWriteRefused, s.Name)
	}
	if v.Kind == KindNone {
		return fmt.Errorf("%w: tag %q: no value given", ErrWriteRefused, s.Name)
	}
	if f, ok := v.Float64(); ok && v.Kind != KindBool {
		if math.IsNaN(f) {
			return fmt.Errorf("%w: tag %q: NaN cannot be written", ErrWriteRefused, s.Name)
		}
		if s.Min != nil && f < *s.Min {
			return fmt.Errorf("%w: tag %q: %v is below min = %v", ErrWriteRefused, s.Name, f, *s.Min)
		}
		if s.Max != nil && f > *s.Max {
			return fmt.Errorf("%w: tag %q: %v is above max = %v", ErrWriteRefused, s.Name, f, *s.Max)
		}
	}
	if iv := s.WriteInterval.D(); iv > 0 && !lastWrite.IsZero() {
		if wait := lastWrite.Add(iv).Sub(now); wait > 0 {
			return fmt.Errorf("%w: tag %q: written %v ago, write_interval = %v (retry in %v)", ErrWriteRefused, s.Name,
				now.Sub(lastWrite).Round(time.Millisecond), iv, wait.Round(time.Millisecond))
		}
	}
	return nil
}
