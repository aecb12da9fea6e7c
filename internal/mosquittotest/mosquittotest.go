// Package mosquittotest runs Debian's mosquitto as a cloud broker for tests:
// a TLS listener that requires a client certificate (the certificate's CN
// becomes the username) and a plaintext loopback listener for the test's
// own subscriber, with a CA, server and client certificates generated in Go;
// optionally an MQTT over WebSocket over TLS listener with the same rules.
// It can be stopped and started again on the same ports to make outages.
package mosquittotest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary is where Debian installs mosquitto.
const Binary = "/usr/sbin/mosquitto"

// Options change the broker's certificates.
type Options struct {
	// ServerExpired makes the server certificate expired.
	ServerExpired bool
	// WebSockets adds a wss listener (WSSPort, any HTTP path) with the same
	// certificates and client certificate requirement as TLSPort.
	WebSockets bool
	// ACL, when set, is the acl_file of the TLS listener (whose username
	// is the client certificate's CN, "edged-test"), e.g.
	// "user edged-test\ntopic deny edged/gw/dev/denied\ntopic write edged/#".
	ACL string
	// Global, when set, is added to the top of mosquitto.conf (e.g.
	// "max_packet_size 2048").
	Global string
	// Username and Password, when set, add a TLS listener (PasswordPort)
	// that needs no client certificate but this user and password.
	Username, Password string
}

// Broker is a running (or stopped) mosquitto.
type Broker struct {
	t    testing.TB
	Dir  string
	opts Options
	// TLSPort requires a client certificate; PlainPort is for subscribers.
	TLSPort, PlainPort int
	// WSSPort is the websockets+TLS listener (Options.WebSockets), else 0.
	WSSPort int
	// PasswordPort is the TLS listener with password authentication
	// (Options.Username), else 0.
	PasswordPort int
	// Files for clients: CAFile verifies the server; ClientCert/ClientKey
	// authenticate as CN "edged-test". OtherCAFile is an unrelated CA.
	CAFile, ClientCert, ClientKey, OtherCAFile string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *lockedBuffer
}

// lockedBuffer is mosquitto's output, written by exec's copying goroutine
// while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start generates certificates, writes a config and starts mosquitto; it
// is stopped in t.Cleanup. It fails the test (never skips) when mosquitto
// is missing.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("mosquittotest: %s not found (%v): run `make test-deps` (installs Debian's mosquitto)", Binary, err)
	}
	b := &Broker{t: t, Dir: t.TempDir(), opts: opts, TLSPort: freePort(t), PlainPort: freePort(t)}
	b.writeCerts()
	wss := ""
	if opts.WebSockets {
		// mosquitto 2.0.11 starts a websockets listener only beside a
		// plain TCP one (which it always has here).
		b.WSSPort = freePort(t)
		wss = fmt.Sprintf(`
listener %d 127.0.0.1
protocol websockets
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
allow_anonymous false
`, b.WSSPort, b.CAFile, filepath.Join(b.Dir, "server.pem"), filepath.Join(b.Dir, "server.key"))
	}
	if opts.Password != "" {
		b.PasswordPort = freePort(t)
		pw := filepath.Join(b.Dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("/usr/bin/mosquitto_passwd", "-b", pw, opts.Username, opts.Password).CombinedOutput(); err != nil {
			t.Fatalf("mosquittotest: mosquitto_passwd: %v: %s", err, out)
		}
		wss += fmt.Sprintf(`
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
password_file %s
allow_anonymous false
`, b.PasswordPort, b.CAFile, filepath.Join(b.Dir, "server.pem"), filepath.Join(b.Dir, "server.key"), pw)
	}
	acl := ""
	if opts.ACL != "" {
		p := filepath.Join(b.Dir, "acl")
		if err := os.WriteFile(p, []byte(opts.ACL+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		acl = "acl_file " + p + "\n"
	}
	conf := opts.Global + "\n" + fmt.Sprintf(`per_listener_settings true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
max_inflight_messages 0
max_queued_messages 1000000

listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
allow_anonymous false
%s
listener %d 127.0.0.1
allow_anonymous true
`, b.TLSPort, b.CAFile, filepath.Join(b.Dir, "server.pem"), filepath.Join(b.Dir, "server.key"), acl, b.PlainPort) + wss
	if os.Geteuid() == 0 {
		conf = "user root\n" + conf // keep access to the test's 0600 files
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.StartAgain()
	t.Cleanup(b.Stop)
	return b
}

// TLSAddr and PlainAddr are the listeners' host:port.
func (b *Broker) TLSAddr() string   { return "127.0.0.1:" + strconv.Itoa(b.TLSPort) }
func (b *Broker) PlainAddr() string { return "127.0.0.1:" + strconv.Itoa(b.PlainPort) }

// PasswordAddr is the password listener's host:port (Options.Password).
func (b *Broker) PasswordAddr() string { return "127.0.0.1:" + strconv.Itoa(b.PasswordPort) }

// WSSAddr is the websockets+TLS listener's host:port (Options.WebSockets).
func (b *Broker) WSSAddr() string { return "127.0.0.1:" + strconv.Itoa(b.WSSPort) }

// StartAgain starts mosquitto (again) on the same ports and waits until
// both listeners accept connections.
func (b *Broker) StartAgain() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return
	}
	b.log = new(lockedBuffer)
	cmd := exec.Command(Binary, "-c", filepath.Join(b.Dir, "mosquitto.conf"))
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("mosquittotest: start: %v", err)
	}
	b.cmd = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	addrs := []string{b.TLSAddr(), b.PlainAddr()}
	if b.WSSPort != 0 {
		addrs = append(addrs, b.WSSAddr())
	}
	if b.PasswordPort != 0 {
		addrs = append(addrs, b.PasswordAddr())
	}
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				b.t.Fatalf("mosquittotest: mosquitto exited at start:\n%s", b.log.String())
			default:
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("mosquittotest: %s not listening after 10s:\n%s", addr, b.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop kills mosquitto (an outage: connections drop without DISCONNECT).
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	_, _ = b.cmd.Process.Wait()
	b.cmd = nil
}

// Log returns what mosquitto printed since its last start.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.log == nil {
		return ""
	}
	return b.log.String()
}

// Connects counts the sessions mosquitto accepted from clientID since its
// last start (its "New client connected … as <id>" notices).
func (b *Broker) Connects(clientID string) int {
	return strings.Count(b.Log(), " as "+clientID+" (")
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// CA is a certificate authority that signs test certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a self-signed CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue signs a leaf certificate: a server one for hosts (IPs or names)
// or, with client, a client one; expired makes it expired. It returns the
// certificate and key in PEM.
func (ca *CA) Issue(t testing.TB, cn string, hosts []string, client, expired bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if expired {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *Broker) writeCerts() {
	t := b.t
	ca := NewCA(t, "edged test CA")
	other := NewCA(t, "some other CA")
	srv, srvKey := ca.Issue(t, "cloud broker", []string{"127.0.0.1", "localhost"}, false, b.opts.ServerExpired)
	cli, cliKey := ca.Issue(t, "edged-test", nil, true, false)
	write := func(name string, data []byte) string {
		p := filepath.Join(b.Dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b.CAFile = write("ca.pem", ca.PEM)
	b.OtherCAFile = write("other-ca.pem", other.PEM)
	write("server.pem", srv)
	write("server.key", srvKey)
	b.ClientCert = write("client.pem", cli)
	b.ClientKey = write("client.key", cliKey)
}
