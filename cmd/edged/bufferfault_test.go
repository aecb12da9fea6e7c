package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
)

// TestDamagedBufferNeverStopsTheGateway runs the edged binary on an
// upstream buffer that the test filled with messages and then damaged
// the way an SD card, a power cut or an operator does it. Whatever is in
// the buffer directory, edged polls its device and serves its local
// broker within seconds of the start, never panics, keeps one session to
// the cloud (one connect at mosquitto, one "online", no "offline": no
// reconnect storm), and every message the buffer held is either
// delivered to the cloud broker or counted in
// edged_uplink_buffer_lost_total.
func TestDamagedBufferNeverStopsTheGateway(t *testing.T) {
	const old = 20_000 // messages in the buffer before the damage
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		moved  bool // the store is moved aside (all of it lost, counted)
	}{
		{"truncated table", func(t *testing.T, dir string) {
			f := sstFiles(t, dir)[0]
			if err := exec.Command("truncate", "-s", "-4", f).Run(); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"random bytes in a table", func(t *testing.T, dir string) {
			f, err := os.OpenFile(sstFiles(t, dir)[0], os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 512)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			if _, err := f.WriteAt(b, 100); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}, false},
		{"garbled MANIFEST", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("garbage, not a manifest"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			gw := "gw-" + strings.ReplaceAll(c.name, " ", "-")
			bufDir := filepath.Join(dir, "state", "buffer", "cloud")
			fillBuffer(t, bufDir, "edged/"+gw+"/old/x", old)
			c.damage(t, bufDir)

			cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/"+gw+"/#")
			brokerAddr, metricsAddr := freeAddr(t), freeAddr(t)
			path := writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = %q
data_dir = %q
[broker]
listen = %q
[metrics]
listen = %q
`+deadDevice+`[[upstream]]
name = "cloud"
url = "mqtt://%s"
insecure_plaintext = true
replay_rate = 100000
max_bytes = "64MiB"
`, gw, filepath.Join(dir, "state"), brokerAddr, metricsAddr, mq.PlainAddr()))
			start := time.Now()
			cmd, out := startRun(t, path)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()

			// Polling and serving locally, within seconds.
			local := waitSubscribe(t, brokerAddr, exited, out, "edged/"+gw+"/dead/#")
			local.WaitFor(10*time.Second, "a polled value on the local broker", func(ms []mqtttest.Message) bool {
				for _, m := range ms {
					if m.Topic == "edged/"+gw+"/dead/x" {
						return true
					}
				}
				return false
			})
			t.Logf("local broker served a polled value %v after the start", time.Since(start).Round(time.Millisecond))

			// The uplink delivers live data, and what the buffer kept.
			scrape := func(series string) float64 { return scrapeMetric(t, metricsAddr, series) }
			var got int
			cloud.WaitFor(60*time.Second, "live data, and every old message delivered or counted lost", func(ms []mqtttest.Message) bool {
				seen, live := map[int]bool{}, false
				for _, m := range ms {
					if m.Topic == "edged/"+gw+"/dead/x" {
						live = true
					}
					var v struct{ Seq *int }
					if m.Topic == "edged/"+gw+"/old/x" && json.Unmarshal(m.Payload, &v) == nil && v.Seq != nil {
						seen[*v.Seq] = true
					}
				}
				got = len(seen)
				lost := scrape(`edged_uplink_buffer_lost_total{reason="damaged",upstream="cloud"}`)
				return live && float64(got)+lost == old
			})
			lost := scrape(`edged_uplink_buffer_lost_total{reason="damaged",upstream="cloud"}`)
			recovered := scrape(`edged_uplink_buffer_recovered{upstream="cloud"}`)
			t.Logf("delivered %d old messages, %v counted lost, recovered %v", got, lost, recovered)
			if lost == 0 {
				t.Fatal("a damaged buffer lost nothing? the damage did not take")
			}
			if c.moved != (recovered == 1) {
				t.Fatalf("edged_uplink_buffer_recovered = %v, want moved aside %v", recovered, c.moved)
			}
			if !c.moved && got == 0 {
				t.Fatal("nothing of the damaged buffer delivered: the damage stops delivery")
			}
			// No reconnect storm: the damage costs no session, and the
			// status goes up once ("online"), never "offline".
			var on, off int
			for _, m := range cloud.On("edged/" + gw + "/status") {
				switch string(m.Payload) {
				case "online":
					on++
				case "offline":
					off++
				}
			}
			connects := mq.Connects("edged-" + gw)
			t.Logf("cloud sessions %d, status online %d, offline %d", connects, on, off)
			if connects != 1 || on != 1 || off != 0 {
				t.Fatalf("%d sessions at the cloud broker, status %d× online and %d× offline: want one session, once online", connects, on, off)
			}
			for _, l := range out.snapshot() {
				if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "goroutine ") {
					t.Fatalf("edged logged a panic: %s", l)
				}
			}
			select {
			case err := <-exited:
				t.Fatalf("edged exited: %v", err)
			default:
			}
		})
	}
}

// TestReadOnlyBufferStopsOnlyItsUpstream: a buffer directory on a
// read-only file system (an SD card that turned itself read-only) cannot
// be opened nor replaced; edged still polls and serves locally, and
// /readyz names the upstream that is not running.
func TestReadOnlyBufferStopsOnlyItsUpstream(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test mounts a tmpfs and needs root (CI runs as root)")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "ro")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	fillBuffer(t, filepath.Join(mnt, "cloud"), "edged/gw-ro/old/x", 100)
	if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	brokerAddr, metricsAddr := freeAddr(t), freeAddr(t)
	path := writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = "gw-ro"
data_dir = %q
[broker]
listen = %q
[metrics]
listen = %q
`+deadDevice+`[[upstream]]
name = "cloud"
url = "mqtt://127.0.0.1:1"
insecure_plaintext = true
buffer_dir = %q
`, filepath.Join(dir, "state"), brokerAddr, metricsAddr, filepath.Join(mnt, "cloud")))
	cmd, out := startRun(t, path)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	local := waitSubscribe(t, brokerAddr, exited, out, "edged/gw-ro/dead/#")
	local.WaitTopic(10*time.Second, "edged/gw-ro/dead/x", func([]byte) bool { return true })
	// The metrics listener starts after the gateway: wait until it answers.
	code, body := httpGet(t, "http://"+metricsAddr+"/readyz")
	for deadline := time.Now().Add(10 * time.Second); code == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		code, body = httpGet(t, "http://"+metricsAddr+"/readyz")
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream cloud: not running") {
		t.Fatalf("/readyz %d %q: want the upstream named as not running", code, body)
	}
	out.wait(t, 5*time.Second, regexp.MustCompile(`level=ERROR msg="upstream not started: its buffer cannot be opened"`))
}

// fillBuffer writes n messages {"seq":i} on topic into a buffer at dir,
// as an uplink that was down would have, and closes it.
func fillBuffer(t *testing.T, dir, topic string, n int) {
	t.Helper()
	q, err := buffer.Open(buffer.Options{Dir: dir, MaxBytes: 64 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 80)
	for i := range n {
		q.Append(topic, fmt.Appendf(nil, `{"seq":%d,"pad":%q}`, i, pad))
	}
	q.Flush()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func sstFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(m) == 0 {
		t.Fatalf("no table files in %s", dir)
	}
	return m
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitSubscribe subscribes to the local broker once it accepts
// connections, failing at once if edged exits meanwhile.
func waitSubscribe(t *testing.T, addr string, exited chan error, out *lineWriter, filter string) *mqtttest.Subscriber {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("edged exited before serving its local broker: %v; output:\n%s", err, strings.Join(out.snapshot(), "\n"))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return mqtttest.Subscribe(t, addr, filter)
		}
		if time.Now().After(deadline) {
			t.Fatalf("local broker at %s not serving within 10 s; output:\n%s", addr, strings.Join(out.snapshot(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *lineWriter) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrapeMetric reads one series from edged's /metrics (-1 when absent).
func scrapeMetric(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
