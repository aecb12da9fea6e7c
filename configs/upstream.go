package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/northbound/defaults"
)

// The defaults of an [[upstream]] are its components': the uplink's and
// the publisher's in northbound/defaults, the buffer's in package buffer.
// Load fills them in, so that spelling out a default changes nothing.

// Upstream is one [[upstream]] table: a cloud MQTT broker that the local
// topics matching Topics are bridged to, through its own disk buffer.
type Upstream struct {
	// Name identifies the upstream in logs and metrics and names its buffer
	// folder: required, unique, letters, digits, '-', '_' and '.'.
	Name string `toml:"name"`
	// URL is mqtts://host[:8883] (TLS), wss://host[:443][/path] (MQTT over
	// WebSocket over TLS; path default /mqtt), or mqtt://host[:1883] only
	// with insecure_plaintext = true.
	URL string `toml:"url"`
	// Protocol is "5" (default) or "3.1.1".
	Protocol string `toml:"protocol"`
	// ClientID defaults to "edged-{gateway id}".
	ClientID string `toml:"client_id"`
	// TLS: CAFile verifies the broker (default: the system's CAs);
	// CertFile/KeyFile authenticate this gateway (mTLS); ServerName
	// overrides the name checked in the broker's certificate; ALPN e.g.
	// ["x-amzn-mqtt-ca"] for AWS IoT on port 443.
	CAFile     string   `toml:"ca_file"`
	CertFile   string   `toml:"cert_file"`
	KeyFile    string   `toml:"key_file"`
	ServerName string   `toml:"server_name"`
	ALPN       []string `toml:"alpn"`
	// InsecureSkipVerify turns off the broker certificate check (a warning
	// is logged at every start). InsecurePlaintext allows mqtt://.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	InsecurePlaintext  bool `toml:"insecure_plaintext"`
	// Username and Password (or PasswordFile, whose content, trailing line
	// break removed, becomes Password at load time).
	Username     string `toml:"username"`
	Password     string `toml:"password"`
	PasswordFile string `toml:"password_file"`
	// KeepAlive is the MQTT keepalive; default 30s; a dead link is noticed
	// after 1.5× of it.
	KeepAlive Duration `toml:"keepalive"`
	// AckTimeout ends a session in which no PUBACK came for this long
	// while messages were in flight (TCP open, nothing getting through);
	// the uplink reconnects and replays them, marked historical. Default
	// 10s; 1s to 1h.
	AckTimeout Duration `toml:"ack_timeout"`
	// ReconnectMax caps the reconnect backoff (which starts at 500ms,
	// doubles with jitter, and starts over after a session that stayed up
	// that long). Default 10s; 1s to 10m.
	ReconnectMax Duration `toml:"reconnect_max"`
	// Commands subscribes this upstream's session to the gateway's command
	// topics ({topic_prefix}/{gateway}/+/+/set, under its own topic_prefix)
	// and hands what arrives to the write door as source "upstream NAME";
	// [gateway] writes = true is needed too. MQTT 5 or 3.1.1 (replies then
	// on the command topic + /reply). With format = "sparkplug" it takes
	// DCMD metric writes instead (source "sparkplug NAME"), through the
	// same door.
	Commands bool `toml:"commands"`
	// Format is what this upstream receives: "json" (edged's JSON, as
	// published locally) or "value" (each tag's bare value as text, as
	// [gateway] format = "value" renders it; per-device messages are not
	// sent) or "sparkplug" (Sparkplug B edge node, fed by the gateway's
	// samples, not by local topics; see Sparkplug). Default: the
	// [gateway] format.
	Format string `toml:"format"`
	// Topics are the local topic filters that go up; default
	// ["{gateway.topic_prefix}/#"].
	Topics []string `toml:"topics"`
	// Forward are local topic filters on which messages that local
	// clients publish go up too (opt-in; e.g. ["apps/#"]). Without it
	// only what edged itself publishes goes up.
	Forward []string `toml:"forward"`
	// TopicPrefix, when set, replaces gateway.topic_prefix at the start of
	// every topic sent up (and of the status topic).
	TopicPrefix string `toml:"topic_prefix"`
	// MaxInflight is the QoS 1 window (the broker's Receive Maximum lowers
	// it); default 100.
	MaxInflight int `toml:"max_inflight"`
	// ReplayRate paces buffered (historical) messages, messages/s;
	// default 500.
	ReplayRate int `toml:"replay_rate"`
	// ReplayOrder is "interleave" (default: live messages go out at once,
	// beside the paced backlog, and may overtake older historical values
	// of the same topic) or "strict" (live messages wait until the backlog
	// is sent: every topic reaches the cloud in the order it was
	// published).
	ReplayOrder string `toml:"replay_order"`
	// BufferDir defaults to {data_dir}/buffer/{name}.
	BufferDir string `toml:"buffer_dir"`
	// MaxBytes is the disk space the buffer may use (default 256MiB, at
	// least 16MiB); 69–75% of it hold messages. MaxAge drops
	// older messages (default: none). The oldest are dropped first.
	MaxBytes Size     `toml:"max_bytes"`
	MaxAge   Duration `toml:"max_age"`
	// Sync is "interval" (default: fsync every sync_interval, 1s) or
	// "always" (every group commit).
	Sync         string   `toml:"sync"`
	SyncInterval Duration `toml:"sync_interval"`
	// WriteDelay (sync = "interval" only): a message is written to disk
	// only if it is still unacknowledged this long after it was queued, so
	// a healthy uplink costs the SD card almost nothing. Default "500ms",
	// at most sync_interval; "0s" writes every message at once.
	WriteDelay *Duration `toml:"write_delay"`

	// Sparkplug are the Sparkplug B settings (format = "sparkplug").
	Sparkplug

	// Line is where the table starts, for later error messages.
	Line int `toml:"-"`
}

