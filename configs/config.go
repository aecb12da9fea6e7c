// Package configs owns edged's configuration files: the main TOML file
// (gateway, broker, devices) and the reusable device maps under maps/, their
// loading, ${ENV} substitution and strict decoding with file:line errors.
// A driver's own settings decode into the driver's struct, handed in by the
// caller; this package knows nothing about how anything runs.
package configs

// Config is one loaded and validated main file.
type Config struct {
	Gateway Gateway   `toml:"gateway"`
	Broker  Broker    `toml:"broker"`
	Metrics Metrics   `toml:"metrics"`
	Console Console   `toml:"console"` // the web console, on the metrics port (console.go)
	Devices []*Device `toml:"-"`       // decoded by the loader, driver by driver
	// Upstreams are the cloud brokers values are bridged to ([[upstream]],
	// see upstream.go).
	Upstreams []*Upstream `toml:"-"`

	// File is the path the config was loaded from; Dir its folder, against
	// which relative paths (maps, data_dir) are resolved.
	File string `toml:"-"`
	Dir  string `toml:"-"`

	// Warnings are settings that are valid but probably not what was meant
	// (see Warner), each located like an error; `edged validate` prints
	// them and `edged run` logs them.
	Warnings Errors `toml:"-"`
}

// Gateway holds the settings of the gateway as a whole.
type Gateway struct {
	// ID names this gateway in topics; letters, digits, '-', '_' and '.'.
	ID string `toml:"id"`
	// DataDir holds the buffer, broker state and certificates; default
	// /var/lib/edged, a relative path is relative to the main file's folder.
	DataDir string `toml:"data_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// LogFormat is text (default) or json.
	LogFormat string `toml:"log_format"`
	// MapsDir is where `map = "name"` finds name.toml; default: maps/ next
	// to the main file, a relative path is relative to the main file's
	// folder.
	MapsDir string `toml:"maps_dir"`
	// TopicPrefix is the {prefix} of topic templates; default "edged". One
	// topic level: no '/', '+' or '#', not starting with '$'.
	TopicPrefix string `toml:"topic_prefix"`
	// TopicTemplate renders value topics; default
	// "{prefix}/{gateway}/{device}/{tag}".
	TopicTemplate string `toml:"topic_template"`
	// Publish says what a poll publishes: "tags" (default: one message per
	// tag on its topic), "device" (one message per device per poll on
	// DeviceTopicTemplate with every tag that passed its filter), or "both".
	Publish string `toml:"publish"`
	// DeviceTopicTemplate renders the topic of per-device messages; default
	// "{prefix}/{gateway}/{device}".
	DeviceTopicTemplate string `toml:"device_topic_template"`
	// Format is the payload of each tag's message on the local broker:
	// "json" (default: {"v","ts","q",…}) or "value" (the bare value as
	// text, for the simplest consumers; needs publish = "tags", and a
	// sample of bad quality is not published). See topics.go.
	Format string `toml:"format"`
	// CommandTopicTemplate is where commands (writes over MQTT) arrive, on
	// the local broker and on upstreams with commands = true (there with
	// the upstream's topic_prefix as {prefix}); default
	// "{prefix}/{gateway}/{device}/{tag}/set". {device} and {tag} are
	// required, each a whole level; replies without a Response Topic go
	// to the command topic + "/reply".
	CommandTopicTemplate string `toml:"command_topic_template"`
	// AuditTopic, when set, is where every write attempt's audit line is
	// also published (QoS 1, not retained) on the local broker, and so
	// sent up by every upstream whose topics cover it; {prefix} and
	// {gateway} may be used. Default: none (the audit file only).
	AuditTopic string `toml:"audit_topic"`
	// MemoryLimit is the Go runtime's soft memory limit: the garbage
	// collector works harder as the heap nears it, keeping the resident
	// size small on a 512 MB box. Default "32MiB"; "0" turns it off; the
	// GOMEMLIMIT environment variable, when set, wins.
	MemoryLimit *Size `toml:"memory_limit"`
	// Writes is the master switch of writes to the plant. Not set: only
	// `edged write` (an operator on the box) may write, and only tags with
	// writable = true; false: no write at all, edged write included; true:
	// also the sources whose own commands switch is on (MQTT, upstreams).
	Writes *bool `toml:"writes"`
}

// Metrics holds the local HTTP endpoints: /metrics (Prometheus), /healthz
// and /readyz.
type Metrics struct {
	// Listen is the HTTP address; default "127.0.0.1:9272". Port 0 picks a
	// free port.
	Listen string `toml:"listen"`
	// Disabled turns the endpoints off.
	Disabled bool `toml:"disabled"`
}

// Device is one [[device]] table: the keys every driver shares, and the
// driver's own struct that the rest of the table decoded into.
type Device struct {
	// Name identifies the device in topics and logs: required, unique,
	// letters, digits, '-', '_' and '.'.
	Name string `toml:"name"`
	// Driver is one of Drivers.Names(); required.
	Driver string `toml:"driver"`
	// Map names a device map, maps_dir/NAME.toml, decoded into the
	// settings' MapTarget; only for drivers whose settings are Mapped.
	Map string `toml:"map"`
	// Meta are free keys (meta = { area = "packaging", line = "3" }) that
	// topic templates use as {meta.area}; a tag's own meta wins over its
	// device's. Keys: letters, digits, '-' and '_'; values: no / + # NUL.
	Meta map[string]string `toml:"meta"`

	// Settings is the driver's own struct (as returned by the factory),
	// decoded from this table and, when Map is set, from the map file.
	Settings Settings `toml:"-"`

	// Line is where the table starts in File, for later error messages.
	Line int `toml:"-"`

	// Fingerprint changes whenever the device's table or its map file
	// changes meaningfully; a reload restarts only devices whose fingerprint
	// (or name or driver) changed.
	Fingerprint string `toml:"-"`
}

// Settings is what a driver factory returns: a struct with toml tags that
// the loader decodes the device table into, then validates with Init.
//
// Init is called only when the device table (and its map) decoded without
// error. It may return a *Error, an Errors or an errors.Join of them whose
// Key is relative to the device table (e.g. "tag[3].address", File and Line
// left empty), or, with InMap set, relative to the device's map file (where
// "tag[3]" is the map's fourth [[tag]]): the loader then reports each at
// that key's line (or the line of its closest table when the key is
// absent) in that file. Any other error is reported at the device's
// [[device]] line.
type Settings interface {
	Init() error
}

// Warner is implemented by driver settings that, after a successful Init,
// can point at settings that are valid but probably not what was meant.
// Warnings returns them as *Error like Init's (Key relative to the device
// table or, with InMap, to its map file); the loader locates them and puts
// them in Config.Warnings. They never stop the config from loading.
type Warner interface {
	Warnings() []error
}

// Mapped is implemented by driver settings that can take their tags from a
// device map file (maps/NAME.toml). MapTarget returns a pointer to the
// struct a map file decodes into (typically one holding `[[tag]]`); Init is
// called after both the map and the device table were decoded.
type Mapped interface {
	MapTarget() any
}

// Drivers is how the loader makes a driver's settings struct; cmd/edged
// passes the southbound registry.
type Drivers interface {
	// New returns zero settings for the named driver, or false.
	New(driver string) (Settings, bool)
	// Names lists the known drivers, for error messages.
	Names() []string
}
