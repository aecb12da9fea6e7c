package northbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultWebSocketPath is the HTTP path of MQTT over WebSocket when a
// wss:// URL names none (mosquitto, EMQX, HiveMQ and AWS IoT use /mqtt).
const DefaultWebSocketPath = "/mqtt"

// dialWebSocket opens MQTT over WebSocket over TLS (wss://): the TLS
// handshake is ours (same verification and explanations as mqtts://, never
// a plaintext fallback), then an HTTP upgrade asking for the "mqtt"
// subprotocol. The result carries MQTT packets as binary messages.
func dialWebSocket(ctx context.Context, cfg *PublisherConfig, d *net.Dialer, timeout time.Duration) (net.Conn, error) {
	if cfg.TLS == nil {
		return nil, errors.New("wss:// needs a TLS configuration")
	}
	u := *cfg.URL
	u.Scheme = "wss"
	u.Host = hostPort(cfg.URL, "443")
	if u.Path == "" {
		u.Path = DefaultWebSocketPath
	}
	var handshakeDone atomic.Bool
	wd := websocket.Dialer{
		HandshakeTimeout: timeout,
		Subprotocols:     []string{"mqtt"},
		NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			td := &tls.Dialer{NetDialer: d, Config: cfg.TLS}
			c, err := td.DialContext(ctx, network, addr)
			if err != nil {
				return nil, explainTLS(err)
			}
			handshakeDone.Store(true)
			return c, nil
		},
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, resp, err := wd.DialContext(dctx, u.String(), nil)
	if err != nil {
		var te *TLSError
		if errors.As(err, &te) {
			return nil, err
		}
		if resp == nil && handshakeDone.Load() && !ctxErr(err) &&
			(strings.Contains(err.Error(), "tls:") || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			// With TLS 1.3 a refused client certificate shows only now.
			return nil, &TLSError{Reason: "client certificate refused", Hint: "the broker closed the connection after the TLS handshake: it may require a client certificate (cert_file/key_file) or not trust this one", Err: err}
		}
		if resp != nil {
			return nil, fmt.Errorf("websocket upgrade at %s refused: %s (check the path in url; the default is %s): %w", u.Redacted(), resp.Status, DefaultWebSocketPath, err)
		}
		return nil, fmt.Errorf("websocket upgrade at %s: %w", u.Redacted(), err)
	}
	return newWSConn(c), nil
}

// wsConn is a WebSocket connection seen as a byte stream (net.Conn): each
// Write is one binary message, Read runs across message boundaries (MQTT
// packets may span messages or share one). Reads and writes may run on
// different goroutines, and several writers (the MQTT client's writer and
// its keepalive) are serialised.
type wsConn struct {
	c *websocket.Conn

	rmu sync.Mutex
	r   io.Reader // the message being read, nil between messages

	wmu sync.Mutex
	wdl atomic.Pointer[time.Time] // the write deadline asked for
}

func newWSConn(c *websocket.Conn) *wsConn { return &wsConn{c: c} }

var _ net.Conn = (*wsConn)(nil)

func (w *wsConn) Read(b []byte) (int, error) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	for {
		if w.r == nil {
			typ, r, err := w.c.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: broker sent a non-binary message (type %d); MQTT over WebSocket uses binary messages", typ)
			}
			w.r = r
		}
		n, err := w.r.Read(b)
		if errors.Is(err, io.EOF) {
			w.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (w *wsConn) Write(b []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if t := w.wdl.Load(); t != nil {
		_ = w.c.SetWriteDeadline(*t)
	}
	if err := w.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close sends a WebSocket close (best effort, briefly) and closes the
// connection.
func (w *wsConn) Close() error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = w.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	return w.c.Close()
}

func (w *wsConn) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *wsConn) RemoteAddr() net.Addr { return w.c.RemoteAddr() }

func (w *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(w.c.SetReadDeadline(t), w.SetWriteDeadline(t))
}
func (w *wsConn) SetReadDeadline(t time.Time) error { return w.c.SetReadDeadline(t) }

// SetWriteDeadline may be called while a Write runs on another goroutine
// (a broker's reader refreshes deadlines while its writer writes): the
// library's own write deadline belongs to the writer, so it is handed over
// at the next Write, and the socket's is set at once, which also ends a
// write blocked now.
func (w *wsConn) SetWriteDeadline(t time.Time) error {
	w.wdl.Store(&t)
	return w.c.NetConn().SetWriteDeadline(t)
}

// wsListener serves MQTT over WebSocket to local clients (browser HMIs):
// an HTTP upgrade on one path, asking for the "mqtt" subprotocol, then
// MQTT packets in binary messages. Unlike the library's listener it binds
// in Init, so a busy port is reported at start and port 0 resolves, and
// it can restrict the web origins allowed.
type wsListener struct {
	id         string
	o          WebSocketListener
	tlsConf    *tls.Config
	ln         net.Listener
	srv        *http.Server
	up         websocket.Upgrader
	log        *slog.Logger
	establish  listeners.EstablishFn
	gate       attachGate
	disconnect func(listener string) // instead of the library's CloseFn
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id string, o *WebSocketListener, conf *tls.Config, disconnect func(listener string)) *wsListener {
	l := &wsListener{id: id, o: *o, tlsConf: conf, disconnect: disconnect}
	if l.o.Path == "" {
		l.o.Path = DefaultWebSocketPath
	}
	l.up = websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		CheckOrigin: func(r *http.Request) bool {
			if len(l.o.Origins) == 0 {
				return true
			}
			origin := r.Header.Get("Origin")
			if origin == "" {
				// Not a browser (browsers always send it): Node-RED, a
				// script. Origins protect browsers' users from other
				// web pages; a non-browser client could send any header.
				return true
			}
			for _, o := range l.o.Origins {
				if strings.EqualFold(o, origin) {
					return true
				}
			}
			return false
		},
	}
	return l
}

func (l *wsListener) ID() string { return l.id }

func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.o.Listen
}

func (l *wsListener) Protocol() string {
	if l.tlsConf != nil {
		return "wss"
	}
	return "ws"
}

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.o.Listen)
	if err != nil {
		return err
	}
	if l.tlsConf != nil {
		ln = tls.NewListener(ln, l.tlsConf)
	}
	l.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc(l.o.Path, l.handle)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	return nil
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != l.o.Path {
		http.NotFound(w, r)
		return
	}
	c, err := l.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	c.SetReadLimit(int64(maxPacketSize) + 16)
	conn := guard(newWSConn(c))
	defer conn.Close()
	if err := l.gate.establish(l.establish, l.id, conn); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("websocket client ended", "err", err, "remote", r.RemoteAddr)
	}
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	_ = l.srv.Serve(l.ln)
}

// Close stops accepting and closes the listener's clients.
func (l *wsListener) Close(listeners.CloseFn) {
	if l.srv != nil {
		_ = l.srv.Close()
	}
	l.gate.close(func() { l.disconnect(l.id) })
}
