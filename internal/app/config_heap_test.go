package app

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edged-gw/edged/configs"
)

// BenchmarkLoadedConfigLiveHeap reports what a loaded config keeps on the
// heap for the bar workload's shape: ten Modbus TCP devices sharing one
// 500-tag map (live-B/config: bytes still reachable from the Config after a
// collection). The daemon holds its config for as long as it runs, so this
// is part of its resident memory.
//
//	go test -run '^$' -bench LoadedConfigLiveHeap ./internal/app/
func BenchmarkLoadedConfigLiveHeap(b *testing.B) {
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o755); err != nil {
		b.Fatal(err)
	}
	var m strings.Builder
	for t := range 500 {
		fmt.Fprintf(&m, "[[tag]]\nname = \"t%03d\"\narea = \"holding_register\"\naddress = %d\ntype = \"float32\"\n\n", t, 2*t)
	}
	if err := os.WriteFile(filepath.Join(dir, "maps", "bench.toml"), []byte(m.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var c strings.Builder
	fmt.Fprintf(&c, "[gateway]\nid = \"bench\"\nmaps_dir = %q\n\n", filepath.Join(dir, "maps"))
	for i := range 10 {
		fmt.Fprintf(&c, "[[device]]\nname = \"d%02d\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1:%d\"\nmap = \"bench\"\n\n", i, 5020+i)
	}
	path := filepath.Join(dir, "edged.toml")
	if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	drivers := Drivers(nil)
	var live uint64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		cfg, err := configs.Load(path, drivers)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		live = after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(cfg)
	}
	b.ReportMetric(float64(live), "live-B/config")
}