// upstreams decodes and checks every [[upstream]].
func (l *loader) upstreams(src *source, cfg *Config, prim toml.Primitive) {
	var prims []toml.Primitive
	if err := src.md.PrimitiveDecode(prim, &prims); err != nil {
		l.at(src, keyPath{{key: "upstream"}}, "write each upstream as an [[upstream]] table (with name, url and its settings)")
		return
	}
	names := map[string]int{}
	for i, p := range prims {
		base := keyPath{{key: "upstream", idx: []int{i}}}
		u := &Upstream{Line: src.idx.lineOf(base)}
		l.decode(src, base, p, u)
		l.checkUpstream(src, cfg, base, u, names, i)
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
}

func (l *loader) checkUpstream(src *source, cfg *Config, base keyPath, u *Upstream, names map[string]int, i int) {
	key := func(k string) keyPath { return base.with(k) }
	ok := func(k string) bool { return !l.failed[key(k).String()] }

	switch {
	case !ok("name"):
	case u.Name == "":
		l.at(src, key("name"), `required: name the upstream, e.g. name = "cloud" (%s; it names its buffer folder and metrics)`, nameChars)
	case badNameChar(u.Name) != "":
		l.at(src, key("name"), "%q contains %s; use only %s", u.Name, badNameChar(u.Name), nameChars)
	default:
		if j, dup := names[u.Name]; dup {
			l.at(src, key("name"), "%q is already the name of upstream[%d]; upstream names must be unique (each has its own buffer)", u.Name, j)
		} else {
			names[u.Name] = i
		}
	}

	if ok("url") {
		l.checkUpstreamURL(src, key("url"), u)
	}
	if u.Protocol == "" {
		u.Protocol = defaults.Protocol
	}
	if ok("protocol") && u.Protocol != "5" && u.Protocol != "3.1.1" {
		l.at(src, key("protocol"), `%q is not an MQTT version edged speaks upstream; use "5" (default) or "3.1.1" (e.g. Azure IoT Hub)`, u.Protocol)
	}
	l.checkUpstreamFormat(src, cfg, key("format"), u)
	if u.ClientID == "" {
		u.ClientID = "edged-" + cfg.Gateway.ID
	}
	for _, f := range []struct {
		k string
		p *string
	}{{"ca_file", &u.CAFile}, {"cert_file", &u.CertFile}, {"key_file", &u.KeyFile}, {"password_file", &u.PasswordFile}} {
		if *f.p == "" || !ok(f.k) {
			continue
		}
		*f.p = resolve(cfg.Dir, *f.p, "")
		if _, err := l.readFile(*f.p); err != nil {
			l.at(src, key(f.k), "cannot read %s: %v", *f.p, describeRead(err))
		}
	}
	if (u.CertFile == "") != (u.KeyFile == "") {
		l.at(src, key("cert_file"), "cert_file and key_file go together (the client certificate and its private key, PEM); set both or neither")
	}
	if u.Password != "" && u.PasswordFile != "" {
		l.at(src, key("password_file"), "set password or password_file, not both")
	} else if u.PasswordFile != "" {
		if b, err := l.readFile(u.PasswordFile); err == nil {
			u.Password = strings.TrimRight(string(b), "\r\n")
		}
	}
	if u.KeepAlive == 0 {
		u.KeepAlive = Duration(defaults.KeepAlive)
	}
	if ok("keepalive") && (u.KeepAlive.D() < time.Second || u.KeepAlive.D() > 65535*time.Second) {
		l.at(src, key("keepalive"), "%s is out of range; MQTT allows 1s to 18h12m15s (e.g. \"30s\")", u.KeepAlive)
	}
	if u.AckTimeout == 0 {
		u.AckTimeout = Duration(defaults.AckTimeout)
	}
	if ok("ack_timeout") && (u.AckTimeout.D() < time.Second || u.AckTimeout.D() > time.Hour) {
		l.at(src, key("ack_timeout"), "%s is out of range; use 1s to 1h (e.g. \"10s\": how long without any PUBACK, while messages are in flight, before the link counts as dead)", u.AckTimeout)
	}
	if u.ReconnectMax == 0 {
		u.ReconnectMax = Duration(defaults.BackoffMax)
	}
	if ok("reconnect_max") && (u.ReconnectMax.D() < time.Second || u.ReconnectMax.D() > 10*time.Minute) {
		l.at(src, key("reconnect_max"), "%s is out of range; use 1s to 10m (e.g. \"10s\": the longest wait between reconnect attempts)", u.ReconnectMax)
	}
	if len(u.Topics) == 0 {
		u.Topics = []string{cfg.Gateway.TopicPrefix + "/#"}
	}
	if ok("topics") {
		for j, f := range u.Topics {
			if msg := checkFilter(f); msg != "" {
				l.at(src, key("topics"), "topics[%d] %q: %s", j, f, msg)
			}
		}
	}
	if ok("forward") {
		for j, f := range u.Forward {
			if msg := checkFilter(f); msg != "" {
				l.at(src, key("forward"), "forward[%d] %q: %s", j, f, msg)
			}
		}
	}
	if ok("topic_prefix") && u.TopicPrefix != "" {
		if strings.ContainsAny(u.TopicPrefix, "+#\x00") || strings.HasPrefix(u.TopicPrefix, "/") || strings.HasSuffix(u.TopicPrefix, "/") || strings.HasPrefix(u.TopicPrefix, "$") {
			l.at(src, key("topic_prefix"), "%q is not a topic prefix; write topic levels without wildcards, without a leading or trailing '/' and not starting with '$', e.g. \"plant7/line1\"", u.TopicPrefix)
		}
	}
	if u.MaxInflight == 0 {
		u.MaxInflight = defaults.MaxInflight
	}
	if ok("max_inflight") && (u.MaxInflight < 1 || u.MaxInflight > 65535) {
		l.at(src, key("max_inflight"), "%d is out of range; use 1 to 65535 (the broker's Receive Maximum lowers it)", u.MaxInflight)
	}
	if u.ReplayRate == 0 {
		u.ReplayRate = defaults.ReplayRate
	}
	if ok("replay_rate") && (u.ReplayRate < 1 || u.ReplayRate > 1_000_000) {
		l.at(src, key("replay_rate"), "%d is out of range; use 1 to 1000000 messages per second (stay below your cloud's per-connection limit)", u.ReplayRate)
	}
	if u.ReplayOrder == "" {
		u.ReplayOrder = defaults.ReplayOrder
	}
	if ok("replay_order") && u.ReplayOrder != "interleave" && u.ReplayOrder != "strict" {
		l.at(src, key("replay_order"), `%q is not a replay order; use "interleave" (default: live data goes out at once, historical values of a topic may arrive after newer live ones) or "strict" (every topic in the order it was published; live data waits for the backlog)`, u.ReplayOrder)
	}
	if u.Name != "" {
		u.BufferDir = resolve(cfg.Gateway.DataDir, u.BufferDir, filepath.Join("buffer", u.Name))
	}
	if u.MaxBytes == 0 {
		u.MaxBytes = buffer.DefaultMaxBytes
	}
	if ok("max_bytes") && u.MaxBytes < buffer.MinMaxBytes {
		l.at(src, key("max_bytes"), "%d bytes is too small; use at least \"16MiB\" (the store has a fixed overhead of a few MiB)", int64(u.MaxBytes))
	}
	if u.Sync == "" {
		u.Sync = "interval" // buffer.SyncInterval, the buffer's zero mode
	}
	if ok("sync") && u.Sync != "interval" && u.Sync != "always" {
		l.at(src, key("sync"), `%q is not a sync mode; use "interval" (fsync every sync_interval; a power cut loses at most that) or "always" (fsync every group commit)`, u.Sync)
	}
	if u.SyncInterval == 0 {
		u.SyncInterval = Duration(buffer.DefaultSyncInterval)
	}
	l.checkSparkplug(src, cfg, base, u)
}

func (l *loader) checkUpstreamURL(src *source, p keyPath, u *Upstream) {
	if u.URL == "" {
		l.at(src, p, `required: the cloud broker, e.g. url = "mqtts://broker.example.com:8883"`)
		return
	}
	if ui := userinfo(u.URL); ui != "" || strings.Contains(u.URL, "://@") {
		// Never echo them: the password would end up in logs and terminals.
		name, _, _ := strings.Cut(ui, ":")
		if name == "" {
			name = "…"
		}
		l.at(src, p, `%q carries credentials in the URL ("…@"), which edged does not use and would show in logs; remove them and set username = %q with password_file = "/etc/edged/credentials/<file>" (or password = "${ENV_VAR}")`, RedactURL(u.URL), name)
		return
	}
	pu, err := url.Parse(u.URL)
	if err != nil || pu.Hostname() == "" {
		l.at(src, p, `%q is not a broker URL; write e.g. "mqtts://broker.example.com:8883"`, RedactLoose(u.URL))
		return
	}
	switch pu.Scheme {
	case "mqtts", "wss":
	case "mqtt":
		if !u.InsecurePlaintext {
			l.at(src, p, "%q is plaintext: passwords and plant data would cross the network readable; use mqtts://, or set insecure_plaintext = true for a broker on a trusted network", u.URL)
		}
	default:
		l.at(src, p, "scheme %q is not supported; use mqtts:// (TLS), wss:// (MQTT over WebSocket over TLS, e.g. wss://broker.example.com:443/mqtt) or, with insecure_plaintext = true, mqtt://", pu.Scheme)
	}
}

// userinfo returns the "user:password" part of a URL, or "".
func userinfo(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		return rest[:i]
	}
	return ""
}

// RedactLoose hides everything before the last "@" of a string that is
// not a URL (a mistyped "mqtts:/user:password@host" may still carry a
// password, which userinfo does not find without "://").
func RedactLoose(raw string) string {
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		return "…" + raw[i:]
	}
	return raw
}

// RedactURL is raw with any credentials ("user:password@") replaced by
// "…@", for messages and logs.
func RedactURL(raw string) string {
	ui := userinfo(raw)
	if ui == "" {
		return raw
	}
	return strings.Replace(raw, ui+"@", "…@", 1)
}

// checkFilter returns what is wrong with an MQTT topic filter, or "".
func checkFilter(f string) string {
	if f == "" {
		return "empty; write a topic filter such as \"edged/#\""
	}
	levels := strings.Split(f, "/")
	for i, lv := range levels {
		if strings.Contains(lv, "#") && (lv != "#" || i != len(levels)-1) {
			return "'#' must be a whole level and the last one, e.g. \"edged/#\""
		}
		if strings.Contains(lv, "+") && lv != "+" {
			return "'+' must be a whole level, e.g. \"edged/+/meter1/#\""
		}
	}
	return ""
}

func describeRead(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no such file")
	}
	return describe(err)
}
