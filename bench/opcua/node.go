package main

import (
	"bufio"
	"context"
	"fmt"
	"github.com/edged-gw/edged/bench/internal/benchkit"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound/opcua"
)

// nodeServer is southbound/opcua/testdata/nodeserver/server.js.
type nodeServer struct {
	dir, pki string
	port     int
	args     []string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	ns       int
	sha1     string
}

func (s *nodeServer) start() error {
	args := append([]string{"server.js", "--port", fmt.Sprint(s.port), "--pki", s.pki}, s.args...)
	cmd := exec.Command("node", args...)
	cmd.Dir = s.dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ready ") {
			continue
		}
		var port int
		if _, err := fmt.Sscanf(line, "ready port=%d ns=%d sha1=%s", &port, &s.ns, &s.sha1); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("ready line %q: %w", line, err)
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		s.cmd, s.stdin = cmd, stdin
		return nil
	}
	_ = cmd.Wait()
	return fmt.Errorf("server.js exited before it was ready")
}

func (s *nodeServer) kill() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func (s *nodeServer) stop() {
	_ = s.stdin.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.kill()
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "opcua bench: "+format+"\n", args...)
	os.Exit(1)
}

// benchNode measures the driver against node-opcua in a child process.
func benchNode(dir string, items int, dur, bulkInterval, publish time.Duration, secure bool) {
	dir, _ = filepath.Abs(dir)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua")); err != nil {
		fatal("node-opcua is not installed in %s: run `make test-deps`", dir)
	}
	tmp, err := os.MkdirTemp("", "edged-opcua-bench-")
	if err != nil {
		fatal("%v", err)
	}
	defer os.RemoveAll(tmp)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal("%v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := &nodeServer{dir: dir, pki: filepath.Join(tmp, "server-pki"), port: port,
		args: []string{"--bulk", fmt.Sprint(items), "--bulk-interval", fmt.Sprint(bulkInterval.Milliseconds())}}
	t0 := time.Now()
	if err := srv.start(); err != nil {
		fatal("start node-opcua: %v", err)
	}
	defer srv.stop()
	fmt.Printf("node-opcua server with %d variables ready in %v\n", items, time.Since(t0).Round(time.Millisecond))

	d := opcua.New()
	d.Name, d.Endpoint = "bench", fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
	if rtt > 0 {
		addr, err := benchkit.DelayProxy(fmt.Sprintf("127.0.0.1:%d", port), rtt/2)
		if err != nil {
			fatal("%v", err)
		}
		d.Endpoint = "opc.tcp://" + addr
		fmt.Printf("through a proxy adding %v of round trip\n", rtt)
	}
	d.SecurityPolicy = "None"
	if secure {
		pw := filepath.Join(tmp, "password")
		if err := os.WriteFile(pw, []byte("s3cret-Pa55\n"), 0o600); err != nil {
			fatal("%v", err)
		}
		d.SecurityPolicy, d.SecurityMode = "Basic256Sha256", "SignAndEncrypt"
		d.Auth, d.Username, d.PasswordFile = "username", "operator", pw
		d.TrustedThumbprints = []string{srv.sha1}
	}
	d.PublishRequests = publishRequests
	d.PublishingInterval = configs.Duration(publish)
	d.SamplingInterval = 0
	d.Timeout = configs.Duration(30 * time.Second)
	d.Keepalive = configs.Duration(time.Second)
	for i := range items {
		t := opcua.Tag{Node: fmt.Sprintf("ns=%d;s=Bulk.%05d", srv.ns, i)}
		t.Name = fmt.Sprintf("v%05d", i)
		d.Tag = append(d.Tag, t)
	}
	if err := d.Init(); err != nil {
		fatal("%v", err)
	}
	d.SetDataDir(filepath.Join(tmp, "edged"))
	sink := &countingSink{first: make(chan struct{}, 1)}
	t0 = time.Now()
	if err := d.Start(context.Background(), sink); err != nil {
		fatal("%v", err)
	}
	for sink.values.Load() < uint64(items) {
		if time.Since(t0) > 2*time.Minute {
			fatal("no values after 2m: %+v", d.Counters())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("online with %d monitored items in %v (%s; %d CreateMonitoredItems calls)\n", items,
		time.Since(t0).Round(time.Millisecond), d.SecurityPolicy, d.Counters().MonitorRequests)
	time.Sleep(2 * time.Second) // past the initial burst

	v0, c0, w0 := sink.values.Load(), cpu(), time.Now()
	time.Sleep(dur)
	v1, c1, w1 := sink.values.Load(), cpu(), time.Now()
	n := float64(v1 - v0)
	offered := float64(items) * w1.Sub(w0).Seconds() / bulkInterval.Seconds()
	fmt.Printf("values/s: %.0f (%d values in %v; the server changes %d variables every %v: at most %.0f/s)\n",
		n/w1.Sub(w0).Seconds(), v1-v0, w1.Sub(w0).Round(time.Millisecond), items, bulkInterval, offered/w1.Sub(w0).Seconds())
	fmt.Printf("CPU s per million values (edged's driver and sink only; node-opcua is another process): %.2f (%.2f CPU s in %v; publish_requests = %d)\n",
		(c1-c0).Seconds()/n*1e6, (c1 - c0).Seconds(), w1.Sub(w0).Round(time.Millisecond), d.PublishRequests)
	printCounters(d)

	// Kill the server, start it again (same port, same certificate), and
	// time from its ready line to the first value of the new session.
	k0 := time.Now()
	srv.kill()
	for sink.online.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.start(); err != nil {
		fatal("restart node-opcua: %v", err)
	}
	r0 := time.Now()
	for !sink.online.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-sink.first:
	default:
	}
	<-sink.first
	fmt.Printf("reconnect after server restart: %v from the server ready to the first value (%d items re-monitored; backoff included); outage %v incl. server start %v\n",
		time.Since(r0).Round(time.Millisecond), items, time.Since(k0).Round(time.Millisecond), r0.Sub(k0).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = d.Stop(ctx)
}
