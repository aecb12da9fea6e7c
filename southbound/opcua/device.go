package opcua

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
)

// Defaults of an OPC UA device; see sample.toml.
const (
	DefaultSecurityPolicy     = "Basic256Sha256"
	DefaultSecurityMode       = "SignAndEncrypt"
	DefaultPublishingInterval = time.Second
	DefaultSamplingInterval   = 500 * time.Millisecond
	DefaultQueueSize          = 10
	DefaultPollInterval       = time.Second
	DefaultTimeout            = 5 * time.Second
	DefaultKeepalive          = 5 * time.Second
	DefaultMaxNodesPerRequest = 1000
	DefaultPublishRequests    = 4
	// MaxPublishRequests bounds publish_requests: more in flight buys
	// nothing once the round trip is covered, and servers refuse many.
	MaxPublishRequests = 64
)

const (
	// LoginRetry is the wait after the server refused the login (a wrong
	// password, a user certificate it does not accept): many servers lock
	// an account after a few failed logins, which a 30 s retry would
	// reach within minutes. A reload with a corrected config retries at
	// once (the device restarts).
	LoginRetry = 5 * time.Minute
)

//go:embed sample.toml
var sampleTOML string

// SampleConfig is a commented example of an opcua [[device]] table.
func SampleConfig() string { return sampleTOML }

// Policies by their config spelling; the deprecated ones are accepted
// only when written out (the default is Basic256Sha256).
var policies = map[string]string{
	"None":                  ua.SecurityPolicyURINone,
	"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
	"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
	"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
	"Basic128Rsa15":         ua.SecurityPolicyURIBasic128Rsa15,
	"Basic256":              ua.SecurityPolicyURIBasic256,
}

const policyNames = "None, Basic256Sha256 (default), Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss (deprecated: Basic128Rsa15, Basic256)"

var modes = map[string]ua.MessageSecurityMode{
	"None":           ua.MessageSecurityModeNone,
	"Sign":           ua.MessageSecurityModeSign,
	"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
}

