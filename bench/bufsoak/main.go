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
// With -disk-full (root: it mounts a tmpfs) the buffer lives on a small
// file system that something else fills at a random moment of each loop,
// while the child acknowledges nothing (an outage): the child is killed
// with the disk full, the filler removed, and the open must account for
// every message as above, the drops of the full disk (reported by the
// child) included. A child that dies by itself (Badger writes its files
// through mmap: a full disk can be a SIGBUS, see the README) is counted,
// and its store must open and account the same way.
//
//	go run ./bench/bufsoak -loops 200
//	go run ./bench/bufsoak -loops 200 -disk-full
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
	diskFull := flag.Bool("disk-full", false, "fill the buffer's file system (a tmpfs) in each loop, with no acknowledgements")
	flag.Parse()
	dir, err := os.MkdirTemp("", "edged-bufsoak")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	mnt := ""
	if *diskFull {
		mnt = dir
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "mount a tmpfs (needs root): %v: %s\n", err, out)
			os.Exit(1)
		}
		defer func() { _ = exec.Command("umount", "-l", mnt).Run() }()
		dir = filepath.Join(mnt, "q")
	}
	var accepted, acked, dropped, drained, lost, worst, kills, died, fills int64
	start := time.Now()
	for l := 0; l < *loops; l++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "BUFSOAK_CHILD=1", "BUFSOAK_DIR="+dir)
		if *diskFull {
			cmd.Env = append(cmd.Env, "BUFSOAK_NOACK=1")
		}
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
		var fill <-chan time.Time
		killAfter := time.Duration(50+rand.IntN(1450)) * time.Millisecond
		if *diskFull {
			// Some of it written first (write_delay is 500 ms), then the
			// disk fills, and the kill comes while it is full.
			fillAfter := time.Duration(1000+rand.IntN(2000)) * time.Millisecond
			fill = time.After(fillAfter)
			killAfter = fillAfter + time.Duration(300+rand.IntN(2000))*time.Millisecond
		}
		kill := time.After(killAfter)
		filler := filepath.Join(mnt, "filler")
		var a, k, d int64
		selfDied := false
	wait:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					err := cmd.Wait()
					if !*diskFull {
						fmt.Fprintf(os.Stderr, "loop %d: the child died by itself: %v\n", l, err)
						os.Exit(1)
					}
					fmt.Printf("loop %d: the child died by itself with the disk full: %v\n", l, err)
					selfDied = true
					break wait
				}
				_, _ = fmt.Sscanf(line, "acc %d ack %d drop %d", &a, &k, &d)
			case <-fill:
				fillTo(mnt, filler, int64(256+rand.IntN(2048))<<10)
				fills++
			case <-kill:
				break wait
			}
		}
		if selfDied {
			died++
		} else {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			kills++
		}
		for line := range lines {
			_, _ = fmt.Sscanf(line, "acc %d ack %d drop %d", &a, &k, &d)
		}
		if *diskFull {
			if err := os.Remove(filler); err != nil && !os.IsNotExist(err) {
				panic(err)
			}
		}
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
		unc := a - k - d - n - l0
		accepted, acked, dropped, drained, lost = accepted+a, acked+k, dropped+d, drained+n, lost+l0
		worst = max(worst, unc)
		if l < 5 || l%50 == 49 || unc > 0 {
			fmt.Printf("loop %d: accepted %d, acked by the child %d, dropped by it %d, read back %d, counted lost %d, uncounted %d\n", l, a, k, d, n, l0, unc)
		}
	}
	fmt.Printf("%d kills in %v: accepted %d, delivered %d before + %d after the kills, counted lost %d; worst uncounted per kill %d\n",
		kills, time.Since(start).Round(time.Second), accepted, acked, drained, lost, worst)
	if *diskFull {
		fmt.Printf("disk full in %d of %d loops: %d dropped by the full disk (counted by the child); %d children died by themselves\n",
			fills, *loops, dropped, died)
	}
}

// fillTo grows filler until the file system at mnt has at most free bytes
// left.
func fillTo(mnt, filler string, free int64) {
	f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	for range 100 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); err != nil {
			panic(err)
		}
		now := int64(st.Bavail) * int64(st.Bsize)
		if now <= free+4096 {
			return
		}
		if _, err := f.Write(make([]byte, now-free)); err != nil {
			return // it filled meanwhile
		}
	}
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
	noAck := os.Getenv("BUFSOAK_NOACK") != ""
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
		for len(window) > 50 && !noAck {
			q.Ack(window[0].Seq, window[0].Size)
			window = window[1:]
			ack++
		}
		if noAck {
			window = window[:0]
		}
		fmt.Fprintf(w, "acc %d ack %d drop %d\n", acc, ack, q.Stats().Dropped)
		w.Flush()
	}
}
