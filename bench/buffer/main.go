// Command buffer prints the store-and-forward buffer's figures: append
// throughput with group commit, bytes written to disk per message, ack
// (read + delete) throughput, and RSS with a large backlog.
//
//	go run ./bench/buffer -n 1000000 -payload 60
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/edged-gw/edged/buffer"
)

func main() {
	n := flag.Int("n", 1_000_000, "messages")
	size := flag.Int("payload", 60, "payload bytes")
	dir := flag.String("dir", "", "buffer directory (default: a temp dir, removed)")
	flag.Parse()
	d := *dir
	if d == "" {
		var err error
		if d, err = os.MkdirTemp("", "edged-bench-buffer"); err != nil {
			panic(err)
		}
		defer os.RemoveAll(d)
	}
	q, err := buffer.Open(buffer.Options{Dir: filepath.Join(d, "q"), MaxBytes: 1 << 40})
	if err != nil {
		panic(err)
	}
	payload := []byte(strings.Repeat("x", *size))
	w0 := diskWrites()
	t0 := time.Now()
	for i := range *n {
		q.Append("edged/line1/meter-main/voltage_l1", payload)
		if i%100_000 == 0 {
			q.Flush() // as the 5 ms group commit would, at a steady rate
		}
	}
	q.Flush()
	el := time.Since(t0)
	w1 := diskWrites()
	fmt.Printf("append+commit: %d msgs in %v = %.0f msgs/s\n", *n, el.Round(time.Millisecond), float64(*n)/el.Seconds())
	if w0 >= 0 {
		fmt.Printf("bytes written to disk per message (append): %.0f (payload %d, topic 34)\n", float64(w1-w0)/float64(*n), *size)
	}
	fmt.Printf("RSS with %d messages buffered: %.1f MiB\n", *n, rssMiB())
	r := q.NewReader()
	t0 = time.Now()
	from, acked := uint64(0), 0
	for {
		es, next, err := r.Read(from, 0, 256)
		if err != nil {
			panic(err)
		}
		if len(es) == 0 && next == from {
			break
		}
		for _, e := range es {
			q.Ack(e.Seq, e.Size)
		}
		acked += len(es)
		from = next
	}
	q.Flush()
	el = time.Since(t0)
	fmt.Printf("read+ack: %d msgs in %v = %.0f msgs/s\n", acked, el.Round(time.Millisecond), float64(acked)/el.Seconds())
	fmt.Printf("RSS after drain: %.1f MiB\n", rssMiB())
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

func rssMiB() float64 {
	runtime.GC()
	defer func() {
		b, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "RssAnon:") || strings.HasPrefix(l, "RssFile:") {
				fmt.Printf("  %s\n", strings.Join(strings.Fields(l), " "))
			}
		}
	}()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
