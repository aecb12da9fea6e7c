package configs

import (
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Defaults of [broker].
const (
	DefaultBrokerAnonymous        = "read"
	DefaultBrokerMaxClients       = 100
	DefaultBrokerMaxPacketSize    = 1 << 20
	DefaultBrokerSessionExpiry    = time.Hour
	DefaultBrokerMaxInflight      = 1024
	DefaultBrokerMaxQueued        = 4096
	DefaultBrokerClientQueueBytes = 8 << 20
	DefaultBrokerQueueBytes       = 64 << 20
	DefaultBrokerWebSocketPath    = "/mqtt"
)

// Broker holds the embedded MQTT broker's settings: its listeners, who may
// connect and what each client may do, and how much it may hold for slow
// clients.
type Broker struct {
	// Listen is the TCP address (host:port) of the local broker; default
	// "127.0.0.1:1883" (this machine only); "0.0.0.0:1883" listens on all
	// interfaces (then users, or allow_anonymous = true, are required).
	Listen string `toml:"listen"`
	// Disabled turns every listener off; values are still published
	// in-process (to the upstreams).
	Disabled bool `toml:"disabled"`
	// Retain publishes values retained so a new subscriber sees the last
	// value at once; default true.
	Retain *bool `toml:"retain"`

	// Anonymous is what a client without a user name may do: "read"
	// (default: subscribe to every topic, publish nothing) or "none"
	// (refused). It applies on loopback listeners only, unless
	// AllowAnonymous is set.
	Anonymous string `toml:"anonymous"`
	// AllowAnonymous lets anonymous clients in on listeners beyond
	// loopback too (a warning is logged at every start). Without it, a
	// listener beyond loopback needs [[broker.user]] entries.
	AllowAnonymous bool `toml:"allow_anonymous"`
	// Commands accepts write commands (…/set topics) from local clients
	// whose publish ACL allows the topic; default false. [gateway] writes
	// and the tag's writable = true are needed too.
	Commands bool `toml:"commands"`

	// MaxClients is how many clients may be connected at once (default
	// 100); more are refused at CONNECT.
	MaxClients int `toml:"max_clients"`
	// MaxPacketSize is the largest MQTT packet accepted from or sent to a
	// client (default "1MiB").
	MaxPacketSize Size `toml:"max_packet_size"`
	// SessionExpiry caps how long the session of a disconnected
	// persistent client is kept (default "1h"; "0s": sessions end with
	// the connection).
	SessionExpiry *Duration `toml:"session_expiry"`
	// MaxInflight is how many QoS 1/2 messages one client may have
	// unacknowledged (default 1024); MaxQueued how many messages may wait
	// for one client's socket (default 4096).
	MaxInflight int `toml:"max_inflight"`
	MaxQueued   int `toml:"max_queued"`
	// ClientQueueBytes bounds the payload bytes the broker holds for one
	// client (queued for its socket plus unacknowledged), default "8MiB";
	// QueueBytes bounds them for all clients together, default "64MiB".
	// Beyond either, messages to that client are dropped and counted.
	ClientQueueBytes Size `toml:"client_queue_bytes"`
	QueueBytes       Size `toml:"queue_bytes"`

	// TLS is an MQTT-over-TLS listener ([broker.tls]); off unless listen
	// is set.
	TLS BrokerTLS `toml:"tls"`
	// WebSocket is an MQTT-over-WebSocket listener for browser HMIs
	// ([broker.websocket]); off unless listen is set.
	WebSocket BrokerWebSocket `toml:"websocket"`
	// Users are the accounts local clients log in with ([[broker.user]]).
	Users []BrokerUser `toml:"user"`
}

// BrokerTLS is the broker's TLS listener. The certificate and key files
// are read again on reload (SIGHUP), so a renewed certificate needs no
// restart.
type BrokerTLS struct {
	// Listen is host:port, e.g. "0.0.0.0:8883"; empty: no TLS listener.
	Listen string `toml:"listen"`
	// CertFile and KeyFile are the server certificate (chain) and its key,
	// PEM; required with listen.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ClientCAFile verifies client certificates (PEM). A client that
	// presents a certificate it signed logs in as the certificate's
	// identity (its Common Name), which must be a [[broker.user]]; no
	// password is asked.
	ClientCAFile string `toml:"client_ca_file"`
	// RequireClientCert refuses clients without such a certificate.
	RequireClientCert bool `toml:"require_client_cert"`
}

// BrokerWebSocket is the broker's MQTT-over-WebSocket listener.
type BrokerWebSocket struct {
	// Listen is host:port, e.g. "127.0.0.1:8080"; empty: no WebSocket
	// listener.
	Listen string `toml:"listen"`
	// Path is the HTTP path of the upgrade; default "/mqtt".
	Path string `toml:"path"`
	// CertFile and KeyFile, when set, serve wss:// (TLS) instead of ws://.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Origins, when set, lists the web origins (e.g.
	// "https://hmi.plant.local") whose pages may connect; a browser sends
	// its page's origin with the upgrade; a client that sends none is not
	// a browser and is let through. Empty: any origin.
	Origins []string `toml:"origins"`
}

// BrokerUser is one [[broker.user]]: a name, a password hash, and the
// topic filters the user may publish and subscribe to.
type BrokerUser struct {
	// Name is the MQTT user name (or the certificate identity).
	Name string `toml:"name"`
	// PasswordHash is a bcrypt hash, as `edged passwd` prints it. Without
	// one the user can log in only with a client certificate.
	PasswordHash string `toml:"password_hash"`
	// Publish and Subscribe are topic filters (+ and # allowed, %u is
	// replaced by the user name and %c by the client id). Default:
	// subscribe to every topic ("#"), publish nothing.
	Publish   []string `toml:"publish"`
	Subscribe []string `toml:"subscribe"`
}

// IsLoopbackListen reports whether a listen address (host:port) accepts
// connections from this machine only: a 127.0.0.0/8 or ::1 address, or
// "localhost". An empty host ("":1883) listens on every interface.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.SplitN(host, "%", 2)[0], "."))
	return ip != nil && ip.IsLoopback()
}

