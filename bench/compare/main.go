// Command compare runs edged and, with -gateways, its peers (Telegraf,
// Node-RED with node-red-contrib-modbus) side by side on the same
// scenarios, one process at a time, and prints one table:
//
//   - the same Modbus TCP generator (internal/modbussim, in a child
//     process): each device holds a poll sequence number (registers 0–1,
//     counting the reads that start there), 500 float32 tags (2–1001) and an
//     answer clock (1002–1003, µs when the read covering it was answered);
//   - the same cloud broker: Debian's mosquitto on loopback, QoS 1;
//   - the same sink: a QoS 1 subscriber in this process that checks every
//     poll's sequence number (lost, duplicated) and times poll-complete →
//     cloud broker → sink from the clock;
//   - the gateway alone on one CPU (taskset -gw-cpu), the generator,
//     mosquitto and the sink on the other (-aux-cpu).
//
// CPU is the gateway process's time on the CPU (schedstat of its threads),
// RSS its resident set sampled every 250 ms. The table goes to stdout and,
// with the machine's description, to -out.
//
//	go run ./bench/compare                                  # edged only (make bench)
//	go run ./bench/compare -gateways edged,telegraf,nodered # make bench-peers
//	go run ./bench/compare -scenarios 5k,idle -duration 60s
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"github.com/edged-gw/edged/bench/internal/benchkit"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/sys/unix"

	"github.com/edged-gw/edged/internal/modbussim"
)

// Register layout of every simulated device.
const (
	seqAddr   = 0
	tagAddr   = 2
	blockSize = 125 // registers per read
)

func clockAddr(tags int) int { return tagAddr + 2*tags }

// scenario is one load.
type scenario struct {
	name     string
	what     string
	devices  int
	tags     int
	poll     time.Duration
	perTag   bool // edged publish = "tags" (one message per tag)
	upstream bool // false: edged without [[upstream]] (no messages reach the sink)
	only     string
	minDur   time.Duration
}

var scenarios = []scenario{
	{name: "5k", what: "5,000 points/s: 10 devices × 500 float32, 1 s polls, one message per device per poll", devices: 10, tags: 500, poll: time.Second, upstream: true},
	{name: "100k", what: "100,000 points/s: 10 × 500, 50 ms polls", devices: 10, tags: 500, poll: 50 * time.Millisecond, upstream: true},
	{name: "max", what: "most points/s on one core: 10 × 500, 10 ms polls (500,000 offered)", devices: 10, tags: 500, poll: 10 * time.Millisecond, upstream: true},
	{name: "idle", what: "idle: 1 device × 10 tags every 10 s, uplink connected", devices: 1, tags: 10, poll: 10 * time.Second, upstream: true, minDur: 60 * time.Second},
	{name: "idle-noup", what: "idle without any [[upstream]] (edged only)", devices: 1, tags: 10, poll: 10 * time.Second, only: "edged", minDur: 60 * time.Second},
	{name: "max20", what: "20 × 500, 10 ms polls (1,000,000 offered; edged only, not in the default list)", devices: 20, tags: 500, poll: 10 * time.Millisecond, upstream: true, only: "edged"},
	{name: "pertag", what: "one message per tag at 5,000 msgs/s: 10 × 500, 1 s polls, publish = \"tags\" (edged only)", devices: 10, tags: 500, poll: time.Second, perTag: true, upstream: true, only: "edged"},
}

type options struct {
	duration, warmup time.Duration
	gwCPU, auxCPU    string
	edged, telegraf  string
	nodeRed          string
	self             string
	inflight         int // edged's [[upstream]] max_inflight; 0: its default
}

