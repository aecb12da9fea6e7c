package northbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
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
	return errors.Join(w.c.SetReadDeadline(t), w.c.SetWriteDeadline(t))
}
func (w *wsConn) SetReadDeadline(t time.Time) error  { return w.c.SetReadDeadline(t) }
func (w *wsConn) SetWriteDeadline(t time.Time) error { return w.c.SetWriteDeadline(t) }
