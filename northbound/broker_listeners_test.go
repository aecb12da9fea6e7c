package northbound

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/gorilla/websocket"
)

// tlsFiles writes a CA, a server certificate for 127.0.0.1 named cn and
// client certificates for each of clients into a temp folder.
type tlsFiles struct {
	dir, ca, cert, key string
	clientCert         map[string][2]string // CN → cert, key files
	authority          *mosquittotest.CA
}

func writeTLS(t *testing.T, cn string, clients ...string) *tlsFiles {
	t.Helper()
	f := &tlsFiles{dir: t.TempDir(), clientCert: map[string][2]string{}}
	f.authority = mosquittotest.NewCA(t, "local broker test CA")
	write := func(name string, b []byte) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.ca = write("ca.pem", f.authority.PEM)
	c, k := f.authority.Issue(t, cn, []string{"127.0.0.1", "localhost"}, false, false)
	f.cert, f.key = write("server.pem", c), write("server.key", k)
	for _, name := range clients {
		c, k := f.authority.Issue(t, name, nil, true, false)
		f.clientCert[name] = [2]string{write(name+".pem", c), write(name+".key", k)}
	}
	return f
}

func TestTLSListenerClientCertificates(t *testing.T) {
	f := writeTLS(t, "gateway one", "plc-hmi", "stranger")
	b := startBrokerWith(t, BrokerOptions{
		TLS:    &TLSListener{Listen: "127.0.0.1:0", CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca, RequireClientCert: true},
		Access: &Access{AnonymousRead: true, Users: []User{{Name: "plc-hmi", Subscribe: []string{"edged/#"}}}, Namespace: "edged/gw1"},
	})
	addr := b.TLSAddr()
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("TLSAddr %q", addr)
	}
	args := append(hostPortArgs(addr), "--cafile", f.ca, "-t", "edged/gw1/d/t", "-C", "1", "-W", "10")
	// With a client certificate: the certificate's CN is the user.
	wait, _ := startSub(t, append(args, "--cert", f.clientCert["plc-hmi"][0], "--key", f.clientCert["plc-hmi"][1])...)
	waitClients(t, b, 1)
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Subscriptions < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Publish("edged/gw1/d/t", []byte("42"), false, 1); err != nil {
		t.Fatal(err)
	}
	if out, err := wait(15 * time.Second); err != nil || !strings.Contains(out, "42") {
		t.Fatalf("mTLS subscriber: %v %q", err, out)
	}
	// Without one: refused in the handshake.
	if out, err := mosq(t, 10*time.Second, "mosquitto_sub", args...); err == nil {
		t.Fatalf("a client without a certificate was accepted: %q", out)
	}
	// With one whose identity is not a user: refused at CONNECT.
	if out, err := mosq(t, 10*time.Second, "mosquitto_sub", append(args, "--cert", f.clientCert["stranger"][0], "--key", f.clientCert["stranger"][1])...); err == nil || !strings.Contains(strings.ToLower(out), "refused") {
		t.Fatalf("a certificate naming no user: %v %q", err, out)
	}
}

