// Command opcua measures the OPC UA driver: values/s from one subscription
// of N monitored items, CPU seconds per million values, and the time from
// a server restart to the first value of the new session.
//
// With -server gopcua (default) the server is gopcua's, in-process: the CPU
// figure is the process total (server, driver and sink), an upper bound
// for edged. With -server node it is node-opcua (testdata of
// southbound/opcua, installed by `make test-deps`) in a child process,
// changing every variable each -bulk-interval: the CPU figure is edged's
// driver and sink alone (getrusage of this process).
//
//	go run ./bench/opcua -items 10000 -duration 10s
//	go run ./bench/opcua -server node -items 10000 -duration 20s [-security]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/opcua"
)

// lockedNS guards gopcua's MapNamespace, whose Attribute reads its map
// without a lock (a data race in the server, fatal under load).
type lockedNS struct {
	*server.MapNamespace
	mu *sync.RWMutex
}

func (n lockedNS) Attribute(id *ua.NodeID, a ua.AttributeID) *ua.DataValue {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.MapNamespace.Attribute(id, a)
}

// publishRequests and rtt are the -publish-requests and -rtt flags.
var (
	publishRequests int
	rtt             time.Duration
)

// printCounters prints the driver's publishing counters.
func printCounters(d *opcua.Device) {
	st := d.Counters()
	fmt.Printf("driver: %d PublishRequests sent, %d messages reordered, %d stale values dropped, %d failures (last: %v)\n", st.PublishRequests, st.Reordered, st.Stale, st.Failures, st.LastError)
}

type countingSink struct {
	values atomic.Uint64
	online atomic.Bool
	first  chan struct{}
}

func (s *countingSink) Samples(_ string, ss []mapping.Sample) {
	s.values.Add(uint64(len(ss)))
	select {
	case s.first <- struct{}{}:
	default:
	}
}

func (s *countingSink) State(_ string, st southbound.State, _ error) {
	s.online.Store(st == southbound.StateOnline)
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	items := flag.Int("items", 10000, "monitored items")
	dur := flag.Duration("duration", 10*time.Second, "measuring time")
	srvKind := flag.String("server", "gopcua", "gopcua (in-process) or node (node-opcua child process)")
	nodeDir := flag.String("nodeserver", "southbound/opcua/testdata/nodeserver", "folder of server.js, for -server node")
	bulkInterval := flag.Duration("bulk-interval", 100*time.Millisecond, "-server node: how often every variable changes")
	publish := flag.Duration("publish", 100*time.Millisecond, "publishing interval")
	secure := flag.Bool("security", false, "-server node: Basic256Sha256/SignAndEncrypt with username instead of None")
	rate := flag.Int("rate", 10000, "-server gopcua: variable changes per second, round robin over the items (gopcua's server v0.8.0 sends one message per publishing interval in one chunk: past ~2,000 values in a message the client refuses it and reconnects, so this mode cannot measure high rates; use -server node)")
	flag.DurationVar(&rtt, "rtt", 0, "-server node: add this round trip between the driver and the server (a delaying TCP proxy)")
	flag.IntVar(&publishRequests, "publish-requests", opcua.DefaultPublishRequests, "the device's publish_requests (PublishRequests in flight)")
	flag.Parse()
	log.SetOutput(io.Discard)
	if *srvKind == "node" {
		benchNode(*nodeDir, *items, *dur, *bulkInterval, *publish, *secure)
		return
	}
	if *srvKind != "gopcua" {
		fmt.Fprintln(os.Stderr, "-server: gopcua or node")
		os.Exit(2)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	keys := make([]string, *items)
	var srv *server.Server
	var ns *server.MapNamespace
	var mu sync.RWMutex
	startServer := func() {
		for {
			srv = server.New(server.EndPoint("127.0.0.1", port),
				server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous))
			ns = server.NewMapNamespace(srv, "bench")
			srv.Namespaces()[1] = lockedNS{ns, &mu}
			for i := range keys {
				keys[i] = fmt.Sprintf("v%05d", i)
				ns.Data[keys[i]] = float64(i)
			}
			if srv.Start(context.Background()) == nil {
				return
			}
			_ = srv.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}
	startServer()

	d := opcua.New()
	d.Name, d.Endpoint, d.SecurityPolicy = "bench", fmt.Sprintf("opc.tcp://127.0.0.1:%d", port), "None"
	d.PublishRequests = publishRequests
	d.PublishingInterval = configs.Duration(*publish)
	d.SamplingInterval = 0
	d.Timeout = configs.Duration(10 * time.Second)
	d.Keepalive = configs.Duration(time.Second)
	for _, k := range keys {
		t := opcua.Tag{Node: "ns=1;s=" + k}
		t.Name = k
		d.Tag = append(d.Tag, t)
	}
	if err := d.Init(); err != nil {
		panic(err)
	}
	d.SetDataDir(os.TempDir())
	sink := &countingSink{first: make(chan struct{}, 1)}
	t0 := time.Now()
	if err := d.Start(context.Background(), sink); err != nil {
		panic(err)
	}
	for sink.values.Load() < uint64(*items) {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("initial values of %d items in %v\n", *items, time.Since(t0).Round(time.Millisecond))

	// Change the nodes round robin at rate per second, for dur.
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		start, done, k := time.Now(), 0, 0
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			due := int(time.Since(start).Seconds() * float64(*rate))
			for ; done < due; done++ {
				key := keys[k]
				mu.Lock()
				ns.Data[key] = float64(n)
				mu.Unlock()
				srv.ChangeNotification(ua.NewStringNodeID(1, key))
				k = (k + 1) % len(keys)
			}
		}
	}()
	v0, c0, w0 := sink.values.Load(), cpu(), time.Now()
	time.Sleep(*dur)
	v1, c1, w1 := sink.values.Load(), cpu(), time.Now()
	close(stop)
	n := float64(v1 - v0)
	fmt.Printf("values/s: %.0f (%d values in %v; %d changes/s offered, publish_requests = %d)\n", n/w1.Sub(w0).Seconds(), v1-v0, w1.Sub(w0).Round(time.Millisecond), *rate, d.PublishRequests)
	printCounters(d)
	fmt.Printf("CPU s per million values (whole process incl. server): %.2f\n", (c1-c0).Seconds()/n*1e6)

	// Restart: time from the new server listening to the first value.
	time.Sleep(200 * time.Millisecond)
	_ = srv.Close()
	for sink.online.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	startServer()
	r0 := time.Now()
	for !sink.online.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-sink.first:
	default:
	}
	<-sink.first
	fmt.Printf("reconnect after server restart: %v to first value (%d items re-monitored; backoff included)\n", time.Since(r0).Round(time.Millisecond), *items)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = d.Stop(ctx)
	_ = srv.Close()
}
