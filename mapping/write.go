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

// Why CheckWrite refused, for callers that answer with a reason code (the
// write door): each refusal also matches ErrWriteRefused with errors.Is.
var (
	ErrNotWritable = errors.New("tag not writable")
	ErrOutOfRange  = errors.New("value out of the tag's min/max")
	ErrTooSoon     = errors.New("sooner than the tag's write_interval")
	ErrNoValue     = errors.New("no value given")
)

// refusal is a CheckWrite error: its text, and the kind it also matches.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return ErrWriteRefused.Error() + ": " + r.msg }

func (r *refusal) Is(target error) bool { return target == ErrWriteRefused || target == r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// CheckWrite applies the tag's write policy to a requested value: the tag
// must be writable, a numeric value must lie within [Min, Max], and at least
// WriteInterval must have passed since lastWrite (zero: never written).
// It does no I/O; a nil error means the driver may encode and send it. A
// refusal matches ErrWriteRefused and one of ErrNotWritable, ErrNoValue,
// ErrOutOfRange or ErrTooSoon.
func (s *Spec) CheckWrite(v Value, lastWrite, now time.Time) error {
	if !s.Writable {
		return refuse(ErrNotWritable, "tag %q is not writable (set writable = true on the tag to allow writes)", s.Name)
	}
	if v.Kind == KindNone {
		return refuse(ErrNoValue, "tag %q: no value given", s.Name)
	}
	if f, ok := v.Float64(); ok && v.Kind != KindBool {
		if math.IsNaN(f) {
			return refuse(ErrOutOfRange, "tag %q: NaN cannot be written", s.Name)
		}
		if s.Min != nil && f < *s.Min {
			return refuse(ErrOutOfRange, "tag %q: %v is below min = %v", s.Name, f, *s.Min)
		}
		if s.Max != nil && f > *s.Max {
			return refuse(ErrOutOfRange, "tag %q: %v is above max = %v", s.Name, f, *s.Max)
		}
	}
	if iv := s.WriteInterval.D(); iv > 0 && !lastWrite.IsZero() {
		if wait := lastWrite.Add(iv).Sub(now); wait > 0 {
			return refuse(ErrTooSoon, "tag %q: written %v ago, write_interval = %v (retry in %v)", s.Name,
				now.Sub(lastWrite).Round(time.Millisecond), iv, wait.Round(time.Millisecond))
		}
	}
	return nil
}