func main() {
	role := flag.String("role", "bench", "bench | sim (internal: the generator child)")
	devices := flag.Int("devices", 10, "sim: devices")
	tags := flag.Int("tags", 500, "sim: float32 tags per device")
	gws := flag.String("gateways", "edged", "comma list of edged, telegraf, nodered")
	which := flag.String("scenarios", "5k,100k,max,idle,idle-noup,pertag", "comma list of scenarios")
	var o options
	flag.DurationVar(&o.duration, "duration", 25*time.Second, "measuring window of each run (idle runs take at least 60s)")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "run this long before measuring")
	flag.StringVar(&o.gwCPU, "gw-cpu", "1", "CPU list the gateway is pinned to (taskset)")
	flag.StringVar(&o.auxCPU, "aux-cpu", "0", "CPU list of the generator, mosquitto and this process's sink")
	flag.StringVar(&o.edged, "edged", "bin/edged", "edged binary")
	flag.IntVar(&o.inflight, "edged-inflight", 0, "edged's [[upstream]] max_inflight (0: edged's default)")
	flag.StringVar(&o.telegraf, "telegraf", "bench/peers/bin/telegraf", "Telegraf binary (bench/peers/install.sh)")
	flag.StringVar(&o.nodeRed, "nodered", "bench/peers/node_modules/node-red/red.js", "Node-RED's red.js (bench/peers/install.sh)")
	out := flag.String("out", "bench/results", "folder for the results file (\"\": none)")
	flag.Parse()
	if *role == "sim" {
		runSim(*devices, *tags)
		return
	}
	var err error
	if o.self, err = os.Executable(); err != nil {
		die("%v", err)
	}
	if _, err := exec.LookPath("mosquitto"); err != nil {
		die("mosquitto is not installed: run scripts/test-deps.sh (apt-get install mosquitto)")
	}
	// This process is the sink: keep it off the gateway's CPU.
	if o.auxCPU != "" {
		var set unix.CPUSet
		for _, f := range strings.Split(o.auxCPU, ",") {
			if c, err := strconv.Atoi(f); err == nil {
				set.Set(c)
			}
		}
		if set.Count() > 0 {
			_ = unix.SchedSetaffinity(0, &set) // every thread of this process
		}
	}
	gateways := strings.Split(*gws, ",")
	for _, g := range gateways {
		switch g {
		case "edged":
			if _, err := os.Stat(o.edged); err != nil {
				die("%s: build it first (make build)", o.edged)
			}
		case "telegraf":
			if _, err := os.Stat(o.telegraf); err != nil {
				die("%s: run bench/peers/install.sh (make bench-peers does)", o.telegraf)
			}
		case "nodered":
			if _, err := os.Stat(o.nodeRed); err != nil {
				die("%s: run bench/peers/install.sh (make bench-peers does)", o.nodeRed)
			}
		default:
			die("-gateways: %q is not edged, telegraf or nodered", g)
		}
	}
	var rows []row
	for _, name := range strings.Split(*which, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
		if i < 0 {
			die("-scenarios: %q is not one of 5k, 100k, max, idle, idle-noup, pertag", name)
		}
		sc := scenarios[i]
		for _, g := range gateways {
			if sc.only != "" && sc.only != g {
				continue
			}
			fmt.Fprintf(os.Stderr, "compare: %s on %s …\n", sc.name, g)
			r, err := run(sc, g, o)
			if err != nil {
				fmt.Fprintf(os.Stderr, "compare: %s on %s: %v\n", sc.name, g, err)
				r = row{scenario: sc, gateway: g, err: err}
			}
			rows = append(rows, r)
		}
	}
	text := report(rows, o, gateways)
	fmt.Print(text)
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			die("%v", err)
		}
		path := filepath.Join(*out, "compare-"+time.Now().UTC().Format("20060102-150405")+".txt")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			die("%v", err)
		}
		fmt.Println("written to", path)
	}
}

// row is one scenario on one gateway.
type row struct {
	scenario scenario
	gateway  string
	version  string
	secs     float64
	cpu      float64 // seconds
	points   uint64
	msgs     uint64
	rssMed   float64 // MB
	rssPeak  float64
	lat      []time.Duration
	lost     uint64
	dups     uint64
	err      error
}

