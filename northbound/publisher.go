package northbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// Publisher is one MQTT connection to a cloud broker, as the uplink needs
// it: connect, publish at QoS 1 with an acknowledgement callback, close.
// The uplink keeps the durable state (the buffer); a Publisher keeps none
// across connections and its library's own persistence is not used.
//
// Contract: Connect opens a new session (clean start) and returns once the
// broker accepted it. Publish sends messages in the order it is called,
// blocking while the in-flight window (the smaller of the configured window
// and the broker's Receive Maximum) is full; it may buffer until Flush.
// onAck, given to Connect, is called from one goroutine once per
// acknowledged QoS 1 message with the token passed to Publish and the
// PUBACK's reason code (MQTT 5; 0 for 3.1.1, which has none): below 0x80
// the broker took the message, from 0x80 on it refused it. It must not
// block. Done is closed when the connection is lost or closed; Err then
// says why. Close disconnects (the broker then does not send the will);
// Abort drops the connection without DISCONNECT, as a lost link would (the
// broker then sends the will), with err as Err. After Done, Connect may be
// called again.
type Publisher interface {
	Connect(ctx context.Context, onAck func(token uint64, reason byte)) error
	Publish(ctx context.Context, m *Message, token uint64) error
	Flush() error
	Done() <-chan struct{}
	Err() error
	Close() error
	Abort(err error)
}

// Message is one PUBLISH.
type Message struct {
	Topic   []byte
	Payload []byte
	QoS     byte
	Retain  bool
	// Historical marks a replayed message (MQTT 5 user property
	// historical=true; the payload marking is the uplink's).
	Historical bool
}

// PublisherConfig is what both protocol implementations need.
type PublisherConfig struct {
	Name      string // the upstream's name, for errors
	URL       *url.URL
	ClientID  string
	Username  string
	Password  []byte
	KeepAlive time.Duration
	// Window is the most QoS 1 messages in flight; the broker's Receive
	// Maximum lowers it.
	Window int
	TLS    *tls.Config // nil for mqtt:// (insecure_plaintext)
	// Will is sent by the broker when the connection dies.
	WillTopic   string
	WillPayload []byte
	DialTimeout time.Duration
	// CommandFilter, when set, is subscribed to at QoS 1 after every
	// connect: what the broker sends on it goes to OnCommand,
	// which runs on the connection's reader and must not block. Retained
	// messages are not commands (a retained /set would be replayed at every
	// connect) and are dropped.
	CommandFilter string
	OnCommand     func(CloudCommand)
	// Subscriptions are further filters subscribed to at QoS 1 after every
	// connect (MQTT 5 only; a refusal fails the connect): everything the
	// broker sends on them, retained messages included, goes to OnMessage,
	// which runs on the connection's reader and must not block. A message
	// goes to OnMessage instead of OnCommand when OnMessage is set.
	Subscriptions []string
	OnMessage     func(topic string, payload []byte, retained bool)
	// OnSubscribeRefused is told when the broker refuses CommandFilter (a
	// *SubscribeRefusedError): the session goes on without commands. Nil:
	// the refusal fails the connect.
	OnSubscribeRefused func(error)
}

// CloudCommand is one message the cloud broker sent on the command
// subscription, with the MQTT 5 request properties a reply needs.
type CloudCommand struct {
	Topic           string
	Payload         []byte
	ResponseTopic   string
	CorrelationData []byte
	MessageExpiry   time.Duration // the remaining Message Expiry Interval (0: none)
	Received        time.Time
}

// TLSOptions are the TLS settings of an upstream.
type TLSOptions struct {
	CAFile, CertFile, KeyFile string
	ServerName                string
	ALPN                      []string
	InsecureSkipVerify        bool
}

