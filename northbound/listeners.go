package northbound

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
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
