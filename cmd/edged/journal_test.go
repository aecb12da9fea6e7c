package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
)

// journalPair is a unix stream socket pair, as systemd connects a service's
// stderr to journald: the child writes to w, the test reads r.
func journalPair(t *testing.T) (w, r *os.File, stream string) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r = os.NewFile(uintptr(fds[0]), "journal-stream"), os.NewFile(uintptr(fds[1]), "journald")
	t.Cleanup(func() { w.Close(); r.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(fds[0], &st); err != nil {
		t.Fatal(err)
	}
	return w, r, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// runJournaled starts `edged run` with its stderr on a journal-like stream
// and JOURNAL_STREAM set to stream, and returns the lines it logs until one
// matches until.
func runJournaled(t *testing.T, stream string, until *regexp.Regexp) []string {
	t.Helper()
	dir := t.TempDir()
	path := writeConfig(t, dir, `[gateway]
id = "gw-journal"
log_level = "debug"
data_dir = "data"
[broker]
listen = "127.0.0.1:0"
[metrics]
disabled = true
`+deadDevice)
	w, r, own := journalPair(t)
	if stream == "" {
		stream = own
	}
	cmd := exec.Command(edgedBin, "run", "-c", path)
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM="+stream)
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w.Close() // the child holds its copy
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	deadline := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("edged exited; logged:\n%s", strings.Join(got, "\n"))
			}
			got = append(got, l)
			if until.MatchString(l) {
				return got
			}
		case <-deadline:
			t.Fatalf("no line matching %s within 15 s; logged:\n%s", until, strings.Join(got, "\n"))
		}
	}
}

// TestJournalPriorities: when stderr is the journal's stream (JOURNAL_STREAM
// names its device and inode), every log line starts with the syslog
// priority of its level, so `journalctl -p warning` selects warnings and
// errors, and carries no time of its own (journald stamps each entry).
// Before, every line was filed at info with a second timestamp.
func TestJournalPriorities(t *testing.T) {
	lines := runJournaled(t, "", regexp.MustCompile(`device offline`))
	prio := regexp.MustCompile(`^<([3467])>level=(\w+) `)
	want := map[string]string{"ERROR": "3", "WARN": "4", "INFO": "6", "DEBUG": "7"}
	seen := map[string]bool{}
	for _, l := range lines {
		m := prio.FindStringSubmatch(l)
		if m == nil || want[m[2]] != m[1] {
			t.Errorf("line without the priority of its level: %q", l)
			continue
		}
		seen[m[2]] = true
		if strings.Contains(l, "time=") {
			t.Errorf("line with its own timestamp: %q", l)
		}
	}
	if !seen["INFO"] || !seen["WARN"] || !seen["DEBUG"] {
		t.Errorf("levels seen %v, want debug, info and warn lines:\n%s", seen, strings.Join(lines, "\n"))
	}
}

// TestJournalStreamOfAnotherFile: a JOURNAL_STREAM inherited by a process
// whose stderr is somewhere else (not that stream) changes nothing: plain
// lines with their time.
func TestJournalStreamOfAnotherFile(t *testing.T) {
	_, _, other := journalPair(t)
	lines := runJournaled(t, other, regexp.MustCompile(`device offline`))
	for _, l := range lines {
		if strings.HasPrefix(l, "<") || !strings.HasPrefix(l, "time=") {
			t.Errorf("line %q, want a plain line with its time", l)
		}
	}
}

// TestJournalJSON: log_format = "json" on the journal gets the prefix too
// (journald strips it, the message stays one JSON object) and no "time".
func TestJournalJSON(t *testing.T) {
	w, r, stream := journalPair(t)
	t.Setenv("JOURNAL_STREAM", stream)
	logs := newLogging(w)
	if err := logs.apply(configs.Gateway{LogFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	logs.logger.With("device", "plc").Error("device offline", "err", "refused")
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := `<3>{"level":"ERROR","msg":"device offline","device":"plc","err":"refused"}` + "\n"; line != want {
		t.Errorf("journal line %q, want %q", line, want)
	}
}