func TestTLSListenerReloadsItsCertificate(t *testing.T) {
	f := writeTLS(t, "first name")
	b := startBrokerWith(t, BrokerOptions{TLS: &TLSListener{Listen: "127.0.0.1:0", CertFile: f.cert, KeyFile: f.key}})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.authority.PEM)
	serverCN := func() string {
		c, err := tls.Dial("tcp", b.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := serverCN(); cn != "first name" {
		t.Fatalf("server certificate %q", cn)
	}
	// A renewed certificate is picked up on reload; a broken file keeps
	// the one in use.
	c, k := f.authority.Issue(t, "renewed", []string{"127.0.0.1"}, false, false)
	if err := os.WriteFile(f.cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	if cn := serverCN(); cn != "first name" {
		t.Fatalf("certificate changed before reload: %q", cn)
	}
	if err := b.Reload(nil); err != nil {
		t.Fatal(err)
	}
	if cn := serverCN(); cn != "renewed" {
		t.Fatalf("after reload the server shows %q, want the renewed certificate", cn)
	}
	if err := os.WriteFile(f.key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(nil); err == nil || !strings.Contains(err.Error(), "previous certificate stays") {
		t.Fatalf("reload with a broken key: %v", err)
	}
	if cn := serverCN(); cn != "renewed" {
		t.Fatalf("a broken reload changed the certificate: %q", cn)
	}
}

func TestWebSocketClientSubscribesAndReceives(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{
		WebSocket: &WebSocketListener{Listen: "127.0.0.1:0", Origins: []string{"https://hmi.plant.local"}},
		Access:    &Access{AnonymousRead: true, Namespace: "edged/gw1"},
	})
	if err := b.Publish("edged/gw1/d/level", []byte(`{"v":7}`), true, 0); err != nil {
		t.Fatal(err)
	}
	url := "ws://" + b.WebSocketAddr() + "/mqtt"
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	// A page from another origin is refused.
	if _, resp, err := d.Dial(url, http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", resp, err)
	}
	// A client that is not a browser sends no Origin.
	if c, _, err := d.Dial(url, nil); err != nil {
		t.Fatalf("no Origin header: %v", err)
	} else {
		c.Close()
	}
	c, _, err := d.Dial(url, http.Header{"Origin": {"https://hmi.plant.local"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	cl, err := dial5With(t, &client5{noPing: true}, "", newWSConn(c), "", "", "browser-1")
	if err != nil {
		t.Fatal(err)
	}
	if rc := cl.subscribe(t, "edged/gw1/#"); rc != 1 {
		t.Fatalf("subscribe over websocket: %#x", rc)
	}
	cl.waitTopic(t, "edged/gw1/d/level", `{"v":7}`) // retained
	if err := b.Publish("edged/gw1/d/level", []byte(`{"v":8}`), true, 1); err != nil {
		t.Fatal(err)
	}
	cl.waitTopic(t, "edged/gw1/d/level", `{"v":8}`) // live
	// Only the configured path upgrades.
	if _, resp, err := d.Dial("ws://"+b.WebSocketAddr()+"/other", nil); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("other path: %v %v", resp, err)
	}
}

func TestBrokerReportsBusyWebSocketPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b := NewBroker(BrokerOptions{WebSocket: &WebSocketListener{Listen: ln.Addr().String()}})
	err = b.Start()
	defer b.Stop()
	if err == nil || !strings.Contains(err.Error(), "[broker.websocket] listen") {
		t.Fatalf("busy port: %v", err)
	}
}

func TestShutdownIsClean311(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{})
	addr := b.Addr()
	wait, _ := startSub(t, append(hostPortArgs(addr), "-V", "311", "-t", "x/#", "-C", "2", "-v")...)
	waitClients(t, b, 1)
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Subscriptions < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ok, err := b.PublishFlush("x/a", []byte("before"), false, 1, 5*time.Second); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	// A 3.1.1 client sees its connection closed, not a protocol error:
	// mosquitto_sub reconnects and gets the next message when a broker is
	// back on the address.
	b2 := startBrokerWith(t, BrokerOptions{Listen: addr})
	deadline = time.Now().Add(20 * time.Second)
	for b2.Stats().Subscriptions < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := b2.Publish("x/a", []byte("after"), false, 1); err != nil {
		t.Fatal(err)
	}
	out, err := wait(20 * time.Second)
	if err != nil || strings.Contains(out, "protocol error") || !strings.Contains(out, "x/a after") {
		t.Fatalf("mosquitto_sub -V 311 across a broker stop: %v\n%s", err, out)
	}
}

// TestStopWhileClientsComeAndGo: the broker stops while clients connect and
// leave as fast as they can. Without attachGate a connection accepted just
// before Stop reached the library's WaitGroup Add while Stop waited on it (a
// panic, in the first cycles), and a client taking over a session (same
// client id) raced the budget's user name (the race detector, at once).
// Stop must return every time (disconnectListener: the library's own way of
// closing a listener's clients read-locks the client map twice, and a client
// leaving in between wedged Stop; seen in a goroutine dump of a hung test,
// too rare to show here).
func TestStopWhileClientsComeAndGo(t *testing.T) {
	cycles := 300
	if testing.Short() {
		cycles = 30
	}
	connect := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 2, 'c', 'x'}
	for cycle := range cycles {
		b := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"})
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		addr := b.Addr()
		var (
			wg    sync.WaitGroup
			done  atomic.Bool
			conns atomic.Int64
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ack := make([]byte, 4)
				for !done.Load() {
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						return // the listener is closed
					}
					_ = c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := c.Write(connect); err == nil {
						if _, err := io.ReadFull(c, ack); err == nil {
							conns.Add(1)
						}
					}
					c.Close()
				}
			}()
		}
		for start := time.Now(); conns.Load() < 8; runtime.Gosched() {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("cycle %d: clients could not connect", cycle)
			}
		}
		stopped := make(chan error, 1)
		go func() { stopped <- b.Stop() }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("cycle %d: Stop: %v", cycle, err)
			}
		case <-time.After(20 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("cycle %d: Stop did not return while clients came and went; goroutines:\n%s", cycle, buf[:runtime.Stack(buf, true)])
		}
		done.Store(true)
		wg.Wait()
	}
}