func run(sc scenario, gw string, o options) (row, error) {
	r := row{scenario: sc, gateway: gw}
	dir, err := os.MkdirTemp("", "edged-compare-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	addrs, stopSim, err := startSim(o, sc.devices, sc.tags)
	if err != nil {
		return r, fmt.Errorf("generator: %w", err)
	}
	defer stopSim()
	broker, stopBroker, err := startMosquitto(dir, o.auxCPU)
	if err != nil {
		return r, err
	}
	defer stopBroker()
	sink, err := newSink(broker, sc)
	if err != nil {
		return r, fmt.Errorf("sink: %w", err)
	}
	defer sink.close()

	var cmd *exec.Cmd
	switch gw {
	case "edged":
		cmd, err = edgedCmd(dir, o, sc, addrs, broker)
	case "telegraf":
		cmd, err = telegrafCmd(dir, o, sc, addrs, broker)
	case "nodered":
		cmd, err = nodeRedCmd(dir, o, sc, addrs, broker)
	}
	if err != nil {
		return r, err
	}
	r.version = version(gw, o)
	logf, err := os.Create(filepath.Join(dir, gw+".log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start %s: %w", gw, err)
	}
	exited := make(chan struct{}) // closed when the gateway exited, with waitErr set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid

	// Wait for the first message (a gateway takes a few seconds to start:
	// Node-RED ~5 s), then warm up.
	dur := max(o.duration, sc.minDur)
	if sc.upstream {
		deadline := time.Now().Add(60*time.Second + 2*sc.poll)
		for sink.messages() == 0 {
			select {
			case <-exited:
				return r, fmt.Errorf("%s exited: %v (log: %s)", gw, waitErr, tail(logf.Name()))
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("no message from %s within 60 s (log: %s)", gw, tail(logf.Name()))
			}
		}
	}
	time.Sleep(o.warmup)

	mem := startRSS(pid)
	c0, t0 := procCPU(pid), time.Now()
	sink.start()
	time.Sleep(dur)
	snap := sink.stop()
	c1, t1 := procCPU(pid), time.Now()
	r.rssMed, r.rssPeak = mem.stop()
	select {
	case <-exited:
		return r, fmt.Errorf("%s exited while measured: %v (log: %s)", gw, waitErr, tail(logf.Name()))
	default:
	}
	r.secs, r.cpu = t1.Sub(t0).Seconds(), (c1 - c0).Seconds()
	r.points, r.msgs, r.lat, r.lost, r.dups = snap.points, snap.msgs, snap.lat, snap.lost, snap.dups
	return r, nil
}

// ---- the generator ----

func runSim(devices, tags int) {
	var sims []*modbussim.Server
	for i := 0; i < devices; i++ {
		s := modbussim.New()
		s.SetStamps(seqAddr, clockAddr(tags))
		if err := s.Listen("127.0.0.1:0"); err != nil {
			die("%v", err)
		}
		sims = append(sims, s)
		fmt.Println(s.Addr())
	}
	fmt.Println("ready")
	go func() {
		words := make([]uint16, 0, 2*tags)
		for k := 0; ; k++ {
			for d, s := range sims {
				words = words[:0]
				for t := 0; t < tags; t++ {
					b := math.Float32bits(float32(d*1000+t) + float32(k%100)/10)
					words = append(words, uint16(b>>16), uint16(b))
				}
				s.SetHolding(tagAddr, words...)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

func startSim(o options, devices, tags int) ([]string, func(), error) {
	cmd := pinned(o.auxCPU, o.self, "-role", "sim", "-devices", fmt.Sprint(devices), "-tags", fmt.Sprint(tags))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() { stdin.Close(); _ = cmd.Wait() }
	var addrs []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
		addrs = append(addrs, sc.Text())
	}
	if len(addrs) != devices {
		stop()
		return nil, nil, fmt.Errorf("generator gave %d addresses, want %d", len(addrs), devices)
	}
	return addrs, stop, nil
}

// ---- mosquitto ----

func startMosquitto(dir, cpu string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 1000000\n"), 0o644); err != nil {
		return "", nil, err
	}
	cmd := pinned(cpu, "mosquitto", "-c", conf)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start mosquitto: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			stop()
			return "", nil, fmt.Errorf("mosquitto did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, stop, nil
}

// ---- the sink ----

type sink struct {
	client *paho.Client
	perTag bool
	tags   int

	mu        sync.Mutex
	total     uint64
	measuring bool
	points    uint64
	msgs      uint64
	seen      map[string]map[uint32]int // device → seq → times seen
	lat       []time.Duration
}

type snapshot struct {
	points, msgs, lost, dups uint64
	lat                      []time.Duration
}

func newSink(addr string, sc scenario) (*sink, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	s := &sink{perTag: sc.perTag, tags: sc.tags}
	s.client = paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.on(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.client.Connect(ctx, &paho.Connect{ClientID: "compare-sink", CleanStart: true, KeepAlive: 30}); err != nil {
		return nil, err
	}
	if _, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sink) close() { _ = s.client.Disconnect(&paho.Disconnect{}) }

func (s *sink) messages() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *sink) start() {
	s.mu.Lock()
	s.measuring, s.points, s.msgs, s.lat, s.seen = true, 0, 0, nil, map[string]map[uint32]int{}
	s.mu.Unlock()
}

func (s *sink) stop() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.measuring = false
	sn := snapshot{points: s.points, msgs: s.msgs, lat: s.lat}
	for _, seqs := range s.seen {
		lo, hi := uint32(math.MaxUint32), uint32(0)
		for q, n := range seqs {
			lo, hi = min(lo, q), max(hi, q)
			sn.dups += uint64(n - 1)
		}
		if len(seqs) > 0 {
			sn.lost += uint64(hi-lo+1) - uint64(len(seqs))
		}
	}
	return sn
}

// on handles one message: a device message (edged publish = "device",
// Telegraf, Node-RED) carries seq, clock and the tags t000…; with one
// message per tag, .../seq and .../clock carry them and every .../tNNN
// message is one point.
func (s *sink) on(topic string, p []byte) {
	now := uint32(time.Now().UnixMicro())
	dev, last := "", topic[strings.LastIndexByte(topic, '/')+1:]
	for _, seg := range strings.Split(topic, "/") {
		if len(seg) == 3 && seg[0] == 'd' && isDigit(seg[1]) && isDigit(seg[2]) {
			dev = seg
		}
	}
	if dev == "" {
		return // status and other topics
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if !s.measuring {
		return
	}
	if s.perTag {
		s.msgs++
		switch {
		case last == "seq":
			if v, ok := number(p, "v"); ok {
				s.seq(dev, uint32(v))
			}
		case last == "clock":
			if v, ok := number(p, "v"); ok {
				s.latency(now, uint32(v))
			}
		case len(last) == 4 && last[0] == 't':
			s.points++
		}
		return
	}
	seq, ok1 := field(p, "seq")
	clock, ok2 := field(p, "clock")
	if !ok1 || !ok2 {
		return
	}
	s.msgs++
	s.points += uint64(countTags(p))
	s.seq(dev, uint32(seq))
	s.latency(now, uint32(clock))
}

func (s *sink) seq(dev string, q uint32) {
	m := s.seen[dev]
	if m == nil {
		m = map[uint32]int{}
		s.seen[dev] = m
	}
	m[q]++
}

func (s *sink) latency(now, clock uint32) {
	if d := time.Duration(now-clock) * time.Microsecond; d < time.Minute {
		s.lat = append(s.lat, d)
	}
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// field finds "key": in p and returns the number after it, or after its
// "v": when the value is an object (edged's {"v": …, "ts": …}).
func field(p []byte, key string) (float64, bool) {
	k := `"` + key + `"`
	i := strings.Index(string(p), k)
	if i < 0 {
		return 0, false
	}
	rest := strings.TrimLeft(string(p[i+len(k):]), " :")
	if strings.HasPrefix(rest, "{") {
		return number([]byte(rest), "v")
	}
	return leadingNumber(rest)
}

func number(p []byte, key string) (float64, bool) {
	k := `"` + key + `"`
	i := strings.Index(string(p), k)
	if i < 0 {
		return 0, false
	}
	return leadingNumber(strings.TrimLeft(string(p[i+len(k):]), " :"))
}

func leadingNumber(s string) (float64, bool) {
	e := 0
	for e < len(s) && (isDigit(s[e]) || s[e] == '.' || s[e] == '-' || s[e] == 'e' || s[e] == 'E' || s[e] == '+') {
		e++
	}
	f, err := strconv.ParseFloat(s[:e], 64)
	return f, err == nil
}

// countTags counts the keys "tNNN" in p.
func countTags(p []byte) int {
	n := 0
	for i := 0; i+6 <= len(p); i++ {
		if p[i] == '"' && p[i+1] == 't' && isDigit(p[i+2]) && isDigit(p[i+3]) && isDigit(p[i+4]) && p[i+5] == '"' {
			n++
			i += 5
		}
	}
	return n
}

// ---- the gateways ----

func pinned(cpu string, args ...string) *exec.Cmd {
	if cpu != "" {
		return exec.Command("taskset", append([]string{"-c", cpu}, args...)...)
	}
	return exec.Command(args[0], args[1:]...)
}

func tagName(t int) string { return fmt.Sprintf("t%03d", t) }

func edgedCmd(dir string, o options, sc scenario, addrs []string, broker string) (*exec.Cmd, error) {
	if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o755); err != nil {
		return nil, err
	}
	var m strings.Builder
	fmt.Fprintf(&m, "[[tag]]\nname = \"seq\"\narea = \"holding_register\"\naddress = %d\ntype = \"uint32\"\n\n", seqAddr)
	for t := 0; t < sc.tags; t++ {
		fmt.Fprintf(&m, "[[tag]]\nname = %q\narea = \"holding_register\"\naddress = %d\ntype = \"float32\"\n\n", tagName(t), tagAddr+2*t)
	}
	fmt.Fprintf(&m, "[[tag]]\nname = \"clock\"\narea = \"holding_register\"\naddress = %d\ntype = \"uint32\"\n", clockAddr(sc.tags))
	if err := os.WriteFile(filepath.Join(dir, "maps", "bench.toml"), []byte(m.String()), 0o644); err != nil {
		return nil, err
	}
	publish := "device"
	if sc.perTag {
		publish = "tags"
	}
	var c strings.Builder
	fmt.Fprintf(&c, "[gateway]\nid = \"bench\"\ndata_dir = %q\npublish = %q\n\n[broker]\nlisten = \"127.0.0.1:0\"\n\n", filepath.Join(dir, "data"), publish)
	for i, a := range addrs {
		fmt.Fprintf(&c, "[[device]]\nname = \"d%02d\"\ndriver = \"modbus-tcp\"\naddress = %q\npoll_interval = %q\ntimeout = \"2s\"\nmap = \"bench\"\n\n", i, a, sc.poll.String())
	}
	if sc.upstream {
		fmt.Fprintf(&c, "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://%s\"\ninsecure_plaintext = true\n", broker)
		if o.inflight > 0 {
			fmt.Fprintf(&c, "max_inflight = %d\n", o.inflight)
		}
	}
	path := filepath.Join(dir, "edged.toml")
	if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
		return nil, err
	}
	return pinned(o.gwCPU, o.edged, "run", "-c", path), nil
}

func telegrafCmd(dir string, o options, sc scenario, addrs []string, broker string) (*exec.Cmd, error) {
	var c strings.Builder
	// Tuned for latency as far as Telegraf goes: flush every 100 ms (the
	// default is 10 s), no jitter.
	fmt.Fprintf(&c, "[agent]\n  interval = %q\n  round_interval = false\n  collection_jitter = \"0s\"\n  flush_interval = \"100ms\"\n  flush_jitter = \"0s\"\n  metric_batch_size = 1000\n  metric_buffer_limit = 1000000\n  omit_hostname = true\n  quiet = true\n\n", sc.poll.String())
	fmt.Fprintf(&c, "[[outputs.mqtt]]\n  servers = [\"tcp://%s\"]\n  topic = 'telegraf/{{ .Tag \"name\" }}'\n  qos = 1\n  layout = \"non-batch\"\n  client_id = \"telegraf-bench\"\n  data_format = \"json\"\n\n", broker)
	for i, a := range addrs {
		fmt.Fprintf(&c, "[[inputs.modbus]]\n  name = \"d%02d\"\n  controller = \"tcp://%s\"\n  timeout = \"2s\"\n  configuration_type = \"request\"\n", i, a)
		fmt.Fprintf(&c, "  [[inputs.modbus.request]]\n    slave_id = 1\n    byte_order = \"ABCD\"\n    register = \"holding\"\n    fields = [\n")
		fmt.Fprintf(&c, "      { address = %d, name = \"seq\", type = \"UINT32\" },\n", seqAddr)
		for t := 0; t < sc.tags; t++ {
			fmt.Fprintf(&c, "      { address = %d, name = %q, type = \"FLOAT32\" },\n", tagAddr+2*t, tagName(t))
		}
		fmt.Fprintf(&c, "      { address = %d, name = \"clock\", type = \"UINT32\" },\n    ]\n\n", clockAddr(sc.tags))
	}
	path := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
		return nil, err
	}
	return pinned(o.gwCPU, o.telegraf, "--config", path), nil
}

// nodeRedCmd writes a flow per device: an inject every poll → a function
// that asks for the device's registers in reads of at most 125 → a
// modbus-flex-getter → a function that assembles one poll's reads and
// writes one JSON message → mqtt out (QoS 1). It is what a Node-RED user
// builds for this job.
func nodeRedCmd(dir string, o options, sc scenario, addrs []string, broker string) (*exec.Cmd, error) {
	host, port, _ := net.SplitHostPort(broker)
	regs := clockAddr(sc.tags) + 2
	var nodes []string
	add := func(s string, a ...any) { nodes = append(nodes, fmt.Sprintf(s, a...)) }
	add(`{"id":"tab","type":"tab","label":"bench"}`)
	add(`{"id":"broker","type":"mqtt-broker","name":"cloud","broker":%q,"port":%q,"clientid":"nodered-bench","autoConnect":true,"usetls":false,"protocolVersion":"4","keepalive":"60","cleansession":true}`, host, port)
	split := fmt.Sprintf(`const regs = %d; context.poll = (context.poll || 0) + 1; const out = [];
for (let a = 0; a < regs; a += 125) out.push({topic: msg.topic, device: msg.topic, poll: context.poll, payload: {fc: 3, unitid: 1, address: a, quantity: Math.min(125, regs - a)}});
return [out];`, regs)
	assemble := fmt.Sprintf(`const regs = %d, tags = %d, blocks = Math.ceil(regs / 125);
let st = context.get("st");
if (!st || st.poll !== msg.poll) { st = {poll: msg.poll, r: new Array(regs), got: 0}; context.set("st", st); }
const a = msg.modbusRequest.address, v = msg.payload;
for (let i = 0; i < v.length; i++) st.r[a + i] = v[i];
if (++st.got < blocks) return null;
const r = st.r, b = Buffer.alloc(4), o = {seq: ((r[0] << 16) | r[1]) >>> 0, clock: ((r[regs - 2] << 16) | r[regs - 1]) >>> 0};
for (let t = 0; t < tags; t++) { b.writeUInt16BE(r[2 + 2 * t], 0); b.writeUInt16BE(r[3 + 2 * t], 2); o["t" + String(t).padStart(3, "0")] = b.readFloatBE(0); }
return {topic: "nodered/" + msg.device, payload: JSON.stringify(o)};`, regs, sc.tags)
	for i, a := range addrs {
		h, p, _ := net.SplitHostPort(a)
		d := fmt.Sprintf("d%02d", i)
		add(`{"id":"client-%s","type":"modbus-client","name":%q,"clienttype":"tcp","bufferCommands":true,"stateLogEnabled":false,"queueLogEnabled":false,"failureLogEnabled":false,"tcpHost":%q,"tcpPort":%q,"tcpType":"DEFAULT","unit_id":"1","commandDelay":"1","clientTimeout":"2000","reconnectOnTimeout":true,"reconnectTimeout":"2000","parallelUnitIdsAllowed":true,"showErrors":false,"showWarnings":false,"showLogs":false}`, d, d, h, p)
		add(`{"id":"inject-%s","type":"inject","z":"tab","name":"poll %s","props":[{"p":"topic","vt":"str"}],"repeat":%q,"once":true,"onceDelay":"1","topic":%q,"wires":[["split-%s"]]}`, d, d, strconv.FormatFloat(sc.poll.Seconds(), 'f', -1, 64), d, d)
		add(`{"id":"split-%s","type":"function","z":"tab","name":"reads","func":%q,"outputs":1,"wires":[["get-%s"]]}`, d, split, d)
		add(`{"id":"get-%s","type":"modbus-flex-getter","z":"tab","name":"get %s","showStatusActivities":false,"showErrors":false,"showWarnings":false,"logIOActivities":false,"server":"client-%s","useIOFile":false,"useIOForPayload":false,"emptyMsgOnFail":false,"keepMsgProperties":true,"delayOnStart":false,"wires":[["asm-%s"],[]]}`, d, d, d, d)
		add(`{"id":"asm-%s","type":"function","z":"tab","name":"assemble","func":%q,"outputs":1,"wires":[["mqtt-%s"]]}`, d, assemble, d)
		add(`{"id":"mqtt-%s","type":"mqtt out","z":"tab","name":"","topic":"","qos":"1","retain":"false","broker":"broker","wires":[]}`, d)
	}
	flows := filepath.Join(dir, "flows.json")
	if err := os.WriteFile(flows, []byte("["+strings.Join(nodes, ",\n")+"]\n"), 0o644); err != nil {
		return nil, err
	}
	settings := filepath.Join(dir, "settings.js")
	s := fmt.Sprintf("module.exports = {uiHost: \"127.0.0.1\", uiPort: 0, flowFile: %q, httpAdminRoot: false, httpNodeRoot: false, credentialSecret: false, logging: {console: {level: \"warn\"}}, editorTheme: {tours: false}};\n", flows)
	if err := os.WriteFile(settings, []byte(s), 0o644); err != nil {
		return nil, err
	}
	red, _ := filepath.Abs(o.nodeRed)
	cmd := pinned(o.gwCPU, "node", red, "--settings", settings, "--userDir", dir)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(filepath.Dir(filepath.Dir(red))))
	return cmd, nil
}

func version(gw string, o options) string {
	var out []byte
	switch gw {
	case "edged":
		out, _ = exec.Command(o.edged, "version").Output()
	case "telegraf":
		out, _ = exec.Command(o.telegraf, "--version").Output()
	case "nodered":
		modules := filepath.Dir(filepath.Dir(o.nodeRed))
		v := func(pkg string) string {
			b, _ := os.ReadFile(filepath.Join(modules, pkg, "package.json"))
			_, rest, _ := strings.Cut(string(b), `"version"`)
			rest = strings.TrimLeft(rest, ` :"`)
			if i := strings.IndexByte(rest, '"'); i >= 0 {
				return rest[:i]
			}
			return "?"
		}
		return "Node-RED " + v("node-red") + " + node-red-contrib-modbus " + v("node-red-contrib-modbus")
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// ---- measuring a process ----

// procCPU is the time pid's threads have been on a CPU (schedstat, ns
// resolution; idle gateways use a few ms a minute).
func procCPU(pid int) time.Duration {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

type rssSampler struct {
	pid     int
	mu      sync.Mutex
	samples []float64
	done    chan struct{}
	wg      sync.WaitGroup
}

func startRSS(pid int) *rssSampler {
	m := &rssSampler{pid: pid, done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _ := benchkit.Memory(pid); rss > 0 {
				m.mu.Lock()
				m.samples = append(m.samples, rss)
				m.mu.Unlock()
			}
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *rssSampler) stop() (median, peak float64) {
	close(m.done)
	m.wg.Wait()
	_, hwm := benchkit.Memory(m.pid)
	if len(m.samples) == 0 {
		return 0, hwm
	}
	sort.Float64s(m.samples)
	return m.samples[len(m.samples)/2], max(hwm, m.samples[len(m.samples)-1])
}

// ---- the report ----

func report(rows []row, o options, gateways []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "edged side-by-side bench, %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %s\n", machine())
	fmt.Fprintf(&b, "gateway on CPU %s (taskset), generator + mosquitto + sink on CPU %s; window %v after %v warm-up (idle ≥ 60 s)\n",
		o.gwCPU, o.auxCPU, o.duration, o.warmup)
	seen := map[string]bool{}
	for _, r := range rows {
		if r.version != "" && !seen[r.gateway] {
			seen[r.gateway] = true
			fmt.Fprintf(&b, "%-8s %s\n", r.gateway+":", r.version)
		}
	}
	b.WriteString("\n| scenario | gateway | points/s | msgs/s | CPU-s per M points | CPU % | RSS median / peak MB | latency p50 / p99 / max ms | lost | dup |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(&b, "| %s | %s | failed: %v |||||||\n", r.scenario.name, r.gateway, r.err)
			continue
		}
		perM := "-"
		if r.points > 0 {
			perM = fmt.Sprintf("%.2f", r.cpu/float64(r.points)*1e6)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %s | %.3g | %.1f / %.1f | %s | %d | %d |\n", r.scenario.name, r.gateway,
			float64(r.points)/r.secs, float64(r.msgs)/r.secs, perM, 100*r.cpu/r.secs, r.rssMed, r.rssPeak, latencies(r.lat), r.lost, r.dups)
	}
	b.WriteString("\nscenarios:\n")
	for _, s := range scenarios {
		fmt.Fprintf(&b, "  %-9s %s\n", s.name, s.what)
	}
	if len(gateways) > 1 {
		b.WriteString("\nratios (peer / edged, same run):\n")
		for _, sn := range []string{"5k", "100k", "max", "idle"} {
			var e *row
			for i := range rows {
				if rows[i].scenario.name == sn && rows[i].gateway == "edged" && rows[i].err == nil {
					e = &rows[i]
				}
			}
			if e == nil || e.points == 0 {
				continue
			}
			for _, r := range rows {
				if r.scenario.name != sn || r.gateway == "edged" || r.err != nil || r.points == 0 {
					continue
				}
				cpuRatio := (r.cpu / float64(r.points)) / (e.cpu / float64(e.points))
				fmt.Fprintf(&b, "  %-5s %-8s CPU per point ×%.1f, points/s ×%.2f, RSS median ×%.1f, p99 ×%.1f\n", sn, r.gateway, cpuRatio,
					(float64(r.points)/r.secs)/(float64(e.points)/e.secs), r.rssMed/e.rssMed, pct(r.lat, 99).Seconds()/max(pct(e.lat, 99).Seconds(), 1e-6))
			}
		}
	}
	return b.String()
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

func latencies(l []time.Duration) string {
	if len(l) == 0 {
		return "-"
	}
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	return ms(pct(l, 50)) + " / " + ms(pct(l, 99)) + " / " + ms(slices.Max(l))
}

// machine describes this computer: CPUs, CPU model, kernel, Go, load.
func machine() string {
	model, cpus := "?", 0 // all CPUs, not the ones this process may use
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			switch k = strings.TrimSpace(k); {
			case ok && k == "processor":
				cpus++
			case ok && k == "model name" && model == "?":
				model = strings.TrimSpace(v)
			}
		}
	}
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	kernel := utsString(u.Release[:])
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("nproc %d, %s, Linux %s, %s, load average %s (other work shares this machine)",
		cpus, model, kernel, runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
}

func utsString(a []int8) string {
	var b []byte
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "compare: "+f+"\n", a...)
	os.Exit(1)
}