func (l *loader) checkBroker(src *source, cfg *Config) {
	b := &cfg.Broker
	key := func(k ...string) keyPath { return keyPath{{key: "broker"}}.with(k...) }
	ok := func(p keyPath) bool { return !l.failed[p.String()] }

	if b.Listen == "" {
		b.Listen = DefaultBrokerListen
	}
	l.checkListen(src, key("listen"), b.Listen, "1883")
	if b.Retain == nil {
		t := true
		b.Retain = &t
	}
	if b.Anonymous == "" {
		b.Anonymous = DefaultBrokerAnonymous
	}
	if ok(key("anonymous")) && b.Anonymous != "read" && b.Anonymous != "none" {
		l.at(src, key("anonymous"), `%q is not allowed; use "read" (default: clients without a user name may subscribe, not publish) or "none" (they are refused)`, b.Anonymous)
	}
	if b.MaxClients == 0 {
		b.MaxClients = DefaultBrokerMaxClients
	}
	if ok(key("max_clients")) && (b.MaxClients < 1 || b.MaxClients > 100000) {
		l.at(src, key("max_clients"), "%d is out of range; use 1 to 100000", b.MaxClients)
	}
	if b.MaxPacketSize == 0 {
		b.MaxPacketSize = DefaultBrokerMaxPacketSize
	}
	if ok(key("max_packet_size")) && (b.MaxPacketSize < 1<<10 || b.MaxPacketSize > 256<<20) {
		l.at(src, key("max_packet_size"), "%d bytes is out of range; use \"1KiB\" to \"256MiB\"", int64(b.MaxPacketSize))
	}
	if b.SessionExpiry == nil {
		d := Duration(DefaultBrokerSessionExpiry)
		b.SessionExpiry = &d
	}
	if ok(key("session_expiry")) && b.SessionExpiry.D() > 7*24*time.Hour {
		l.at(src, key("session_expiry"), "%s is too long; use at most \"168h\" (a vanished client's session holds messages until it expires)", b.SessionExpiry)
	}
	for _, f := range []struct {
		k   string
		p   *int
		def int
	}{{"max_inflight", &b.MaxInflight, DefaultBrokerMaxInflight}, {"max_queued", &b.MaxQueued, DefaultBrokerMaxQueued}} {
		if *f.p == 0 {
			*f.p = f.def
		}
		if ok(key(f.k)) && (*f.p < 1 || *f.p > 65535) {
			l.at(src, key(f.k), "%d is out of range; use 1 to 65535", *f.p)
		}
	}
	if b.ClientQueueBytes == 0 {
		b.ClientQueueBytes = DefaultBrokerClientQueueBytes
	}
	if b.QueueBytes == 0 {
		b.QueueBytes = DefaultBrokerQueueBytes
	}
	if ok(key("client_queue_bytes")) && b.ClientQueueBytes < b.MaxPacketSize {
		l.at(src, key("client_queue_bytes"), "%d bytes is below max_packet_size (%d): one message must fit", int64(b.ClientQueueBytes), int64(b.MaxPacketSize))
	}
	if ok(key("queue_bytes")) && b.QueueBytes < b.ClientQueueBytes {
		l.at(src, key("queue_bytes"), "%d bytes is below client_queue_bytes (%d); queue_bytes bounds all clients together", int64(b.QueueBytes), int64(b.ClientQueueBytes))
	}

	// Listeners.
	type listener struct {
		p    keyPath
		addr string
	}
	listeners := []listener{{key("listen"), b.Listen}}
	if b.TLS.Listen != "" {
		t := &b.TLS
		l.checkListen(src, key("tls", "listen"), t.Listen, "8883")
		listeners = append(listeners, listener{key("tls", "listen"), t.Listen})
		if t.CertFile == "" || t.KeyFile == "" {
			l.at(src, key("tls", "cert_file"), "a TLS listener needs cert_file and key_file (the server certificate and its private key, PEM)")
		}
		l.checkFiles(src, cfg, key("tls"), fileKey{"cert_file", &t.CertFile}, fileKey{"key_file", &t.KeyFile}, fileKey{"client_ca_file", &t.ClientCAFile})
		if t.RequireClientCert && t.ClientCAFile == "" {
			l.at(src, key("tls", "require_client_cert"), "require_client_cert needs client_ca_file (the CA that signed the client certificates, PEM)")
		}
	} else if b.TLS != (BrokerTLS{}) {
		l.at(src, key("tls", "listen"), `required: the TLS listener's address, e.g. listen = "0.0.0.0:8883"`)
	}
	ws := &b.WebSocket
	if ws.Listen != "" {
		l.checkListen(src, key("websocket", "listen"), ws.Listen, "8080")
		listeners = append(listeners, listener{key("websocket", "listen"), ws.Listen})
		if (ws.CertFile == "") != (ws.KeyFile == "") {
			l.at(src, key("websocket", "cert_file"), "cert_file and key_file go together (wss://); set both or neither (ws://)")
		}
		l.checkFiles(src, cfg, key("websocket"), fileKey{"cert_file", &ws.CertFile}, fileKey{"key_file", &ws.KeyFile})
		for i, o := range ws.Origins {
			if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
				l.at(src, key("websocket", "origins"), "origins[%d] %q is not a web origin; write e.g. \"https://hmi.plant.local\"", i, o)
			}
		}
	} else if ws.CertFile != "" || ws.KeyFile != "" || len(ws.Origins) > 0 || ws.Path != "" {
		l.at(src, key("websocket", "listen"), `required: the WebSocket listener's address, e.g. listen = "127.0.0.1:8080"`)
	}
	if ws.Path == "" {
		ws.Path = DefaultBrokerWebSocketPath
	} else if !strings.HasPrefix(ws.Path, "/") {
		l.at(src, key("websocket", "path"), "%q is not an HTTP path; write e.g. \"/mqtt\"", ws.Path)
	}
	seen := map[string]string{}
	for _, ln := range listeners {
		if prev, dup := seen[ln.addr]; dup && !strings.HasSuffix(ln.addr, ":0") {
			l.at(src, ln.p, "%q is already the address of %s; each listener needs its own port", ln.addr, prev)
		}
		seen[ln.addr] = ln.p.String()
	}

	// Users.
	names := map[string]int{}
	for i := range b.Users {
		u := &b.Users[i]
		base := keyPath{{key: "broker"}, {key: "user", idx: []int{i}}}
		switch {
		case !ok(base.with("name")):
		case u.Name == "":
			l.at(src, base.with("name"), `required: the user name clients log in with, e.g. name = "hmi"`)
		case strings.ContainsAny(u.Name, "\x00\r\n\t"):
			l.at(src, base.with("name"), "%q contains a control character", u.Name)
		default:
			if j, dup := names[u.Name]; dup {
				l.at(src, base.with("name"), "%q is already the name of broker.user[%d]; user names must be unique", u.Name, j)
			}
			names[u.Name] = i
		}
		if u.PasswordHash != "" && ok(base.with("password_hash")) {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				l.at(src, base.with("password_hash"), "not a bcrypt hash (it must start with $2a$, $2b$ or $2y$); never write a password here: run `edged passwd` and paste the hash it prints")
			}
		}
		if u.Subscribe == nil {
			u.Subscribe = []string{"#"}
		}
		for _, lst := range []struct {
			k string
			v []string
		}{{"publish", u.Publish}, {"subscribe", u.Subscribe}} {
			if !ok(base.with(lst.k)) {
				continue
			}
			for j, f := range lst.v {
				if msg := checkFilter(f); msg != "" {
					l.at(src, base.with(lst.k), "%s[%d] %q: %s (%%u and %%c stand for the user name and the client id)", lst.k, j, f, msg)
				}
			}
		}
	}

	// Nothing listens beyond loopback without authentication.
	if b.Disabled || b.AllowAnonymous || len(b.Users) > 0 {
		return
	}
	for _, ln := range listeners {
		if !ok(ln.p) || IsLoopbackListen(ln.addr) {
			continue
		}
		l.at(src, ln.p, "%q is reachable beyond this machine, and no [[broker.user]] is configured: anyone on the network could read the plant's data. Add users (password hashes from `edged passwd`), listen on 127.0.0.1, or write allow_anonymous = true in [broker] to accept anonymous clients on purpose", ln.addr)
	}
}

