// Command bufidle measures what an idle buffer costs: the process CPU
// time (getrusage, user + system) over a period in which the buffer is
// open and, at most, gets one message every -every that is acknowledged
// at once (an idle gateway with one uplink: 1 device × 10 tags every
// 10 s), as a share of one core. A CPU profile can be written too.
//
//	go run ./bench/bufidle -for 60s              # idle with a message every 10 s
//	go run ./bench/bufidle -for 60s -every 0     # nothing at all
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/edged-gw/edged/buffer"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	period := flag.Duration("for", 60*time.Second, "how long to measure")
	every := flag.Duration("every", 10*time.Second, "one message this often (0: none)")
	prof := flag.String("cpuprofile", "", "write a CPU profile here")
	settle := flag.Duration("settle", 35*time.Second, "wait this long before measuring (the store closes after 30 s unused)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "edged-bufidle")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	q, err := buffer.Open(buffer.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	r := q.NewReader()
	var next uint64
	send := func() {
		q.Append("edged/gw/dev/status", []byte(`{"v":1,"ts":1764156621123,"q":"good"}`))
		<-q.Committed(next)
		es, n, err := r.Read(next, 0, 100)
		if err != nil {
			panic(err)
		}
		for _, e := range es {
			q.Ack(e.Seq, e.Size)
		}
		next = n
	}
	send()
	time.Sleep(*settle) // past the open's own work and, by default, the idle store's close
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		defer pprof.StopCPUProfile()
	}
	c0, t0 := cpu(), time.Now()
	var tick <-chan time.Time
	if *every > 0 {
		tk := time.NewTicker(*every)
		defer tk.Stop()
		tick = tk.C
	}
	end := time.After(*period)
loop:
	for {
		select {
		case <-tick:
			send()
		case <-end:
			break loop
		}
	}
	c, wall := cpu()-c0, time.Since(t0)
	fmt.Printf("idle buffer (one message every %v): %.3f CPU-s in %.0f s = %.3f%% of a core\n",
		*every, c.Seconds(), wall.Seconds(), 100*c.Seconds()/wall.Seconds())
	if err := q.Close(); err != nil {
		panic(err)
	}
}