// Device is one OPC UA server (driver = "opcua"). The struct is its config:
// the loader decodes the [[device]] table into it, then the map file into
// MapTarget, then calls Init; the host calls SetDataDir before Start.
type Device struct {
	Name   string `toml:"name"`
	Driver string `toml:"driver"`
	Map    string `toml:"map"`

	// Endpoint is the server's URL, opc.tcp://host:port[/path]. edged
	// always dials this URL, whatever host name the server advertises.
	Endpoint string `toml:"endpoint"`
	// SecurityPolicy is one of policyNames; default Basic256Sha256.
	SecurityPolicy string `toml:"security_policy"`
	// SecurityMode is None (only with policy None), Sign or SignAndEncrypt
	// (default).
	SecurityMode string `toml:"security_mode"`
	// Auth is anonymous (default), username or certificate.
	Auth     string `toml:"auth"`
	Username string `toml:"username"`
	// Password is for auth = "username"; write it as "${ENV}" or use
	// PasswordFile, never inline.
	Password string `toml:"password"`
	// PasswordFile holds the password (trailing newline removed); it is
	// read at every connect, so a rotated password needs no restart.
	PasswordFile string `toml:"password_file"`
	// UserCertificate and UserKey (DER or PEM files) log in with
	// auth = "certificate"; unset, the application certificate is used.
	UserCertificate string `toml:"user_certificate"`
	UserKey         string `toml:"user_key"`
	// ApplicationURI names edged to the server and goes into the
	// subjectAltName of the certificate made on first start; default
	// urn:edged:<hostname>.
	ApplicationURI string `toml:"application_uri"`
	// TrustedThumbprints pins server certificates by SHA-1 (40 hex digits)
	// or SHA-256 (64) thumbprint, in addition to <data_dir>/pki/trusted/.
	TrustedThumbprints []string `toml:"trusted_thumbprints"`

	// Mode is subscribe (default: monitored items) or poll (Read every
	// PollInterval).
	Mode               string           `toml:"mode"`
	PublishingInterval configs.Duration `toml:"publishing_interval"`
	SamplingInterval   configs.Duration `toml:"sampling_interval"`
	QueueSize          int              `toml:"queue_size"`
	PollInterval       configs.Duration `toml:"poll_interval"`
	// Timeout bounds connecting and each request.
	Timeout configs.Duration `toml:"timeout"`
	// Keepalive is how often the connection is checked with a small Read;
	// a failed check reconnects.
	Keepalive configs.Duration `toml:"keepalive"`
	// MaxNodesPerRequest caps the nodes of one Read or CreateMonitoredItems
	// call when the server does not publish MaxNodesPerRead /
	// MaxMonitoredItemsPerCall (a smaller published limit wins).
	MaxNodesPerRequest int `toml:"max_nodes_per_request"`
	// PublishRequests is how many PublishRequests a subscription keeps
	// outstanding (default 4): the server answers each with at most
	// MaxNotificationsPerPublish values, so one at a time caps a busy
	// subscription at one message per round trip. Fewer are kept when the
	// server answers BadTooManyPublishRequests.
	PublishRequests int `toml:"publish_requests"`
	// Tag lists the device's own tags; they add to the map's.
	Tag []Tag `toml:"tag"`

	// Logger receives state changes and operator guidance; nil discards.
	Logger *slog.Logger `toml:"-"`

	mapped  DeviceMap
	tags    []Tag
	specs   []*mapping.Spec
	byName  map[string]int
	policy  string // URI
	mode    ua.MessageSecurityMode
	inited  bool
	dataDir string

	minBackoff, maxBackoff time.Duration // tests shorten them
	loginRetry             time.Duration // after a refused login; tests shorten it

	// The host runs the device: Start, Stop, Write, Stats come from it.
	host.Runner

	cliMu sync.Mutex
	cli   *conn // the live session, for Write; nil while offline

	statsMu sync.Mutex
	stats   Stats

	// Owned by the device goroutine (the host's).
	started       context.Context // the Start prepare ran for
	log           *slog.Logger
	sess          *host.Session // the subscription session; nil in poll mode
	samples       []mapping.Sample
	batch         []mapping.Sample
	seqOf         []uint32        // per tag: the sequence number of the message that set it (0: none this session)
	guided        map[string]bool // thumbprints the installer was already told about
	refusedBefore bool            // the last attempt's login was refused
	// rejected is the server certificate refused since the device was last
	// online: once it is trusted, the next failure says what is left.
	rejected *UntrustedError
	// Poll mode: the session and what was resolved when connecting.
	pollConn     *conn
	pollStart    time.Time
	pollOnline   bool
	pollIDs      []*ua.ReadValueID
	pollWhich    []int // pollIDs[j] reads tag pollWhich[j]
	pollErrs     []error
	warnNone     bool  // a password over security_policy = "None"
	translateErr error // set once the server refused TranslateBrowsePathsToNodeIDs
}

// DeviceMap is what a device map file (maps/NAME.toml) decodes into.
type DeviceMap struct {
	Tags []Tag `toml:"tag"`
}

var (
	_ southbound.Driver      = (*Device)(nil)
	_ southbound.Writer      = (*Device)(nil)
	_ southbound.DataDirUser = (*Device)(nil)
	_ host.WritePreparer     = (*Device)(nil)
	_ configs.Mapped         = (*Device)(nil)
)

// New returns a device with the defaults set, ready to decode into
// (security_mode is filled by Init: None with policy None, else
// SignAndEncrypt).
func New() *Device {
	d := &Device{
		SecurityPolicy:     DefaultSecurityPolicy,
		Auth:               "anonymous",
		Mode:               "subscribe",
		PublishingInterval: configs.Duration(DefaultPublishingInterval),
		SamplingInterval:   configs.Duration(DefaultSamplingInterval),
		QueueSize:          DefaultQueueSize,
		PollInterval:       configs.Duration(DefaultPollInterval),
		Timeout:            configs.Duration(DefaultTimeout),
		Keepalive:          configs.Duration(DefaultKeepalive),
		MaxNodesPerRequest: DefaultMaxNodesPerRequest,
		PublishRequests:    DefaultPublishRequests,
	}
	d.Bind(d)
	return d
}

// MapTarget is what the device's map file decodes into.
func (d *Device) MapTarget() any { return &d.mapped }

// Tags lists the device's tags: the map's, then the inline ones.
func (d *Device) Tags() []*mapping.Spec { return d.specs }

