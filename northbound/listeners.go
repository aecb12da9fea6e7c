package northbound

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// TLSListener is the broker's MQTT-over-TLS listener.
type TLSListener struct {
	Listen            string
	CertFile, KeyFile string
	// ClientCAFile verifies client certificates; a client presenting one
	// logs in as its Common Name (a configured user).
	ClientCAFile string
	// RequireClientCert refuses clients without a verified certificate in
	// the TLS handshake.
	RequireClientCert bool
}

// WebSocketListener is the broker's MQTT-over-WebSocket listener.
type WebSocketListener struct {
	Listen string
	// Path is the HTTP path of the upgrade (default "/mqtt").
	Path string
	// CertFile and KeyFile serve wss:// when set.
	CertFile, KeyFile string
	// Origins, when not empty, are the only web origins allowed to
	// connect (the Origin header a browser sends).
	Origins []string
}

// certReloader holds a listener's certificate and client CA pool, read
// from files at start and again on reload; handshakes use whatever is
// current.
type certReloader struct {
	l    TLSListener
	conf atomic.Pointer[tls.Config]
}

func (c *certReloader) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.l.CertFile, c.l.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load cert_file %s and key_file %s: %w", c.l.CertFile, c.l.KeyFile, err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.l.ClientCAFile != "" {
		pem, err := os.ReadFile(c.l.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file %s holds no PEM certificate", c.l.ClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.VerifyClientCertIfGiven
		if c.l.RequireClientCert {
			conf.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return conf, nil
}

// reload reads the files again; on failure the current ones stay.
func (c *certReloader) reload() error {
	conf, err := c.load()
	if err != nil {
		return fmt.Errorf("broker TLS files not reloaded, the previous certificate stays in use: %w", err)
	}
	c.conf.Store(conf)
	return nil
}

// tlsConfig returns the listener's TLS configuration, which asks the
// reloader for the current certificate on every handshake.
func (t *TLSListener) tlsConfig() (*tls.Config, *certReloader, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("cert_file and key_file are required")
	}
	c := &certReloader{l: *t}
	conf, err := c.load()
	if err != nil {
		return nil, nil, err
	}
	c.conf.Store(conf)
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.conf.Load(), nil
		},
	}
	return base, c, nil
}

// clientWriteTimeout is how long one write to a local client may block.
// The library writes to a client's socket while holding that client's
// lock, which a publisher needs to deliver a QoS 1 message to it (a packet
// id): a client that stops reading would otherwise block edged's own
// publishes (a device's status) and the shutdown for as long as it stalls.
// A client whose socket takes no data for this long is disconnected.
const clientWriteTimeout = 3 * time.Second

// guardedConn is a client connection whose writes cannot block for
// longer than clientWriteTimeout: each write gets its own deadline, a
// write that fails closes the connection, and the library's deadline
// refreshes (on every read) set only the read deadline, so they cannot
// stretch a blocked write. writingSince tells the byte budget that a write
// is stuck, so no further message is queued for that client.
type guardedConn struct {
	net.Conn
	writingSince atomic.Int64 // unix nanos when the current write began; 0: none

	gate *attachGate // the listener's, for connections it counts
	read atomic.Bool // the library has started reading (it is inside its attach)
}

func guard(c net.Conn) *guardedConn { return &guardedConn{Conn: c} }

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.gate != nil && !c.read.Load() {
		c.gate.attached(c)
	}
	return c.Conn.Read(p)
}

func (c *guardedConn) Write(p []byte) (int, error) {
	c.writingSince.Store(time.Now().UnixNano())
	defer c.writingSince.Store(0)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(clientWriteTimeout))
	n, err := c.Conn.Write(p)
	if err != nil {
		_ = c.Conn.Close()
	}
	return n, err
}

func (c *guardedConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// stuck reports whether a write has been blocked for longer than d.
func (c *guardedConn) stuck(d time.Duration) bool {
	s := c.writingSince.Load()
	return s != 0 && time.Since(time.Unix(0, s)) > d
}

// Unwrap returns the connection underneath (a *tls.Conn for certificate
// logins).
func (c *guardedConn) Unwrap() net.Conn { return c.Conn }

// attachGate closes a listener without racing the library's own shutdown.
// The library counts each connection in a WaitGroup when its attach starts
// and waits on it when it closes; a connection accepted just before Close
// could reach that Add while Close already waits, which the WaitGroup
// refuses with a panic (found by TestStopWhileClientsComeAndGo). So a
// listener hands the library a connection only while open, and close waits
// until every connection handed over is inside the attach (its first Read
// comes after the Add) or done, before the library waits for them. It then
// disconnects the clients and closes what is still reading its CONNECT.
type attachGate struct {
	mu      sync.Mutex
	closed  bool
	conns   map[*guardedConn]struct{}
	handing sync.WaitGroup // connections handed over whose attach has not begun
}

// enter admits c unless the listener is closed.
func (g *attachGate) enter(c *guardedConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.conns == nil {
		g.conns = map[*guardedConn]struct{}{}
	}
	g.conns[c] = struct{}{}
	c.gate = g
	g.handing.Add(1)
	return true
}

func (g *attachGate) attached(c *guardedConn) {
	if c.read.CompareAndSwap(false, true) {
		g.handing.Done()
	}
}

// leave is called when the library is done with c.
func (g *attachGate) leave(c *guardedConn) {
	g.attached(c)
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// close refuses new connections, waits until those handed over are inside
// the library's attach, calls disconnect, then closes the rest.
func (g *attachGate) close(disconnect func()) {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.handing.Wait()
	disconnect()
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		_ = c.Conn.Close()
	}
}

// establish hands conn to the library (if the listener is open) and
// returns when the library is done with it.
func (g *attachGate) establish(establish listeners.EstablishFn, id string, conn *guardedConn) error {
	if !g.enter(conn) {
		_ = conn.Close()
		return nil
	}
	defer g.leave(conn)
	return establish(id, conn)
}

// tcpListener is the broker's TCP and TLS listener: the library's, but
// handing the broker guarded connections, and logging a refused client at
// debug level (a flood of bad logins must not flood the log).
type tcpListener struct {
	id, addr   string
	tlsConf    *tls.Config
	ln         net.Listener
	log        *slog.Logger
	mu         sync.Mutex
	closed     atomic.Bool
	gate       attachGate
	disconnect func(listener string) // instead of the library's CloseFn
}

var _ listeners.Listener = (*tcpListener)(nil)

// newTCPListener makes a listener on addr (TLS with conf when not nil);
// disconnect ends its clients when it closes.
func newTCPListener(id, addr string, conf *tls.Config, disconnect func(listener string)) *tcpListener {
	return &tcpListener{id: id, addr: addr, tlsConf: conf, disconnect: disconnect}
}

func (l *tcpListener) ID() string { return l.id }

func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tcpListener) Protocol() string {
	if l.tlsConf != nil {
		return "tls"
	}
	return "tcp"
}

func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tlsConf != nil {
		ln = tls.NewListener(ln, l.tlsConf)
	}
	l.ln = ln
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go func() {
			if err := l.gate.establish(establish, l.id, guard(conn)); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("local client ended", "listener", l.id, "err", err)
			}
		}()
	}
}

func (l *tcpListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.CompareAndSwap(false, true) {
		if l.ln != nil {
			_ = l.ln.Close()
		}
		l.gate.close(func() { l.disconnect(l.id) })
	}
}
