package opcua

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

func init() { log.SetOutput(io.Discard) } // gopcua's server logs through the global logger

// testServer is gopcua's in-process server on a loopback port, with one map
// namespace ("edged-test", index 1) and a Read handler that counts
// requests and, like a strict server, refuses Reads above the advertised
// MaxNodesPerRead (32 in gopcua v0.8.0).
type testServer struct {
	t       testing.TB
	port    int
	opts    []server.Option
	data    map[string]any
	srv     *server.Server
	ns      *lockedNS
	reads   atomic.Int64 // Read requests of more than 2 nodes (the limits probe reads 2)
	maxRead atomic.Int64 // most nodes in one Read
	// before names namespaces made ahead of the test's own at the next
	// (re)start, each with a node "speed" = -1: they shift the indices of
	// the test's namespaces, as a reconfigured server does.
	before []string
	// sourceTime, when set, is the SourceTimestamp of every value the Read
	// handler returns (gopcua's map namespace sends none).
	sourceTime atomic.Pointer[time.Time]
	publish    atomic.Int64 // PublishRequests received
}

const serverMaxNodesPerRead = 32

// startServer starts a server with security opts (default: None/None,
// anonymous) on a free port.
func startServer(t testing.TB, data map[string]any, opts ...server.Option) *testServer {
	t.Helper()
	if len(opts) == 0 {
		opts = []server.Option{server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous)}
	}
	ts := &testServer{t: t, opts: opts, data: data}
	var err error
	for range 5 { // the port is free when asked for; retry if taken meanwhile
		ts.port = freePort(t)
		if err = ts.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start OPC UA server: %v", err)
	}
	t.Cleanup(ts.stop)
	return ts
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (ts *testServer) URL() string { return fmt.Sprintf("opc.tcp://127.0.0.1:%d", ts.port) }

// start (re)starts the server on ts.port with a fresh address space holding ts.data.
func (ts *testServer) start() error {
	opts := append([]server.Option{server.EndPoint("127.0.0.1", ts.port)}, ts.opts...)
	s := server.New(opts...)
	for _, name := range ts.before {
		server.NewMapNamespace(s, name).Data["speed"] = -1.0
	}
	ns := &lockedNS{MapNamespace: server.NewMapNamespace(s, "edged-test"), srv: s}
	s.AddNamespace(ns) // index 2 (without before): the tests' nodes are ns=2;s=KEY, or nsu=urn:edged-test:data;s=KEY
	for k, v := range ts.data {
		ns.Data[k] = v
	}
	s.RegisterHandler(id.ReadRequest_Encoding_DefaultBinary, func(_ *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
		req, ok := r.(*ua.ReadRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		n := int64(len(req.NodesToRead))
		if n > 2 {
			ts.reads.Add(1)
		}
		for {
			m := ts.maxRead.Load()
			if n <= m || ts.maxRead.CompareAndSwap(m, n) {
				break
			}
		}
		if n > serverMaxNodesPerRead {
			return nil, ua.StatusBadTooManyOperations
		}
		results := make([]*ua.DataValue, len(req.NodesToRead))
		for i, rv := range req.NodesToRead {
			nsp, err := s.Namespace(int(rv.NodeID.Namespace()))
			if err != nil {
				results[i] = &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNodeIDUnknown}
				continue
			}
			results[i] = nsp.Attribute(rv.NodeID, rv.AttributeID)
			if st := ts.sourceTime.Load(); st != nil && results[i] != nil && results[i].Value != nil {
				dv := *results[i]
				dv.EncodingMask |= ua.DataValueSourceTimestamp
				dv.SourceTimestamp = *st
				results[i] = &dv
			}
		}
		return &ua.ReadResponse{
			ResponseHeader: &ua.ResponseHeader{Timestamp: time.Now(), RequestHandle: req.RequestHeader.RequestHandle,
				ServiceDiagnostics: &ua.DiagnosticInfo{}, StringTable: []string{}, AdditionalHeader: ua.NewExtensionObject(nil)},
			Results: results,
		}, nil
	})
	// Count PublishRequests on their way to gopcua's subscription service
	// (made by Start; the first handler registered for a type wins).
	s.RegisterHandler(id.PublishRequest_Encoding_DefaultBinary, func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		ts.publish.Add(1)
		return s.SubscriptionService.Publish(sc, r, reqID)
	})
	if err := s.Start(context.Background()); err != nil {
		_ = s.Close()
		return err
	}
	ts.srv, ts.ns = s, ns
	return nil
}

func (ts *testServer) stop() {
	if ts.srv != nil {
		_ = ts.srv.Close()
		ts.srv = nil
	}
}

// restart stops the server and starts a new one on the same port, keeping
// the current values; it retries while the port is still held.
func (ts *testServer) restart() {
	ts.t.Helper()
	ts.ns.mu.RLock()
	for k, v := range ts.ns.Data {
		ts.data[k] = v
	}
	ts.ns.mu.RUnlock()
	ts.stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ts.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("restart OPC UA server on port %d: %v", ts.port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverIdentity is a certificate and key for the secure test server.
type serverIdentity struct {
	cert []byte
	key  *rsa.PrivateKey
}

var (
	serverIDOnce sync.Once
	serverID     serverIdentity
	edgedPKIOnce sync.Once
	edgedPKIDir  string
)

func testServerIdentity(t testing.TB) serverIdentity {
	serverIDOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse("urn:edged-test:server")
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "edged test server"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true, URIs: []*url.URL{u}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		serverID = serverIdentity{cert: der, key: key}
	})
	return serverID
}

