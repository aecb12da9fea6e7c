// Command initheap prints what edged's packages keep on the heap once
// their init has run (the daemon's floor before it reads a config), and
// with a file argument writes the heap profile (run it with
// GODEBUG=memprofilerate=1 for every allocation):
//
//	go run ./bench/initheap
//	GODEBUG=memprofilerate=1 go run ./bench/initheap /tmp/init.pprof
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	_ "github.com/edged-gw/edged/internal/app"
	_ "github.com/edged-gw/edged/southbound/all"
)

func main() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Printf("heap after init: %.2f MB live, %d objects\n", float64(m.HeapAlloc)/1e6, m.HeapObjects)
	if len(os.Args) > 1 {
		f, _ := os.Create(os.Args[1])
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
}
