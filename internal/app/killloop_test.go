package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
)

// The kill -9 loop runs edged's runtime (app.Start with one upstream) in a
// child process: this test binary re-executed with EDGED_KILL_CHILD set.
// The child publishes {"seq":N,"run":R} into its local broker at ~1 kHz and
// prints "durable N" whenever the buffer reports seq N (and everything
// before it) synced to disk.
func TestMain(m *testing.M) {
	if os.Getenv("EDGED_KILL_CHILD") != "" {
		os.Exit(killChild())
	}
	os.Exit(m.Run())
}

func killChild() int {
	env := func(k string) string { return os.Getenv(k) }
	start, _ := strconv.Atoi(env("KC_START"))
	count, _ := strconv.Atoi(env("KC_COUNT"))
	cfg := &configs.Config{
		Gateway: configs.Gateway{ID: "gw", TopicPrefix: "edged", TopicTemplate: configs.DefaultTopicTemplate, DataDir: env("KC_DIR")},
		Broker:  configs.Broker{Disabled: true},
		Metrics: configs.Metrics{Disabled: true},
		Upstreams: []*configs.Upstream{{
			Name: "cloud", URL: "mqtts://" + env("KC_ADDR"), Protocol: "5", ClientID: "edged-kill",
			CAFile: env("KC_CA"), CertFile: env("KC_CERT"), KeyFile: env("KC_KEY"),
			KeepAlive: configs.Duration(5 * time.Second), Topics: []string{"edged/#"}, MaxInflight: 32, ReplayRate: 5000,
			BufferDir: filepath.Join(env("KC_DIR"), "buffer"), MaxBytes: 64 << 20, Sync: "interval",
			SyncInterval: configs.Duration(100 * time.Millisecond),
		}},
	}
	rt, err := Start(context.Background(), cfg, nil)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	q := rt.Uplinks()[0]
	out := bufio.NewWriter(os.Stdout)
	appendedAt := make([]uint64, 0, count) // appended count after seq start+i
	base := q.Stats().Buffer.Appended
	reported := start - 1
	report := func() {
		d := q.Stats().Buffer.Durable
		i := reported - start + 1
		for i < len(appendedAt) && appendedAt[i]-base <= d {
			i++
		}
		if s := start + i - 1; s > reported {
			reported = s
			fmt.Fprintf(out, "durable %d\n", s)
			out.Flush()
		}
	}
	run := env("KC_RUN")
	tick := time.NewTicker(time.Millisecond)
	for i := range count {
		<-tick.C
		p := fmt.Appendf(nil, `{"seq":%d,"run":%s,"ts":%d}`, start+i, run, time.Now().UnixMilli())
		_ = rt.Broker.Publish("edged/gw/dev/a", p, false, 0)
		appendedAt = append(appendedAt, uint64(i+1))
		if i%20 == 0 {
			report()
		}
	}
	fmt.Fprintln(out, "produced")
	out.Flush()
	for {
		time.Sleep(20 * time.Millisecond)
		report()
	}
}

type child struct {
	cmd     *exec.Cmd
	durable chan int
	done    chan struct{}
}

func startChild(t *testing.T, env []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "EDGED_KILL_CHILD=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, durable: make(chan int, 10000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "durable "); ok {
				v, _ := strconv.Atoi(n)
				c.durable <- v
			} else if strings.HasPrefix(sc.Text(), "error") {
				t.Errorf("child: %s", sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
	<-c.done
}

// TestKillLoop: edged is killed with SIGKILL at random moments, during an
// outage of its uplink and after it, five times; after the last restart
// the cloud has every message whose append had been synced, and the
// duplicates (the same message delivered twice) stay within the in-flight
// window per kill.
func TestKillLoop(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	sub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/gw/dev/#")
	dir := t.TempDir()
	base := []string{"KC_DIR=" + dir, "KC_ADDR=" + proxy.Addr(), "KC_CA=" + mq.CAFile, "KC_CERT=" + mq.ClientCert, "KC_KEY=" + mq.ClientKey}
	next := 0
	const kills = 5
	for run := range kills {
		if run == 1 {
			proxy.Cut() // runs 1-3 happen during an outage
		}
		if run == 4 {
			proxy.Restore()
		}
		c := startChild(t, append(base, "KC_START="+strconv.Itoa(next), "KC_COUNT=100000", "KC_RUN="+strconv.Itoa(run)))
		deadline := time.After(time.Duration(400+rand.IntN(800)) * time.Millisecond)
		last := next - 1
	wait:
		for {
			select {
			case d := <-c.durable:
				last = max(last, d)
			case <-deadline:
				break wait
			}
		}
		c.kill()
		for len(c.durable) > 0 {
			last = max(last, <-c.durable)
		}
		t.Logf("run %d: killed; durable up to seq %d", run, last)
		next = last + 1
	}
	// A last run that produces nothing drains the buffer.
	c := startChild(t, append(base, "KC_START="+strconv.Itoa(next), "KC_COUNT=0", "KC_RUN=99"))
	msgs := sub.WaitFor(60*time.Second, fmt.Sprintf("every seq below %d", next), func(ms []mqtttest.Message) bool {
		seen := map[int]bool{}
		for _, m := range ms {
			var s struct{ Seq int }
			if json.Unmarshal(m.Payload, &s) == nil {
				seen[s.Seq] = true
			}
		}
		for i := range next {
			if !seen[i] {
				return false
			}
		}
		return true
	})
	c.kill()
	type key struct{ seq, run int }
	seen := map[key]bool{}
	dups := 0
	for _, m := range msgs {
		var s struct{ Seq, Run int }
		if err := json.Unmarshal(m.Payload, &s); err != nil {
			t.Fatalf("payload %q: %v", m.Payload, err)
		}
		k := key{s.Seq, s.Run}
		if seen[k] {
			dups++
		}
		seen[k] = true
	}
	t.Logf("%d messages received for %d durable sequence numbers; %d duplicates", len(msgs), next, dups)
	// In flight (32) plus acknowledged but not yet deleted (one 5 ms group
	// commit) per kill.
	if limit := kills * (32 + 32); dups > limit {
		t.Errorf("%d duplicates after %d kills, more than %d", dups, kills, limit)
	}
}