// dataDir returns a fresh data dir holding a copy of one edged PKI made
// once per test binary (a 2048-bit key takes a while under -race).
func dataDir(t testing.TB) string {
	edgedPKIOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edged-opcua-pki-")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := NewPKI(dir).Own("urn:edged:test"); err != nil {
			t.Fatal(err)
		}
		edgedPKIDir = dir
	})
	dst := t.TempDir()
	err := filepath.Walk(edgedPKIDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(edgedPKIDir, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// sink records what a device delivers.
type sink struct {
	mu     sync.Mutex
	last   map[string]mapping.Sample
	counts map[string]int
	states []southbound.State
	errs   []error
	wake   chan struct{}
}

func newSink() *sink {
	return &sink{last: map[string]mapping.Sample{}, counts: map[string]int{}, wake: make(chan struct{}, 1)}
}

func (s *sink) Samples(_ string, samples []mapping.Sample) {
	s.mu.Lock()
	for _, x := range samples {
		s.last[x.Tag.Name] = x
		s.counts[x.Tag.Name]++
	}
	s.mu.Unlock()
	s.poke()
}

func (s *sink) State(_ string, st southbound.State, err error) {
	s.mu.Lock()
	s.states = append(s.states, st)
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	s.poke()
}

func (s *sink) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sink) state() (southbound.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.states) == 0 {
		return southbound.StateConnecting, nil
	}
	return s.states[len(s.states)-1], s.errs[len(s.errs)-1]
}

func (s *sink) sample(tag string) (mapping.Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.last[tag]
	return x, ok
}

// waitFor waits until cond holds, failing the test after d.
func (s *sink) waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-s.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			s.mu.Lock()
			last := fmt.Sprint(s.last)
			states := fmt.Sprint(s.states, s.errs)
			s.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s; last samples %s; states %s", d, what, last, states)
		}
	}
}

func (s *sink) waitValue(t testing.TB, tag string, want mapping.Value) {
	t.Helper()
	s.waitFor(t, 20*time.Second, fmt.Sprintf("%s = %+v (good)", tag, want), func() bool {
		x, ok := s.sample(tag)
		return ok && x.Quality == mapping.Good && x.Value.Equal(want)
	})
}

func (s *sink) waitState(t testing.TB, want southbound.State) {
	t.Helper()
	s.waitFor(t, 20*time.Second, "state "+want.String(), func() bool { st, _ := s.state(); return st == want })
}

// newDevice makes an initialised device for ts with fast reconnects.
func newDevice(t testing.TB, endpoint string, edit func(d *Device), tags ...Tag) *Device {
	t.Helper()
	d := New()
	d.Name = "plc"
	d.Driver = "opcua"
	d.Endpoint = endpoint
	d.SecurityPolicy, d.SecurityMode = "None", "None"
	d.PublishingInterval = 50 * 1e6
	d.SamplingInterval = 0
	d.Keepalive = 500 * 1e6
	d.Timeout = 2 * 1e9
	d.Tag = tags
	if edit != nil {
		edit(d)
	}
	if err := d.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	d.minBackoff, d.maxBackoff = 20*time.Millisecond, 300*time.Millisecond
	d.loginRetry = 2 * time.Second
	d.SetDataDir(dataDir(t))
	return d
}

func start(t testing.TB, d *Device) *sink {
	t.Helper()
	s := newSink()
	if err := d.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func tag(name, node string) Tag { return Tag{Spec: mapping.Spec{Name: name}, Node: node} }

func (ts *testServer) set(key string, v any) { ts.ns.set(key, v) }
func (ts *testServer) get(key string) any    { return ts.ns.get(key) }

// lockedNS guards gopcua's MapNamespace, whose Attribute reads the map
// without its lock while SetAttribute writes it (a data race in the test
// peer, v0.8.0); notifications are sent after the lock is released.
type lockedNS struct {
	*server.MapNamespace
	srv *server.Server
	mu  sync.RWMutex
}

// testNamespaceURI is the URI of the tests' namespace in the server's
// namespace array (the raw map below it is "edged-test").
const testNamespaceURI = "urn:edged-test:data"

func (n *lockedNS) Name() string { return testNamespaceURI }

func (n *lockedNS) Attribute(id *ua.NodeID, a ua.AttributeID) *ua.DataValue {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.MapNamespace.Attribute(id, a)
}

func (n *lockedNS) SetAttribute(id *ua.NodeID, a ua.AttributeID, v *ua.DataValue) ua.StatusCode {
	if a != ua.AttributeIDValue || v == nil || v.Value == nil {
		return ua.StatusBadNotWritable
	}
	n.mu.Lock()
	n.Data[id.StringID()] = v.Value.Value()
	n.mu.Unlock()
	n.srv.ChangeNotification(id)
	return ua.StatusOK
}

func (n *lockedNS) Browse(bd *ua.BrowseDescription) *ua.BrowseResult {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.MapNamespace.Browse(bd)
}

func (n *lockedNS) set(key string, v any) {
	n.mu.Lock()
	n.Data[key] = v
	n.mu.Unlock()
	n.srv.ChangeNotification(ua.NewStringNodeID(n.ID(), key))
}

func (n *lockedNS) get(key string) any {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.Data[key]
}
