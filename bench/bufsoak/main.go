// Command bufsoak kills a process that writes into a buffer with SIGKILL
// at random moments, many times over, and checks after each kill that
// the buffer opens (no panic, not moved aside) and that every message is
// accounted for: delivered before the kill (acknowledged by the child),
// delivered after it (read back here), or counted lost
// (LostUnstored/LostDamaged). "uncounted" is accepted − delivered − lost:
// above zero it is a loss nobody counted; at most the messages appended
// after the child's last mark write (one commit interval) may land there,
// and it goes below zero by the messages appended after the child's last
// report.
//
//	go run ./bench/bufsoak -loops 200
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/edged-gw/edged/buffer"
)

func main() {
	if os.Getenv("BUFSOAK_CHILD") != "" {
		child()
		return
	}
	loops := flag.Int("loops", 200, "kill -9 loops")
	flag.Parse()
	dir, err := os.MkdirTemp("", "edged-bufsoak")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	var accepted, acked, drained, lost, worst, kills int64
	start := time.Now()
	for l := 0; l < *loops; l++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "BUFSOAK_CHILD=1", "BUFSOAK_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			panic(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			panic(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		kill := time.After(time.Duration(50+rand.IntN(1450)) * time.Millisecond)
		var a, k int64
	wait:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					fmt.Fprintf(os.Stderr, "loop %d: the child died by itself: %v\n", l, cmd.Wait())
					os.Exit(1)
				}
				_, _ = fmt.Sscanf(line, "acc %d ack %d", &a, &k)
			case <-kill:
				break wait
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		for line := range lines {
			_, _ = fmt.Sscanf(line, "acc %d ack %d", &a, &k)
		}
		kills++
		q, err := buffer.Open(buffer.Options{Dir: dir, MaxBytes: 64 << 20})
		if err != nil {
			fmt.Fprintf(os.Stderr, "loop %d: open after kill -9: %v\n", l, err)
			os.Exit(1)
		}
		st := q.Stats()
		if st.Recovered {
			fmt.Fprintf(os.Stderr, "loop %d: store moved aside after a kill -9 (%s)\n", l, st.RecoveredFrom)
			os.Exit(1)
		}
		n := drain(q)
		if err := q.Close(); err != nil {
			panic(err)
		}
		l0 := int64(st.LostUnstored + st.LostDamaged)
		unc := a - k - n - l0
		accepted, acked, drained, lost = accepted+a, acked+k, drained+n, lost+l0
		worst = max(worst, unc)
		if l < 5 || l%50 == 49 || unc > 0 {
			fmt.Printf("loop %d: accepted %d, acked by the child %d, read back %d, counted lost %d, uncounted %d\n", l, a, k, n, l0, unc)
		}
	}
	fmt.Printf("%d kills in %v: accepted %d, delivered %d before + %d after the kills, counted lost %d; worst uncounted per kill %d\n",
		kills, time.Since(start).Round(time.Second), accepted, acked, drained, lost, worst)
}

func drain(q *buffer.Queue) int64 {
	r := q.NewReader()
	var n int64
	from := uint64(0)
	for {
		es, next, err := r.Read(from, 0, 1000)
		if err != nil {
			fmt.Fprintf(os.Stderr, "read: %v\n", err)
			os.Exit(1)
		}
		for _, e := range es {
			q.Ack(e.Seq, e.Size)
			n++
		}
		if len(es) == 0 && next == from {
			return n
		}
		from = next
	}
}

// child appends two messages a millisecond and acknowledges all it reads
// but the newest 50 (an uplink's window in flight), reporting after each
// round what it accepted and acknowledged.
func child() {
	q, err := buffer.Open(buffer.Options{Dir: os.Getenv("BUFSOAK_DIR"), MaxBytes: 64 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	r := q.NewReader()
	from := q.Oldest()
	var window []buffer.Entry
	var acc, ack int64
	w := bufio.NewWriter(os.Stdout)
	tick := time.NewTicker(time.Millisecond)
	for range tick.C {
		for range 2 {
			q.Append("edged/gw/dev/a", []byte(`{"v":`+strconv.FormatInt(acc, 10)+`}`))
			acc++
		}
		es, next, err := r.Read(from, 0, 100)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child read:", err)
			os.Exit(1)
		}
		from = next
		for _, e := range es {
			window = append(window, buffer.Entry{Seq: e.Seq, Size: e.Size})
		}
		for len(window) > 50 {
			q.Ack(window[0].Seq, window[0].Size)
			window = window[1:]
			ack++
		}
		fmt.Fprintf(w, "acc %d ack %d\n", acc, ack)
		w.Flush()
	}
}
