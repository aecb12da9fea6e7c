package configs

import (
	"net"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Console holds the local web console's settings ([console]). The console
// is served on the [metrics] listen address, under /console/.
type Console struct {
	// Enabled serves the console. Not set: on when [metrics] listens on
	// loopback only, or when users are configured; true off loopback
	// without users is an error (nothing listens beyond loopback without
	// authentication); false turns it off.
	Enabled *bool `toml:"enabled"`
	// Writes lets authenticated console users write writable tags through
	// the write door (with [gateway] writes = true and the tags' own
	// policy). Default false: the console is read-only.
	Writes bool `toml:"writes"`
	// CertFile and KeyFile (PEM) make the whole [metrics] port speak HTTPS
	// (console, /metrics, /healthz and /readyz alike).
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Users may log in (HTTP Basic); when any is configured every console
	// page asks for a login, on loopback too.
	Users []ConsoleUser `toml:"user"`
}

// ConsoleUser is one [[console.user]]: a name and a bcrypt hash of the
// password (never the password itself), e.g. made with
// `htpasswd -nbBC 12 NAME PASSWORD`.
type ConsoleUser struct {
	Name         string `toml:"name"`
	PasswordHash string `toml:"password_hash"`
}

// ConsoleOn reports whether the console is served: as [console] enabled
// says, or else when [metrics] listens on loopback only or logins exist.
func (cfg *Config) ConsoleOn() bool {
	if cfg.Console.Enabled != nil {
		return *cfg.Console.Enabled
	}
	return LoopbackOnly(cfg.Metrics.Listen) || len(cfg.ConsoleLogins()) > 0
}

// ConsoleLogins are the users who may log in to the console, name →
// bcrypt hash: the local broker's [[broker.user]]s that have a
// password_hash (the same hashed users), and the console's own
// [[console.user]]s, which win on a name they share.
func (cfg *Config) ConsoleLogins() map[string]string {
	m := map[string]string{}
	for _, u := range cfg.Broker.Users {
		if u.PasswordHash != "" {
			m[u.Name] = u.PasswordHash
		}
	}
	for _, u := range cfg.Console.Users {
		m[u.Name] = u.PasswordHash
	}
	return m
}

// LoopbackOnly reports whether a listen address (host:port; "" is the
// default 127.0.0.1:9272) accepts connections from this machine only. An
// empty host, 0.0.0.0, :: and names other than localhost count as reachable
// from the network.
func LoopbackOnly(listen string) bool {
	if listen == "" {
		return true
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l *loader) checkConsole(src *source, cfg *Config) {
	c := &cfg.Console
	key := func(k string) keyPath { return keyPath{{key: "console"}, {key: k}} }
	names := map[string]bool{}
	for i, u := range c.Users {
		base := keyPath{{key: "console"}, {key: "user", idx: []int{i}}}
		switch {
		case u.Name == "":
			l.at(src, base.with("name"), `required: the login name of this console user, e.g. name = "installer"`)
		case strings.ContainsAny(u.Name, ":\x00\r\n"):
			l.at(src, base.with("name"), "%q contains ':' or a control character, which HTTP Basic logins cannot carry", u.Name)
		case names[u.Name]:
			l.at(src, base.with("name"), "%q is already a console user; names must be unique", u.Name)
		}
		names[u.Name] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			l.at(src, base.with("password_hash"), "not a bcrypt hash ($2a$, $2b$ or $2y$…, 60 characters); make one with `htpasswd -nbBC 12 %s PASSWORD` and copy the part after the colon", u.Name)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		missing := "key_file"
		if c.CertFile == "" {
			missing = "cert_file"
		}
		l.at(src, key(missing), "cert_file and key_file go together: give both (PEM files) for HTTPS, or neither for plain HTTP")
	}
	if c.CertFile != "" {
		c.CertFile = resolve(cfg.Dir, c.CertFile, "")
		c.KeyFile = resolve(cfg.Dir, c.KeyFile, "")
	}
	logins := len(cfg.ConsoleLogins())
	if c.Writes && logins == 0 {
		l.at(src, key("writes"), "writes from the console need an authenticated user: add a [[broker.user]] or [[console.user]] with name and password_hash, or set writes = false")
	}
	if c.Enabled != nil && *c.Enabled && logins == 0 && !LoopbackOnly(cfg.Metrics.Listen) {
		l.at(src, key("enabled"), "[metrics] listen %q is reachable from the network, and nothing listens beyond loopback without authentication: add a [[broker.user]] or [[console.user]], or listen on 127.0.0.1", cfg.Metrics.Listen)
	}
}
