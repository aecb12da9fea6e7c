package mapping

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
)

func TestCheckWrite(t *testing.T) {
	lo, hi := 0.0, 100.0
	base := Spec{Name: "setpoint", Type: TypeFloat32, Writable: true, Min: &lo, Max: &hi, WriteInterval: configs.Duration(time.Second)}
	now := time.Unix(1000, 0)
	f := func(x float64) Value { return Value{Kind: KindFloat, Float: x} }
	cases := []struct {
		name string
		spec Spec
		v    Value
		last time.Time
		want string // "" = allowed
		kind error
	}{
		{"in range", base, f(50), time.Time{}, "", nil},
		{"at min", base, f(0), time.Time{}, "", nil},
		{"below min", base, f(-0.1), time.Time{}, "below min = 0", ErrOutOfRange},
		{"above max", base, f(100.5), time.Time{}, "above max = 100", ErrOutOfRange},
		{"NaN", base, f(nanValue()), time.Time{}, "NaN", ErrOutOfRange},
		{"too soon", base, f(1), now.Add(-300 * time.Millisecond), "write_interval = 1s", ErrTooSoon},
		{"after interval", base, f(1), now.Add(-time.Second), "", nil},
		{"not writable", Spec{Name: "ro", Type: TypeUint16}, Value{Kind: KindUint, Uint: 1}, time.Time{}, "not writable (set writable = true", ErrNotWritable},
		{"no value", base, Value{}, time.Time{}, "no value", ErrNoValue},
		{"bool ignores min/max", Spec{Name: "b", Type: TypeBool, Writable: true, Min: &hi}, Value{Kind: KindBool, Bool: true}, time.Time{}, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.CheckWrite(tc.v, tc.last, now)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrWriteRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrWriteRefused mentioning %q", err, tc.want)
			}
			if wrapped := fmt.Errorf("device %q: %w", "d", err); !errors.Is(wrapped, tc.kind) || !strings.HasPrefix(err.Error(), "write refused: ") {
				t.Fatalf("err = %v, want it to match %v (also when wrapped) and start with \"write refused: \"", err, tc.kind)
			}
		})
	}
}

func nanValue() float64 { z := 0.0; return z / z }

func TestInitWritePolicy(t *testing.T) {
	lo, hi := 10.0, 1.0
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "a", Type: TypeUint16, Min: &lo}, "set writable = true"},
		{Spec{Name: "a", Type: TypeUint16, Writable: true, Min: &lo, Max: &hi}, "min = 10 is above max = 1"},
	}
	for _, tc := range cases {
		if err := tc.spec.Init(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Init(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
	ok := Spec{Name: "a", Type: TypeUint16, Writable: true, Min: &hi, Max: &lo}
	if err := ok.Init(); err != nil {
		t.Errorf("valid write policy refused: %v", err)
	}
}
