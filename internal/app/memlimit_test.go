package app

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/edged-gw/edged/configs"
)

func TestApplyMemorySettings(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	gcBefore := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(before); debug.SetGCPercent(gcBefore) })
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	size := func(n int64) *configs.Size { s := configs.Size(n); return &s }
	cases := []struct {
		name string
		cfg  *configs.Size
		want int64
	}{
		{"default", nil, DefaultMemoryLimit},
		{"configured", size(96 << 20), 96 << 20},
		{"off", size(0), math.MaxInt64},
	}
	for _, tc := range cases {
		got := ApplyMemorySettings(&configs.Config{Gateway: configs.Gateway{MemoryLimit: tc.cfg}})
		if got != tc.want || debug.SetMemoryLimit(-1) != tc.want {
			t.Errorf("%s: limit %d (runtime %d), want %d", tc.name, got, debug.SetMemoryLimit(-1), tc.want)
		}
	}
	if got := debug.SetGCPercent(100); got != DefaultGCPercent {
		t.Errorf("GC percent %d, want %d", got, DefaultGCPercent)
	}
	// GOGC wins.
	t.Setenv("GOGC", "100")
	ApplyMemorySettings(&configs.Config{})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 set, GC percent %d", got)
	}
	// GOMEMLIMIT wins over the config.
	debug.SetMemoryLimit(64 << 20)
	t.Setenv("GOMEMLIMIT", "64MiB")
	if got := ApplyMemorySettings(&configs.Config{Gateway: configs.Gateway{MemoryLimit: size(8 << 20)}}); got != 64<<20 {
		t.Errorf("with GOMEMLIMIT set, limit %d, want the environment's 64 MiB", got)
	}
}
