// Command buffer prints the store-and-forward buffer's figures: append
// throughput with group commit, bytes written to disk per message (from
// /proc/self/io write_bytes), read+ack throughput, disk use, and the RSS
// curve (anonymous and file-backed) as the backlog grows and drains.
//
//	go run ./bench/buffer -n 1000000 -payload 60
//	go run ./bench/buffer -n 10000000 -payload 60   # the 10M curve; minutes
//
// -max-bytes caps the buffer (default: no cap, so everything stays); with
// a cap it shows the disk use against it.
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/edged-gw/edged/buffer"
)

func main() {
	n := flag.Int("n", 1_000_000, "messages")
	size := flag.Int("payload", 60, "payload bytes")
	dir := flag.String("dir", "", "buffer directory (default: a temp dir, removed)")
	maxBytes := flag.Int64("max-bytes", 1<<40, "buffer max_bytes")
	points := flag.Int("points", 4, "RSS samples while appending (plus one at 0)")
	heap := flag.String("memprofile", "", "write a heap profile here with the full backlog")
	flag.Parse()
	d := *dir
	if d == "" {
		var err error
		if d, err = os.MkdirTemp("", "edged-bench-buffer"); err != nil {
			panic(err)
		}
		defer os.RemoveAll(d)
	}
	qdir := filepath.Join(d, "q")
	q, err := buffer.Open(buffer.Options{Dir: qdir, MaxBytes: *maxBytes})
	if err != nil {
		panic(err)
	}
	topic := "edged/line1/meter-main/voltage_l1"
	payload := []byte(strings.Repeat("x", *size))
	fmt.Printf("%d messages, topic %d + payload %d bytes, max_bytes %d\n", *n, len(topic), *size, *maxBytes)
	fmt.Printf("%-22s %8s %8s %8s %8s %8s %8s %8s %8s\n", "", "RSS MiB", "anon", "file", "goheap", "du MiB", "sst", "vlog", "mem")
	sample := func(label string) {
		rss, anon, file := rss()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		by := du(qdir)
		fmt.Printf("%-22s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f\n", label, rss, anon, file, float64(ms.HeapInuse)/(1<<20),
			mib(by[""]), mib(by[".sst"]), mib(by[".vlog"]), mib(by[".mem"]))
	}
	sample("empty")
	step := *n / max(1, *points)
	w0 := diskWrites()
	t0 := time.Now()
	var appendTime time.Duration
	for i := range *n {
		q.Append(topic, payload)
		if i%10_000 == 9_999 {
			q.Flush() // as the 5 ms group commit would, at a steady rate
		}
		if step > 0 && i%step == step-1 {
			q.Flush()
			appendTime += time.Since(t0)
			sample(fmt.Sprintf("appended %d", i+1))
			t0 = time.Now()
		}
	}
	q.Flush()
	appendTime += time.Since(t0)
	w1 := diskWrites()
	fmt.Printf("append+commit: %d msgs in %v = %.0f msgs/s\n", *n, appendTime.Round(time.Millisecond), float64(*n)/appendTime.Seconds())
	if w0 >= 0 {
		fmt.Printf("bytes written to disk per message (append): %.0f (stored entry %d)\n", float64(w1-w0)/float64(*n), 9+11+len(topic)+*size)
	}
	st := q.Stats()
	fmt.Printf("buffered: depth %d, %.1f MiB, dropped %d\n", st.Depth, float64(st.Bytes)/(1<<20), st.Dropped)
	if *heap != "" {
		runtime.GC()
		f, err := os.Create(*heap)
		if err == nil {
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}
	r := q.NewReader()
	t0 = time.Now()
	from, acked := uint64(0), 0
	next := step
	for {
		es, nx, err := r.Read(from, 0, 256)
		if err != nil {
			panic(err)
		}
		if len(es) == 0 && nx == from {
			break
		}
		for _, e := range es {
			q.Ack(e.Seq, e.Size)
		}
		acked += len(es)
		from = nx
		if step > 0 && acked >= next {
			next += step
			sample(fmt.Sprintf("drained %d", acked))
		}
	}
	q.Flush()
	el := time.Since(t0)
	w2 := diskWrites()
	fmt.Printf("read+ack: %d msgs in %v = %.0f msgs/s\n", acked, el.Round(time.Millisecond), float64(acked)/el.Seconds())
	if w0 >= 0 {
		fmt.Printf("bytes written to disk per message (ack): %.0f\n", float64(w2-w1)/float64(max(1, acked)))
	}
	sample("after drain")
	_ = q.Close()
}

// diskWrites is this process's write_bytes from /proc (-1 if unknown).
func diskWrites() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// rss returns VmRSS, RssAnon and RssFile (+RssShmem) in MiB after a GC.
func rss() (total, anon, file float64) {
	runtime.GC()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	kb := func(v string) float64 {
		n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		return float64(n) / 1024
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		switch k {
		case "VmRSS":
			total = kb(v)
		case "RssAnon":
			anon = kb(v)
		case "RssFile", "RssShmem":
			file += kb(v)
		}
	}
	return
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// du is the disk space the files under dir use (allocated blocks), in
// total ("") and by file extension.
func du(dir string) map[string]int64 {
	n := map[string]int64{}
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n[""] += blocks(fi)
				n[filepath.Ext(e.Name())] += blocks(fi)
			}
		}
		return nil
	})
	return n
}
