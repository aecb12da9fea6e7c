package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/door"
)

// oneTag is a device host of one writable tag that reads back what was
// written: pure logic behind a real socket.
type oneTag struct {
	mu      sync.Mutex
	spec    mapping.Spec
	sample  mapping.Sample
	batches uint64
	block   chan struct{} // non-nil: Write waits for it
}

func (o *oneTag) Target(device, tag string) (door.Target, error) {
	if device != "dev" || tag != "sp" {
		return door.Target{}, fmt.Errorf("no tag %s/%s", device, tag)
	}
	return door.Target{Spec: &o.spec, State: southbound.StateOnline, Writer: o, Last: func() (mapping.Sample, uint64) {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.sample, o.batches
	}}, nil
}

func (o *oneTag) Write(ctx context.Context, _ string, v mapping.Value) error {
	if o.block != nil {
		select {
		case <-o.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sample = mapping.Sample{Tag: &o.spec, Value: v, Quality: mapping.Good}
	go func() { // the next poll
		time.Sleep(5 * time.Millisecond)
		o.mu.Lock()
		o.batches++
		o.mu.Unlock()
	}()
	return nil
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func listen(t *testing.T, path string, devs door.Devices, audit string) *Server {
	t.Helper()
	s, err := Listen(path, door.New(devs, door.Options{AuditDir: audit}), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSocketModeGroupAndPeer(t *testing.T) {
	dir := shortDir(t)
	path := SocketPath(dir)
	listen(t, path, &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}}, dir)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a socket with 0660", st.Mode())
	}
	gid := os.Getgid()
	if g, err := user.LookupGroup(Group); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if got := int(st.Sys().(*syscall.Stat_t).Gid); got != gid {
		t.Fatalf("socket group %d, want %d", got, gid)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".ctl*")); len(leftovers) != 0 {
		t.Fatalf("temporary socket left: %v", leftovers)
	}
	if err := Ping(path); err != nil {
		t.Fatal(err)
	}
	res, err := Write(context.Background(), path, Request{Device: "dev", Tag: "sp", Text: "7"}, 5*time.Second)
	if err != nil || !res.OK || string(res.ReadBack) != "7" {
		t.Fatalf("write: %+v %v", res, err)
	}
	me, _ := user.Current()
	f, err := os.ReadFile(filepath.Join(dir, door.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	var l door.Line
	if err := json.Unmarshal(f, &l); err != nil {
		t.Fatal(err)
	}
	if l.Source.Kind != door.FromCLI || l.Source.User != me.Username || l.Source.Name != "pid "+strconv.Itoa(os.Getpid()) {
		t.Fatalf("audit source %+v, want the kernel's view of this process (%s, pid %d)", l.Source, me.Username, os.Getpid())
	}
}

func TestSecondDaemonRefusedStaleSocketReplaced(t *testing.T) {
	dir := shortDir(t)
	path := SocketPath(dir)
	devs := &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}}
	first := listen(t, path, devs, "")
	if _, err := Listen(path, door.New(devs, door.Options{}), nil); err == nil || !strings.Contains(err.Error(), "another edged answers") {
		t.Fatalf("second Listen: %v", err)
	}
	if err := Ping(path); err != nil {
		t.Fatalf("the refused second daemon broke the first: %v", err)
	}
	first.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	// A socket file nobody answers on, as a killed daemon leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := Ping(path); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("ping on a stale socket: %v, want ErrNoDaemon", err)
	}
	if _, err := Write(context.Background(), filepath.Join(dir, "none.sock"), Request{Device: "dev", Tag: "sp", Text: "1"}, time.Second); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("write without a socket: %v, want ErrNoDaemon", err)
	}
	listen(t, path, devs, "")
	if err := Ping(path); err != nil {
		t.Fatalf("the stale socket was not replaced: %v", err)
	}
}

func TestBadRequestsGetAnAnswer(t *testing.T) {
	dir := shortDir(t)
	path := SocketPath(dir)
	listen(t, path, &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}}, "")
	raw := func(payload string) string {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go c.Write([]byte(payload))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for _, tc := range []struct{ in, want string }{
		{"not json\n", "not JSON"},
		{`{"op":"reboot"}` + "\n", `unknown op \"reboot\"`},
		{strings.Repeat("x", maxRequest+10), "longer than"},
		{`{"op":"write","device":"dev","tag":"sp","value":"x"}` + "\n", `"reason":"bad_payload"`},
		{`{"op":"write","device":"dev","tag":"sp","text":"1","value":1}` + "\n", `"reason":"bad_payload"`},
		{`{"op":"write","tag":"sp","text":"1"}` + "\n", `"reason":"bad_payload"`},
	} {
		if got := raw(tc.in); !strings.Contains(got, tc.want) {
			t.Errorf("request %.40q: answer %q, want %q", tc.in, got, tc.want)
		}
	}
	// A client that says nothing and goes away costs nothing lasting.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := Ping(path); err != nil {
		t.Fatal(err)
	}
}

// A client that gives up does not cancel the daemon's write, and sees a
// clear error; the write is audited when it completes.
func TestClientTimeoutLeavesTheWriteRunning(t *testing.T) {
	dir := shortDir(t)
	path := SocketPath(dir)
	devs := &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}, block: make(chan struct{})}
	listen(t, path, devs, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Write(ctx, path, Request{Device: "dev", Tag: "sp", Text: "3"}, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("client timeout: %v", err)
	}
	close(devs.block)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, door.AuditFile))
		if strings.Contains(string(b), `"result":"ok"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the abandoned write was not completed and audited: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	long := filepath.Join(shortDir(t), strings.Repeat("d", 120))
	_, err := Listen(SocketPath(long), door.New(&oneTag{}, door.Options{}), nil)
	if err == nil || !strings.Contains(err.Error(), "at most 107") || !strings.Contains(err.Error(), "shorter data_dir") {
		t.Fatalf("long path: %v", err)
	}
}
