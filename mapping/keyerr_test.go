package mapping

import (
	"errors"
	"testing"

	"github.com/edged-gw/edged/configs"
)

// TestInitErrorKeys: each of Spec.Init's checks names the key it is about,
// so that the config loader points at that key's line.
func TestInitErrorKeys(t *testing.T) {
	bit := func(n int) *int { return &n }
	f := func(v float64) *float64 { return &v }
	nan := func() float64 { var z float64; return z / z }()
	for _, tt := range []struct {
		spec Spec
		key  string
	}{
		{Spec{Type: TypeUint16}, "name"},
		{Spec{Name: "a/b", Type: TypeUint16}, "name"},
		{Spec{Name: "a"}, "type"},
		{Spec{Name: "a", Type: TypeString}, "length"},
		{Spec{Name: "a", Type: TypeUint16, Length: 3}, "length"},
		{Spec{Name: "a", Type: TypeUint16, Bit: bit(1)}, "bit"},
		{Spec{Name: "a", Type: TypeBool, Bit: bit(16)}, "bit"},
		{Spec{Name: "a", Type: TypeFloat32, Scale: nan}, "scale"},
		{Spec{Name: "a", Type: TypeFloat32, Offset: nan}, "offset"},
		{Spec{Name: "a", Type: TypeBool, Scale: 2}, "scale"},
		{Spec{Name: "a", Type: TypeBool, Offset: 2}, "offset"},
		{Spec{Name: "a", Type: TypeUint16, Deadband: -1}, "deadband"},
		{Spec{Name: "a", Type: TypeUint16, MaxSilence: -1}, "max_silence"},
		{Spec{Name: "a", Type: TypeUint16, Max: f(1)}, "writable"},
		{Spec{Name: "a", Type: TypeUint16, Writable: true, Min: f(2), Max: f(1)}, "min"},
		{Spec{Name: "a", Type: TypeBool, Precision: bit(1)}, "precision"},
		{Spec{Name: "a", Type: TypeString, Length: 2, Precision: bit(1)}, "precision"},
		{Spec{Name: "a", Type: TypeFloat64, Precision: bit(-1)}, "precision"},
		{Spec{Name: "a", Type: TypeFloat64, Precision: bit(16)}, "precision"},
		{Spec{Name: "a", Type: TypeFloat64, NaN: NaNDrop + 1}, "nan"},
		{Spec{Name: "a", Type: TypeBool, NaN: NaNNull}, "nan"},
	} {
		s := tt.spec
		err := s.Init()
		var ke *configs.Error
		if !errors.As(err, &ke) {
			t.Errorf("%+v: Spec.Init = %v, want a *configs.Error", tt.spec, err)
			continue
		}
		if ke.Key != tt.key {
			t.Errorf("%+v: key %q, want %q (%v)", tt.spec, ke.Key, tt.key, err)
		}
	}
}
