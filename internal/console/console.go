// Package console is edged's local web console: server-rendered pages
// (overview, device, uplinks, config) from files embedded in the binary,
// live values over Server-Sent Events and small in-memory plots of the
// last hour, mounted under /console/ on the metrics HTTP server.
//
// It reads the running gateway only through the small interfaces below
// (Source, Writer, Authenticator), filled by internal/app; it must not know
// the device host, the drivers, the uplinks or the buffer. It owns the
// console's security: HTTP Basic login over hashed users (required off
// loopback), a CSRF token on every state-changing request, a strict
// Content-Security-Policy, and writes only for an authenticated user when
// a Writer is given.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Prefix is where the console is mounted on the metrics server.
const Prefix = "/console/"

// GatewayInfo is what the overview shows about the gateway as a whole.
type GatewayInfo struct {
	ID      string
	Version string
	Started time.Time
	// Samples, Published and PublishErrors are the gateway's running totals.
	Samples, Published, PublishErrors uint64
}

// Device is one device's state (its tags come from Source.Tags).
type Device struct {
	Name, Driver string
	State        string // connecting, online, offline, stopped
	Err          string // why it is not online ("" when it is)
	Polls        uint64
	BadSamples   uint64
	LastGoodMs   int64   // unix ms of the last good batch; 0 never
	PollSeconds  float64 // the last complete poll cycle; negative: not reported
	Requests     uint64
	Errors       uint64
}

// Tag is one tag's last sample, already formatted for display.
type Tag struct {
	Name, Topic, Unit string
	Value             string // "" never read
	Quality           string // good, uncertain, bad
	Err               string
	TimeMs            int64 // when the sample was taken (unix ms); 0 never
}

// DeviceDetail is what the device page shows beyond Device: where every
// tag lives, the read plan and what was learned, the bus.
type DeviceDetail struct {
	Settings []KeyValue // interval, address, endpoint… (never secrets)
	Tags     []TagInfo
	Plan     []PlanRead
	Learned  []KeyValue // what the planner learned (max read size, unreadable tags…)
	Bus      *Bus       // the RTU bus the device is on; nil for others
}

// KeyValue is one labelled figure.
type KeyValue struct{ Key, Value string }

// TagInfo is how one tag is read.
type TagInfo struct {
	Name     string
	Address  string // "holding_register 100", "ns=2;s=Speed"
	Type     string // "float32 ABCD", "bool bit 3"
	Writable bool
	Limits   string // "0 … 100" when bounded
}

// PlanRead is one read of a Modbus plan.
type PlanRead struct {
	Area         string
	Start, Count int
	Tags         []string
}

// Bus is one serial bus' figures.
type Bus struct {
	Port, Mode  string
	Utilisation float64 // share of wall time the line carried frames
	Overruns    uint64
	Devices     []KeyValue // device → "cycle 120ms of 1s"
}

// Uplink is one upstream bridge and its buffer.
type Uplink struct {
	Name, URL       string // URL without user or password
	State           string
	LastErr         string
	Connects        uint64
	ConnectAttempts uint64
	Sent, Replayed  uint64
	Acked           uint64
	ReplayBacklog   int64 // still to replay in this session
	Window          int   // in-flight window (max_inflight)
	InFlight        int   // sent, not yet acknowledged
	Depth, Bytes    int64 // messages and bytes not yet acknowledged
	OldestAge       float64
	Dropped         uint64 // dropped by the caps or a full disk
	// Lost counts messages given up unsent for other reasons: refused for
	// good by the broker, a damaged store, a crash before they were
	// stored (not in Dropped); LostWhy says which ("not_authorized 20").
	Lost            uint64
	LostWhy         string
	DiskBytes       int64
	MaxBytes        int64
	AtCap, DiskFull bool
	Recovered       bool
}

// ConfigInfo is the running config and the last reload.
type ConfigInfo struct {
	Path        string
	Fingerprint string
	LoadedAt    time.Time
	Reload      *ReloadResult // nil: none since start
}

