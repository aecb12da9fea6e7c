package buffer

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fault-injection set: a store with messages, written and closed as
// edged does, then damaged by the test the way a worn SD card, a power
// cut or an operator does it. For each: Open neither panics nor fails,
// what is readable is delivered in order, and every message is either
// read back or counted (LostDamaged).

const faultN = 20_000

// faultOpts is the store the faults are made in: small memtables, so
// that faultN messages make several table files.
func faultOpts(dir string, log *slog.Logger) Options {
	return Options{Dir: dir, MemTableSize: 1 << 20, Logger: log}
}

// makeStore writes faultN messages (payload: their index) and closes
// the store.
func makeStore(t *testing.T, dir string) {
	t.Helper()
	q, err := Open(faultOpts(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 100)
	for i := range faultN {
		q.Append("edged/gw/dev/a", fmt.Appendf(nil, "%08d%s", i, pad))
	}
	q.Flush()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if len(tables(t, dir)) < 2 {
		t.Fatalf("the store has %d table files, the faults need several", len(tables(t, dir)))
	}
}

func tables(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

// logLines collects a queue's log lines.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logLines) count(sub string) int { return strings.Count(l.String(), sub) }

// drain reads everything, acknowledging it, and fails on a read error or
// an entry out of order or not what was written.
func drain(t *testing.T, q *Queue) []int {
	t.Helper()
	r := q.NewReader()
	var got []int
	from := uint64(0)
	for rounds := 0; ; rounds++ {
		if rounds > 1_000_000 {
			t.Fatal("reading does not end")
		}
		es, next, err := r.Read(from, 0, 500)
		if err != nil {
			t.Fatalf("read from %d: %v (a damage must be skipped and counted, never an error)", from, err)
		}
		for _, e := range es {
			i, err := strconv.Atoi(string(e.Payload[:8]))
			if err != nil || string(e.Topic) != "edged/gw/dev/a" {
				t.Fatalf("entry %d is garbage: topic %q payload %q", e.Seq, e.Topic, e.Payload)
			}
			if len(got) > 0 && i <= got[len(got)-1] {
				t.Fatalf("entry %d (message %d) after message %d: out of order", e.Seq, i, got[len(got)-1])
			}
			got = append(got, i)
			q.Ack(e.Seq, e.Size)
		}
		if len(es) == 0 && next == from {
			return got
		}
		from = next
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		// moved: the store is moved aside and all of it counted lost;
		// else some is lost (counted) and the rest delivered.
		moved, someLost bool
	}{
		{"truncated table", func(t *testing.T, dir string) {
			if err := os.Truncate(tables(t, dir)[0], mustSize(t, tables(t, dir)[0])-4); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"table cut in half", func(t *testing.T, dir string) {
			last := tables(t, dir)[len(tables(t, dir))-1]
			if err := os.Truncate(last, mustSize(t, last)/2); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"random bytes in a table", func(t *testing.T, dir string) {
			scribble(t, tables(t, dir)[0], 100, 512)
		}, false, true},
		{"random bytes in every table", func(t *testing.T, dir string) {
			for _, f := range tables(t, dir) {
				scribble(t, f, mustSize(t, f)/3, 512)
			}
		}, false, true},
		{"garbled MANIFEST", func(t *testing.T, dir string) {
			scribble(t, filepath.Join(dir, "MANIFEST"), 8, 32)
		}, true, true},
		{"empty table", func(t *testing.T, dir string) {
			if err := os.Truncate(tables(t, dir)[0], 0); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"missing value log", func(t *testing.T, dir string) {
			vl, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
			for _, f := range vl {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}, false, false},
		{"missing table", func(t *testing.T, dir string) {
			if err := os.Remove(tables(t, dir)[0]); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"half-written table left by a kill -9 (not in the MANIFEST)", func(t *testing.T, dir string) {
			b, err := os.ReadFile(tables(t, dir)[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "999999.sst"), b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
		}, false, false},
		{"garbled mark", func(t *testing.T, dir string) {
			scribble(t, filepath.Join(dir, markName), 0, 64)
		}, false, false},
		{"directory replaced by a file", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, []byte("not a store"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, false}, // what the file held is not known: nothing to count
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "q")
			makeStore(t, dir)
			c.damage(t, dir)
			var logs logLines
			q, err := Open(faultOpts(dir, slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatalf("open of a damaged store failed instead of going on: %v", err)
			}
			defer q.Close()
			got := drain(t, q)
			st := q.Stats()
			t.Logf("read %d, lost %d (damaged), recovered %v; log:\n%s", len(got), st.LostDamaged, st.Recovered, logs.String())
			if st.Recovered != c.moved {
				t.Fatalf("recovered = %v, want %v", st.Recovered, c.moved)
			}
			if c.moved {
				if _, err := os.Stat(st.RecoveredFrom); err != nil {
					t.Fatalf("the damaged store is not kept for inspection: %v", err)
				}
				if logs.count("moved aside") != 1 {
					t.Fatalf("want one error line saying the store was moved aside")
				}
			}
			if c.someLost {
				if st.LostDamaged == 0 {
					t.Fatal("messages lost but none counted")
				}
				if !c.moved && len(got) == 0 {
					t.Fatal("nothing delivered after the damage")
				}
				if !c.moved && logs.count("lost") == 0 {
					t.Fatal("no log line says how many were lost")
				}
			}
			if !c.moved || c.someLost {
				if uint64(len(got))+st.LostDamaged != faultN {
					t.Fatalf("read %d + lost %d != %d written: a loss is not counted", len(got), st.LostDamaged, faultN)
				}
			}
			// The store goes on: new messages are stored and read, and a
			// reopen neither finds the damage again nor counts it twice.
			q.Append("edged/gw/dev/a", fmt.Appendf(nil, "%08d", faultN))
			q.Flush()
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q2, err := Open(faultOpts(dir, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer q2.Close()
			after := drain(t, q2)
			if st := q2.Stats(); len(after) != 1 || after[0] != faultN || st.LostDamaged != 0 || st.Recovered {
				t.Fatalf("after a reopen: read %v, stats %+v; want only the new message, nothing lost", after, st)
			}
		})
	}
}

func mustSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// scribble overwrites n bytes of path at off with random ones.
func scribble(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(off), uint64(n)))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestDamageFoundWhileRunning: a table damaged while the queue is open
// (the disk decays under it) is found by the reads that come to it: the
// batches there are skipped and counted, one log line says how many, and
// the rest is delivered; no read returns an error.
func TestDamageFoundWhileRunning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	makeStore(t, dir)
	var logs logLines
	q, err := Open(faultOpts(dir, slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st := q.Stats(); st.LostDamaged != 0 || st.Depth != faultN {
		t.Fatalf("a sound store opened with %+v", st)
	}
	// Badger reads its tables through mmap: writing the file changes
	// what it reads.
	scribble(t, tables(t, dir)[0], 100, 512)
	got := drain(t, q)
	st := q.Stats()
	if st.LostDamaged == 0 || uint64(len(got))+st.LostDamaged != faultN {
		t.Fatalf("read %d, lost %d of %d", len(got), st.LostDamaged, faultN)
	}
	q.mu.Lock()
	q.flushLossLogLocked(true)
	q.mu.Unlock()
	if n := logs.count("damaged stored messages skipped"); n != 1 {
		t.Fatalf("%d log lines about the damage, want 1; log:\n%s", n, logs.String())
	}
	t.Logf("read %d, lost %d", len(got), st.LostDamaged)
}

// TestCrashLoopBroken: starts that die (here: a marker of three starts
// that did not survive) make the next one verify every block of the
// store before Badger reads it; a store damaged where only a compaction
// would read it is then moved aside instead of crashing Badger again.
func TestCrashLoopBroken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	makeStore(t, dir)
	// Damage the middle of a table (no open reads it), then pretend
	// two starts died.
	tb := tables(t, dir)[0]
	scribble(t, tb, mustSize(t, tb)/2, 256)
	m, ok := readMark(dir)
	if !ok {
		t.Fatal("no mark after a clean close")
	}
	m.starts = 2
	mf, err := openMark(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	mf.close()
	q, err := Open(faultOpts(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st := q.Stats()
	if !st.Recovered || st.LostDamaged != faultN {
		t.Fatalf("after two starts that died, a damaged store was opened again: %+v", st)
	}
}

// The kill -9 child: the test binary re-executed with EDGED_BUFFER_CHILD
// set opens a queue in BC_DIR and follows commands on stdin.
func TestMain(m *testing.M) {
	if os.Getenv("EDGED_BUFFER_CHILD") != "" {
		os.Exit(bufferChild())
	}
	os.Exit(m.Run())
}

// bufferChild: "append N TOPIC" appends N messages and flushes them (as
// far as the disk allows), then prints the stats; the parent kills it
// with SIGKILL whenever it likes.
func bufferChild() int {
	q, err := Open(Options{Dir: os.Getenv("BC_DIR"), MemTableSize: 1 << 20, MemoryBytes: 256 << 10, MaxBytes: 64 << 20})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("open")
	sc := bufio.NewScanner(os.Stdin)
	payload := []byte(strings.Repeat("p", 100))
	for sc.Scan() {
		var n int
		var topic string
		if _, err := fmt.Sscanf(sc.Text(), "append %d %s", &n, &topic); err != nil {
			fmt.Println("error", err)
			return 1
		}
		for range n {
			q.Append(topic, payload)
		}
		q.Flush()
		st := q.Stats()
		fmt.Printf("stats %d %d %d %v\n", st.Appended, st.Dropped, st.Depth, st.DiskFull)
	}
	return 0
}

type bufChild struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Scanner
}

func startBufferChild(t *testing.T, dir string) *bufChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EDGED_BUFFER_CHILD=1", "BC_DIR="+dir)
	cmd.Stderr = os.Stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	c := &bufChild{cmd: cmd, in: pw, out: bufio.NewScanner(out)}
	t.Cleanup(func() { c.kill() })
	if l := c.line(t); l != "open" {
		t.Fatalf("child: %s", l)
	}
	return c
}

func (c *bufChild) line(t *testing.T) string {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("child ended: %v", c.out.Err())
	}
	return c.out.Text()
}

// appendN has the child append n messages and returns its stats.
func (c *bufChild) appendN(t *testing.T, n int, topic string) (appended, dropped uint64, depth int64, full bool) {
	t.Helper()
	fmt.Fprintf(c.in, "append %d %s\n", n, topic)
	l := c.line(t)
	if _, err := fmt.Sscanf(l, "stats %d %d %d %t", &appended, &dropped, &depth, &full); err != nil {
		t.Fatalf("child: %q: %v", l, err)
	}
	return
}

func (c *bufChild) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
	c.in.Close()
}

// TestKillWhileDiskFullCountsTheGap: edged is killed with SIGKILL while
// its disk is full (a real tmpfs filled by something else) and messages
// wait in memory; at the next start, what it had accepted and neither
// stored nor dropped-and-counted is counted as lost (LostUnstored) with
// a log line: accepted = stored + dropped + lost, exactly.
func TestKillWhileDiskFullCountsTheGap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test mounts a tmpfs and needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "q")
	c := startBufferChild(t, dir)
	if _, _, depth, _ := c.appendN(t, 1000, "before"); depth != 1000 {
		t.Fatalf("stored %d of 1000 before the disk filled", depth)
	}
	free, err := freeBytes(mnt)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	const during = 5000
	appended, dropped, _, full := c.appendN(t, during, "during")
	if !full || appended != 1000+during {
		t.Fatalf("child: appended %d, disk full %v", appended, full)
	}
	c.kill()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var logs logLines
	q, err := Open(Options{Dir: dir, MemTableSize: 1 << 20, MemoryBytes: 256 << 10, MaxBytes: 64 << 20,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st := q.Stats()
	t.Logf("child dropped %d while the disk was full; after the kill: %+v", dropped, st)
	if st.Depth != 1000 {
		t.Fatalf("%d stored after the kill, want the 1000 from before the disk filled", st.Depth)
	}
	if st.LostUnstored+dropped != during || st.LostUnstored == 0 {
		t.Fatalf("lost %d + dropped %d != %d accepted while the disk was full: the gap is not counted", st.LostUnstored, dropped, during)
	}
	if !strings.Contains(logs.String(), "unstored="+strconv.FormatUint(st.LostUnstored, 10)) {
		t.Fatalf("no log line counts the loss; log:\n%s", logs.String())
	}
	// New messages get sequence numbers after the lost ones.
	q.Append("after", []byte("x"))
	q.Flush()
	es := readAll(t, q)
	if len(es) != 1001 || string(es[1000].Topic) != "after" || es[1000].Seq < 1000+during {
		t.Fatalf("after the restart: %d entries, last %q seq %d", len(es), es[len(es)-1].Topic, es[len(es)-1].Seq)
	}
	_ = time.Second
}

// TestDiskFullDropsOldest: on a real tmpfs that something else fills, the
// buffer follows the max_bytes policy: the oldest stored messages are
// dropped (counted) to make room, and the newest, waiting in memory, are
// written; a warn line says when dropping starts and one when it stops.
func TestDiskFullDropsOldest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test mounts a tmpfs and needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	var logs logLines
	opts := Options{Dir: filepath.Join(mnt, "q"), MemTableSize: 1 << 20, MemoryBytes: 256 << 10, MaxBytes: 64 << 20,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), segBytes: 256 << 10, dropQuiet: 3 * time.Second}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	payload := []byte(strings.Repeat("p", 100))
	const before, during = 40_000, 20_000 // ~5 MB stored; ~2.5 MB arrive while the disk is full
	for i := range before {
		q.Append("before", fmt.Appendf(payload[:0:0], "%08d%s", i, payload[8:]))
		if i%5000 == 4999 {
			q.Flush()
		}
	}
	q.Flush()
	// Badger's compactions write through mmap too: one that runs out of
	// space is a SIGBUS in its goroutine, which the buffer cannot prevent
	// (see the README). The disk fills once they are done.
	settle := time.Now().Add(30 * time.Second)
	for compacting(q) {
		if time.Now().After(settle) {
			t.Fatalf("compactions still pending: %+v", q.db.Levels())
		}
		time.Sleep(50 * time.Millisecond)
	}
	filler := filepath.Join(mnt, "filler")
	fillTo(t, mnt, filler, 3<<20)
	for i := range during {
		q.Append("during", fmt.Appendf(payload[:0:0], "%08d%s", i, payload[8:]))
		if i%1000 == 999 {
			q.Flush()
		}
	}
	q.Flush()
	st := q.Stats()
	t.Logf("after the disk filled: %+v", st)
	if st.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", st)
	}
	if logs.count("dropping messages") != 1 || !strings.Contains(logs.String(), `reason="disk full"`) {
		t.Fatalf("want one warn line when dropping started (disk full); log:\n%s", logs.String())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for q.Flush(); q.Stats().Pending > 0 || logs.count("stopped dropping") == 0; q.Flush() {
		if time.Now().After(deadline) {
			t.Fatalf("no line when dropping stopped, or writes did not resume: %+v; log:\n%s", q.Stats(), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	es := readAll(t, q)
	st = q.Stats()
	if uint64(len(es))+st.Dropped != before+during {
		t.Fatalf("read %d + dropped %d != %d appended", len(es), st.Dropped, before+during)
	}
	// The oldest went: what is left is a run of the newest "before" and
	// every "during".
	var nb, nd int
	for _, e := range es {
		if string(e.Topic) == "before" {
			nb++
		} else {
			nd++
		}
	}
	if nd != during {
		t.Fatalf("%d of the %d newest messages kept (%d of the oldest): a full disk must drop the oldest; log:\n%s", nd, during, nb, logs.String())
	}
	if nb > 0 {
		if first, _ := strconv.Atoi(string(es[0].Payload[:8])); first != before-nb {
			t.Fatalf("kept before-messages start at %d, want the newest %d (from %d)", first, nb, before-nb)
		}
	}
	t.Logf("dropped %d of the oldest, kept %d of them and all %d newest; log:\n%s", st.Dropped, nb, nd, logs.String())
}

// compacting reports whether Badger has a compaction to do.
func compacting(q *Queue) bool {
	for _, l := range q.db.Levels() {
		if l.Score >= 1 || (l.Level == 0 && l.NumTables >= 2) {
			return true
		}
	}
	return false
}

// fillTo grows filler until the file system at mnt has free bytes left
// (less than a page more), whatever else frees space meanwhile.
func fillTo(t *testing.T, mnt, filler string, free int64) {
	t.Helper()
	f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for {
		now, err := freeBytes(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if now <= free+4096 {
			return
		}
		if _, err := f.Write(make([]byte, now-free)); err != nil {
			t.Fatal(err)
		}
	}
}