// NewTLSConfig builds the client TLS configuration: TLS 1.2 or newer,
// server verification against CAFile (or the system roots when empty),
// a client certificate when CertFile/KeyFile are set (mTLS).
func NewTLSConfig(o TLSOptions, host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, NextProtos: o.ALPN, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // skip only when the installer says so, with a warning
	if o.ServerName != "" {
		c.ServerName = o.ServerName
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it; give the CA certificate(s) of the cloud broker in PEM form", o.CAFile)
		}
		c.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// dial opens the transport for u: mqtts:// (TLS, the handshake done
// here so a refused certificate is reported as such), wss:// (MQTT over
// WebSocket over the same TLS) or mqtt://. A TLS failure never falls back
// to plaintext.
func dial(ctx context.Context, cfg *PublisherConfig) (net.Conn, error) {
	u := cfg.URL
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
		td := &tls.Dialer{NetDialer: d, Config: cfg.TLS}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := td.DialContext(dctx, "tcp", hostPort(u, "8883"))
		if err != nil {
			return nil, explainTLS(err)
		}
		return c, nil
	case "wss":
		return dialWebSocket(ctx, cfg, d, timeout)
	case "mqtt", "tcp":
		return d.DialContext(ctx, "tcp", hostPort(u, "1883"))
	}
	return nil, fmt.Errorf("url scheme %q not supported here; use mqtts:// or wss://", u.Scheme)
}

func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// TLSError is a refused TLS handshake, with what the installer should check.
type TLSError struct {
	Reason string // "unknown authority", "hostname mismatch", "expired", "plaintext server", "protocol version", "handshake"
	Hint   string
	Err    error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("TLS %s: %v (%s)", e.Reason, e.Err, e.Hint)
}
func (e *TLSError) Unwrap() error { return e.Err }

// afterHandshake explains a connection that a TLS broker dropped before
// CONNACK: with TLS 1.3 a refused client certificate shows only then.
func afterHandshake(conn net.Conn, err error) error {
	if _, ok := conn.(*tls.Conn); !ok || ctxErr(err) {
		return err
	}
	return &TLSError{Reason: "client certificate refused", Hint: "the broker closed the connection after the TLS handshake: it may require a client certificate (cert_file/key_file) or not trust this one", Err: err}
}

func ctxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func explainTLS(err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return &TLSError{Reason: "unknown authority", Hint: "the broker's certificate is not signed by a CA in ca_file (or the system roots): set ca_file to the broker's CA", Err: err}
	case errors.As(err, &he):
		return &TLSError{Reason: "hostname mismatch", Hint: "the broker's certificate is not for this host name: use the name in its certificate in url, or set server_name", Err: err}
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return &TLSError{Reason: "expired", Hint: "the broker's certificate is expired or not yet valid: renew it, or check this box's clock (NTP)", Err: err}
	case errors.As(err, &ci):
		return &TLSError{Reason: "invalid certificate", Hint: "the broker's certificate was refused", Err: err}
	}
	var re tls.RecordHeaderError
	if errors.As(err, &re) {
		return &TLSError{Reason: "plaintext server", Hint: "the server did not speak TLS: is this a plaintext port (1883)? use the broker's TLS port (usually 8883)", Err: err}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		// A plaintext MQTT broker reads the ClientHello as a malformed
		// packet and hangs up; a TLS server would answer with an alert.
		// A proxy or load balancer that loses its backend hangs up the
		// same way, so the hint names both.
		return &TLSError{Reason: "plaintext server", Hint: "the server did not speak TLS: it closed the connection on the TLS ClientHello; is this a plaintext port (1883)? use the broker's TLS port (usually 8883); or a proxy or load balancer on the way dropped the connection", Err: err}
	}
	if msg := err.Error(); strings.Contains(msg, "protocol version") || strings.Contains(msg, "insufficient security") {
		// The server's alert (protocol_version, insufficient_security) or
		// Go's own "server selected unsupported protocol version".
		return &TLSError{Reason: "protocol version", Hint: "the server offers only an old TLS version (1.0/1.1 or SSL); edged requires TLS 1.2 or newer: enable TLS 1.2/1.3 on the broker", Err: err}
	}
	if strings.Contains(err.Error(), "tls:") {
		return &TLSError{Reason: "handshake", Hint: "the TLS handshake failed: check cert_file/key_file (the broker may require a client certificate) and alpn", Err: err}
	}
	return err
}