// ReloadResult is what the last reload did.
type ReloadResult struct {
	At      time.Time
	OK      bool
	Summary []KeyValue // started/restarted/stopped…
	Errors  []string   // every problem, at file:line, when it was refused
}

// Source is what the console reads. Every method must be safe for
// concurrent use and cheap enough to call once a second.
type Source interface {
	Gateway() GatewayInfo
	Devices() []Device
	// Tags returns the last samples of the named devices' tags, by device
	// (formatting values costs: the console asks only for what is shown).
	Tags(devices ...string) map[string][]Tag
	Device(name string) (DeviceDetail, bool)
	Uplinks() []Uplink
	Config() ConfigInfo
}

// Writer writes a tag through the daemon's write door on behalf of an
// authenticated console user; value is text as typed ("42.5", "on").
type Writer interface {
	Write(ctx context.Context, device, tag, value, user string) WriteResult
}

// WriteResult is the door's answer, for display.
type WriteResult struct {
	OK       bool
	Reason   string
	Message  string
	ReadBack string
}

// Authenticator checks a login.
type Authenticator interface {
	Authenticate(user, password string) bool
}

// Options configure a Console.
type Options struct {
	Source Source
	// Writer, when set, lets authenticated users write ([console] writes).
	Writer Writer
	// Auth checks logins; nil: no login (allowed only when !OffLoopback).
	Auth Authenticator
	// OffLoopback: the port is reachable from the network. Every request
	// then needs a login; without Auth every request is refused.
	OffLoopback bool
	Logger      *slog.Logger
	// SampleEvery is the plots' resolution (default 10s), History their
	// length (default 1h); LiveEvery how often connected browsers get
	// fresh values (default 1s).
	SampleEvery, History, LiveEvery time.Duration
}

//go:embed web
var web embed.FS

// Console serves the pages. Start it to record the plots.
type Console struct {
	o       Options
	log     *slog.Logger
	pages   *template.Template
	static  http.Handler
	mux     *http.ServeMux
	csrfKey []byte
	rec     *recorder
}

// New makes a console; it records nothing until Start.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 10 * time.Second
	}
	if o.History <= 0 {
		o.History = time.Hour
	}
	if o.LiveEvery <= 0 {
		o.LiveEvery = time.Second
	}
	c := &Console{o: o, log: o.Logger, csrfKey: make([]byte, 32)}
	_, _ = rand.Read(c.csrfKey)
	c.pages = template.Must(template.New("").Funcs(funcs).ParseFS(web, "web/*.html"))
	sub, _ := fs.Sub(web, "web/static")
	c.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	c.rec = newRecorder(o)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/{$}", c.overview)
	mux.HandleFunc("GET /console/device/{name}", c.device)
	mux.HandleFunc("POST /console/device/{name}/write", c.write)
	mux.HandleFunc("GET /console/uplinks", c.uplinks)
	mux.HandleFunc("GET /console/config", c.config)
	mux.HandleFunc("GET /console/events", c.events)
	mux.HandleFunc("GET /console/api/state", c.apiState)
	mux.Handle("GET /console/static/", c.static)
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	c.mux = mux
	return c
}

// Start records the plots until ctx ends (one sample every SampleEvery,
// whether or not anybody looks) and feeds connected browsers.
func (c *Console) Start(ctx context.Context) { go c.rec.run(ctx) }

// csp allows only the console's own files: no inline script or style, no
// other origin, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type ctxKey struct{}

// ServeHTTP authenticates, sets the security headers and serves.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if c.o.Auth == nil && !loopbackHost(r.Host) {
		// Without a login, a page of another site that rebinds its name
		// to 127.0.0.1 must not read the console.
		http.Error(w, "403 without a login the console answers only to http://127.0.0.1, [::1] or localhost", http.StatusForbidden)
		return
	}
	user, ok := c.login(r)
	if !ok {
		h.Set("WWW-Authenticate", `Basic realm="edged console", charset="UTF-8"`)
		http.Error(w, "401 login required", http.StatusUnauthorized)
		return
	}
	c.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, user)))
}