// checkListen checks a host:port listen address.
func (l *loader) checkListen(src *source, p keyPath, addr, port string) {
	if l.failed[p.String()] {
		return
	}
	host, pt, err := net.SplitHostPort(addr)
	// Port 0 asks the system for a free port (tests, demos).
	_, perr := strconv.ParseUint(pt, 10, 16)
	if err != nil || perr != nil || strings.ContainsAny(host, " /") {
		l.at(src, p, `%q is not host:port; write e.g. "127.0.0.1:%s" (this machine only) or "0.0.0.0:%s" (all interfaces), port 0-65535 (0: any free port)`, addr, port, port)
		l.failed[p.String()] = true
	}
}

// fileKey is a key naming a file, and where its value is.
type fileKey struct {
	key string
	p   *string
}

// checkFiles resolves the file keys of table base against the config's
// folder and reports those that cannot be read.
func (l *loader) checkFiles(src *source, cfg *Config, base keyPath, files ...fileKey) {
	for _, f := range files {
		p := base.with(f.key)
		if *f.p == "" || l.failed[p.String()] {
			continue
		}
		*f.p = resolve(cfg.Dir, *f.p, "")
		if _, err := l.readFile(*f.p); err != nil {
			l.at(src, p, "cannot read %s: %v", *f.p, describeRead(err))
		}
	}
}