// SetDataDir implements southbound.DataDirUser: the PKI lives under
// dir/pki. Called by the host after Init and before Start.
func (d *Device) SetDataDir(dir string) { d.dataDir = dir }

// Stats are running totals since Start, for tests, benchmarks and
// status displays.
type Stats struct {
	Connects        uint64        // sessions that came up
	ReadRequests    uint64        // Read calls of poll mode
	MonitorRequests uint64        // CreateMonitoredItems calls
	Values          uint64        // samples received from the server
	PublishRequests uint64        // PublishRequests sent (subscribe mode)
	Reordered       uint64        // notification messages held until an earlier one arrived
	Stale           uint64        // values dropped: the tag already had one of a later message
	LastConnectTook time.Duration // connect to monitored items created (or first poll)
	Failures        uint64        // failed connects and lost sessions
	LastError       error         // why the last one failed
}

// Counters returns a copy of the device's running totals.
func (d *Device) Counters() Stats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	return d.stats
}

func (d *Device) count(f func(s *Stats)) {
	d.statsMu.Lock()
	f(&d.stats)
	d.statsMu.Unlock()
}

// Init fills defaults and checks the settings and every tag. No I/O: the
// password file and certificates are read when connecting. All problems
// are returned, joined, each keyed to its TOML key.
func (d *Device) Init() error {
	if d.SecurityPolicy == "" {
		d.SecurityPolicy = DefaultSecurityPolicy
	}
	if d.SecurityMode == "" {
		if d.SecurityPolicy == "None" {
			d.SecurityMode = "None"
		} else {
			d.SecurityMode = DefaultSecurityMode
		}
	}
	if d.Auth == "" {
		d.Auth = "anonymous"
	}
	if d.Mode == "" {
		d.Mode = "subscribe"
	}
	def := func(p *configs.Duration, v time.Duration) {
		if *p == 0 {
			*p = configs.Duration(v)
		}
	}
	def(&d.PublishingInterval, DefaultPublishingInterval)
	def(&d.SamplingInterval, DefaultSamplingInterval)
	def(&d.PollInterval, DefaultPollInterval)
	def(&d.Timeout, DefaultTimeout)
	def(&d.Keepalive, DefaultKeepalive)
	if d.QueueSize == 0 {
		d.QueueSize = DefaultQueueSize
	}
	if d.MaxNodesPerRequest == 0 {
		d.MaxNodesPerRequest = DefaultMaxNodesPerRequest
	}
	if d.PublishRequests == 0 {
		d.PublishRequests = DefaultPublishRequests
	}
	if d.minBackoff == 0 {
		d.minBackoff, d.maxBackoff = host.DefaultBackoff.Min, host.DefaultBackoff.Max
	}
	if d.loginRetry == 0 {
		d.loginRetry = LoginRetry
	}

	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, configs.Errorf(key, format, args...)) }
	if u, err := url.Parse(d.Endpoint); d.Endpoint == "" {
		add("endpoint", `required: the server's URL, e.g. endpoint = "opc.tcp://192.168.1.20:4840"`)
	} else if err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
		add("endpoint", `%q is not an OPC UA endpoint: write "opc.tcp://host:port", e.g. "opc.tcp://192.168.1.20:4840"`, configs.RedactLoose(d.Endpoint))
	}
	var ok bool
	if d.policy, ok = policies[d.SecurityPolicy]; !ok {
		add("security_policy", "%q is not a security policy: allowed are %s", d.SecurityPolicy, policyNames)
	}
	if d.mode, ok = modes[d.SecurityMode]; !ok {
		add("security_mode", "%q is not a security mode: allowed are None (only with security_policy = \"None\"), Sign, SignAndEncrypt (default)", d.SecurityMode)
	} else if d.policy != "" && (d.mode == ua.MessageSecurityModeNone) != (d.policy == ua.SecurityPolicyURINone) {
		add("security_mode", "security_mode = %q does not go with security_policy = %q: policy None needs mode None, every other policy Sign or SignAndEncrypt", d.SecurityMode, d.SecurityPolicy)
	}
	switch d.Auth {
	case "anonymous":
		if d.Username != "" || d.Password != "" || d.PasswordFile != "" {
			add("auth", `username and password are set but auth = "anonymous": write auth = "username" to log in with them`)
		}
	case "username":
		if d.Username == "" {
			add("username", `required with auth = "username"`)
		}
		switch {
		case d.Password != "" && d.PasswordFile != "":
			add("password_file", "set either password (e.g. \"${OPCUA_PASSWORD}\") or password_file, not both")
		case d.Password == "" && d.PasswordFile == "":
			add("password", `required with auth = "username": write password = "${ENV_VAR}" or password_file = "/path/to/file"`)
		}
		if d.policy == ua.SecurityPolicyURINone {
			d.warnNone = true
		}
	case "certificate":
		if (d.UserCertificate == "") != (d.UserKey == "") {
			add("user_certificate", "set both user_certificate and user_key, or neither (to log in with edged's application certificate)")
		}
		if d.policy == ua.SecurityPolicyURINone {
			add("auth", `auth = "certificate" needs a secure channel: choose a security_policy other than "None"`)
		}
	default:
		add("auth", "%q is not an auth method: allowed are anonymous (default), username, certificate", d.Auth)
	}
	if d.Auth != "certificate" && (d.UserCertificate != "" || d.UserKey != "") {
		add("user_certificate", `user_certificate and user_key are only for auth = "certificate"`)
	}
	for i, tp := range d.TrustedThumbprints {
		if normThumbprint(tp) == "" {
			add(fmt.Sprintf("trusted_thumbprints[%d]", i), "%q is not a thumbprint: write the SHA-1 (40 hex digits) or SHA-256 (64 hex digits) of the server certificate; ':' and spaces are ignored", tp)
		}
	}
	switch d.Mode {
	case "subscribe", "poll":
	default:
		add("mode", "%q is not a mode: allowed are subscribe (default: the server reports changes) and poll (Read every poll_interval)", d.Mode)
	}
	positive := func(key string, v configs.Duration, lo time.Duration) {
		if v.D() < lo {
			add(key, "%s is too short: at least %v", v, lo)
		}
	}
	positive("publishing_interval", d.PublishingInterval, 10*time.Millisecond)
	positive("poll_interval", d.PollInterval, 10*time.Millisecond)
	positive("timeout", d.Timeout, 100*time.Millisecond)
	positive("keepalive", d.Keepalive, 100*time.Millisecond)
	if d.SamplingInterval < 0 {
		add("sampling_interval", "must be 0 (as fast as the server can) or positive")
	}
	if d.QueueSize < 1 || d.QueueSize > 10000 {
		add("queue_size", "%d: allowed are 1..10000 values queued per node", d.QueueSize)
	}
	if d.MaxNodesPerRequest < 1 || d.MaxNodesPerRequest > 100000 {
		add("max_nodes_per_request", "%d: allowed are 1..100000", d.MaxNodesPerRequest)
	}
	if d.PublishRequests < 1 || d.PublishRequests > MaxPublishRequests {
		add("publish_requests", "%d: allowed are 1..%d PublishRequests in flight (default %d)", d.PublishRequests, MaxPublishRequests, DefaultPublishRequests)
	}

	tags := make([]Tag, 0, len(d.mapped.Tags)+len(d.Tag))
	tags = append(append(tags, d.mapped.Tags...), d.Tag...)
	errs = append(errs, checkTags(tags, len(d.mapped.Tags))...)
	if len(tags) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New(`no tags: add [[device.tag]] tables with name and node (e.g. node = "ns=2;s=Line1.Speed"), or a map = "name" whose maps/name.toml has [[tag]] tables; "edged browse ENDPOINT --toml" prints them`))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	d.tags = tags
	d.specs = make([]*mapping.Spec, len(tags))
	d.byName = make(map[string]int, len(tags))
	for i := range tags {
		d.specs[i] = &tags[i].Spec
		d.byName[tags[i].Name] = i
	}
	d.inited = true
	return nil
}

// normThumbprint returns tp as lower-case hex without separators, or ""
// if it is not 40 or 64 hex digits.
func normThumbprint(tp string) string {
	tp = strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(tp))
	if len(tp) != 40 && len(tp) != 64 {
		return ""
	}
	for _, c := range tp {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return tp
}