// loopbackHost reports whether a Host header names this machine by a
// loopback address or localhost.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// login returns the authenticated user ("" when no login is needed).
func (c *Console) login(r *http.Request) (string, bool) {
	if c.o.Auth == nil {
		return "", !c.o.OffLoopback
	}
	u, p, ok := r.BasicAuth()
	if !ok || !c.o.Auth.Authenticate(u, p) {
		return "", false
	}
	return u, true
}

func userOf(r *http.Request) string { s, _ := r.Context().Value(ctxKey{}).(string); return s }

// csrfToken is the token a user's forms carry: an HMAC of the user name
// under a key made at start, so a page of another origin cannot know it.
func (c *Console) csrfToken(user string) string {
	m := hmac.New(sha256.New, c.csrfKey)
	m.Write([]byte("csrf\x00" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *Console) csrfOK(r *http.Request) bool {
	got := r.PostFormValue("csrf")
	if got == "" {
		got = r.Header.Get("X-CSRF-Token")
	}
	want := c.csrfToken(userOf(r))
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// canWrite: a Writer and a logged-in user.
func (c *Console) canWrite(r *http.Request) bool { return c.o.Writer != nil && userOf(r) != "" }

// BcryptUsers authenticates against bcrypt hashes (as [[console.user]] and
// the local broker's users keep them). A successful check is remembered for
// a few minutes (as a salted SHA-256, never the password) so that a browser
// sending its login with every request does not pay bcrypt each time.
type BcryptUsers struct {
	mu     sync.Mutex
	hashes map[string][]byte
	dummy  []byte // a hash at the users' cost, checked for unknown names
	salt   [32]byte
	ok     map[[32]byte]time.Time
}

// NewBcryptUsers returns an authenticator over name → bcrypt hash.
func NewBcryptUsers(hashes map[string]string) *BcryptUsers {
	b := &BcryptUsers{}
	_, _ = rand.Read(b.salt[:])
	b.Set(hashes)
	return b
}

// Set replaces the users (a reload); remembered logins are forgotten.
func (b *BcryptUsers) Set(hashes map[string]string) {
	m := make(map[string][]byte, len(hashes))
	cost := bcrypt.MinCost
	for n, h := range hashes {
		m[n] = []byte(h)
		if c, err := bcrypt.Cost(m[n]); err == nil {
			cost = max(cost, c)
		}
	}
	dummy, _ := bcrypt.GenerateFromPassword([]byte("edged console: no such user"), cost)
	b.mu.Lock()
	b.hashes, b.dummy, b.ok = m, dummy, map[[32]byte]time.Time{}
	b.mu.Unlock()
}

// Len is the number of users.
func (b *BcryptUsers) Len() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.hashes) }

const rememberLogin = 5 * time.Minute

// Authenticate implements Authenticator.
func (b *BcryptUsers) Authenticate(user, password string) bool {
	h := sha256.New()
	h.Write(b.salt[:])
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var key [32]byte
	copy(key[:], h.Sum(nil))
	now := time.Now()
	b.mu.Lock()
	hash, known := b.hashes[user]
	if !known {
		hash = b.dummy // spend the same time on an unknown user
	}
	if t, ok := b.ok[key]; ok && known && now.Sub(t) < rememberLogin {
		b.mu.Unlock()
		return true
	}
	b.mu.Unlock()
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !known {
		return false
	}
	b.mu.Lock()
	if len(b.ok) > 1000 {
		clear(b.ok)
	}
	b.ok[key] = now
	b.mu.Unlock()
	return true
}

// pageURL escapes a device name for a path.
func pageURL(parts ...string) string {
	var sb strings.Builder
	sb.WriteString(strings.TrimSuffix(Prefix, "/"))
	for _, p := range parts {
		sb.WriteByte('/')
		sb.WriteString(urlPathEscape(p))
	}
	return sb.String()
}
