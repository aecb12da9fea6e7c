package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/edged-gw/edged/mapping/topic"
)

// Defaults applied by Load.
const (
	DefaultDataDir       = "/var/lib/edged"
	DefaultLogLevel      = "info"
	DefaultLogFormat     = "text"
	DefaultTopicPrefix   = "edged"
	DefaultTopicTemplate = "{prefix}/{gateway}/{device}/{tag}"
	// DefaultCommandTopicTemplate is where commands arrive.
	DefaultCommandTopicTemplate = "{prefix}/{gateway}/{device}/{tag}/set"
	DefaultBrokerListen         = "127.0.0.1:1883"
)

// Load reads the main configuration file at path and the device maps its
// devices name, and returns the configuration with defaults filled in and
// every value checked, or a nil *Config and an Errors listing every problem
// found, each with file, line and key path. It never returns both, nor an
// error of another type.
//
// What Load does, in order:
//   - replaces ${NAME} with the environment variable NAME (an unset one is
//     an error), ${NAME:-default} with default when NAME is unset or
//     empty, and $${ with a literal "${"; comments are left alone, and
//     inside quoted strings the value is escaped so it stays one string;
//   - parses the TOML (a syntax error ends the loading of that file);
//   - decodes [gateway] and [broker], and each [[device]] first into Device
//     (name, driver, map), then into the settings struct drivers.New makes
//     for its driver, then, for `map = "NAME"`, decodes NAME.toml from the
//     maps folder into the settings' MapTarget, and finally calls the
//     settings' Init. Each key is decoded on its own, so one bad value does
//     not hide the next (a value nested inside an array or table reports
//     only its first problem);
//   - reports every key no struct takes, with the keys allowed there;
//   - checks and defaults the common settings: see Gateway, Broker, Device;
//   - runs the checks given, which span devices (see Check), over the
//     devices that loaded without error, even when other problems were
//     found: every problem is reported in one Load.
//
// After Load, Config.File is path as given, Config.Dir its folder as an
// absolute path, Gateway.DataDir and Gateway.MapsDir are absolute paths
// (relative ones resolved against Config.Dir), and Broker.Retain is never
// nil.
func Load(path string, drivers Drivers, checks ...Check) (*Config, error) {
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	l := &loader{
		env:      os.LookupEnv,
		readFile: os.ReadFile,
		listMaps: listMapsDir,
		drivers:  drivers,
		checks:   checks,
	}
	return l.load(path, dir)
}

// listMapsDir lists the map names (file names without .toml) in dir.
func listMapsDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".toml"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	return names, nil
}

// loader holds one Load's inputs (injected for tests) and its findings.
type loader struct {
	env      func(string) (string, bool)
	readFile func(path string) ([]byte, error)
	listMaps func(dir string) ([]string, error)
	drivers  Drivers
	checks   []Check

	errs     Errors
	failed   map[string]bool     // key paths (main file) whose value did not decode
	maps     map[string]*mapFile // by path
	settings map[int]Settings    // device index → its driver's settings

	tmpl, devTmpl *topic.Template // [gateway] topic templates, nil if they did not parse
	topicDevs     []topicDevice   // devices with a known driver, for checkTopics
	tagTopics     []string        // the tags' topics checkTopics rendered
}

// mapFile is a map file read once for all devices that name it.
type mapFile struct {
	path    string
	text    []byte // after ${ENV} substitution; nil if unusable
	idx     *lineIndex
	readErr error // as returned by readFile

	tags     []topicTag // its [[tag]]s as checkTopics reads them
	tagsRead bool
}

// fileSchema is the layout of the main file, for finding unknown keys; the
// element type of device is replaced device by device.
type fileSchema struct {
	Gateway  Gateway          `toml:"gateway"`
	Broker   Broker           `toml:"broker"`
	Metrics  Metrics          `toml:"metrics"`
	Console  Console          `toml:"console"`
	Device   []map[string]any `toml:"device"`
	Upstream []Upstream       `toml:"upstream"`
}

// source is one parsed file.
type source struct {
	file string
	text []byte
	idx  *lineIndex
	md   *toml.MetaData
}

func (l *loader) add(file string, line int, key, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// at reports a problem about the key p of src, at its line or, when the key
// is not written, at the line of the table it belongs in.
func (l *loader) at(src *source, p keyPath, format string, args ...any) {
	l.add(src.file, src.idx.lineOf(p), p.String(), format, args...)
}

// read reads and substitutes a file; problems are reported.
func (l *loader) read(file string) ([]byte, error) {
	raw, err := l.readFile(file)
	if err != nil {
		return nil, err
	}
	text, errs := substituteEnv(file, raw, l.env)
	l.errs = append(l.errs, errs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return text, nil
}

// parse parses text into its top-level keys, each kept undecoded so that a
// bad value in one section cannot stop the decoding of another.
func (l *loader) parse(file string, text []byte) (*source, map[string]toml.Primitive, bool) {
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(text), &top)
	if err != nil {
		le := splitLibraryError(err)
		l.add(file, le.line, "", "%s", le.msg)
		return nil, nil, false
	}
	return &source{file: file, text: text, idx: buildLineIndex(text), md: &md}, top, true
}

func (l *loader) load(file, dir string) (*Config, error) {
	l.failed = map[string]bool{}
	l.maps = map[string]*mapFile{}
	l.settings = map[int]Settings{}
	cfg := &Config{File: file, Dir: dir}

	text, err := l.read(file)
	if err != nil {
		if len(l.errs) == 0 {
			l.add(file, 0, "", "cannot read the configuration: %v", describe(err))
		}
		return nil, l.errs.sorted()
	}
	src, top, ok := l.parse(file, text)
	if !ok {
		return nil, l.errs.sorted()
	}

	if prim, ok := pick(top, "gateway"); ok {
		l.decode(src, keyPath{{key: "gateway"}}, prim, &cfg.Gateway)
	}
	if prim, ok := pick(top, "broker"); ok {
		l.decode(src, keyPath{{key: "broker"}}, prim, &cfg.Broker)
	}
	if prim, ok := pick(top, "metrics"); ok {
		l.decode(src, keyPath{{key: "metrics"}}, prim, &cfg.Metrics)
	}
	l.checkGateway(src, cfg)
	l.checkPayload(src, cfg)
	l.checkBroker(src, cfg)
	l.checkMetrics(src, cfg)
	if prim, ok := pick(top, "console"); ok {
		l.decode(src, keyPath{{key: "console"}}, prim, &cfg.Console)
	}
	l.checkConsole(src, cfg)
	if prim, ok := pick(top, "upstream"); ok {
		l.upstreams(src, cfg, prim)
	}

	var devices []toml.Primitive
	if prim, ok := pick(top, "device"); ok {
		if err := src.md.PrimitiveDecode(prim, &devices); err != nil {
			l.at(src, keyPath{{key: "device"}}, "write each device as a [[device]] table (with name, driver and the driver's settings)")
		}
	}
	names := map[string]int{} // device name → index
	var clean []*checkedDevice
	for i, prim := range devices {
		d, c := l.device(src, cfg, i, prim, names)
		if d != nil {
			cfg.Devices = append(cfg.Devices, d)
		}
		if c != nil {
			clean = append(clean, c)
		}
	}
	l.runChecks(src, cfg, clean, l.checks)

	l.checkTopics(src, cfg)
	l.warnUnbridged(src, cfg)
	l.unknownKeys(src)
	if len(l.errs) > 0 {
		return nil, l.errs.sorted()
	}
	if len(cfg.Warnings) > 0 {
		cfg.Warnings = cfg.Warnings.sorted()
	}
	return cfg, nil
}

// pick returns the top-level table name, matched as the decoder matches
// struct fields (exactly, else ignoring case).
func pick(top map[string]toml.Primitive, name string) (toml.Primitive, bool) {
	if p, ok := top[name]; ok {
		return p, true
	}
	for k, p := range top {
		if strings.EqualFold(k, name) {
			return p, true
		}
	}
	return toml.Primitive{}, false
}

// decode decodes the table prim (whose indexed path is base) into target,
// key by key when target is a plain struct, and reports each value that
// does not decode. It reports whether everything decoded.
func (l *loader) decode(src *source, base keyPath, prim toml.Primitive, target any) bool {
	errs := decodeTable(src.md, prim, target)
	for _, err := range errs {
		l.decodeError(src, base, reflect.TypeOf(target), err)
	}
	return len(errs) == 0
}

// decodeTable decodes prim into target. For a struct target, each key is
// decoded into its field on its own and every failure returned; otherwise
// the first failure.
func decodeTable(md *toml.MetaData, prim toml.Primitive, target any) []error {
	rv := reflect.ValueOf(target)
	s := schemaOf(rv.Type())
	var tbl map[string]toml.Primitive
	if rv.Kind() != reflect.Pointer || rv.IsNil() || s.kind != table || md.PrimitiveDecode(prim, &tbl) != nil {
		if err := md.PrimitiveDecode(prim, target); err != nil {
			return []error{err}
		}
		return nil
	}
	sv := rv
	for sv.Kind() == reflect.Pointer {
		if sv.IsNil() {
			sv.Set(reflect.New(sv.Type().Elem()))
		}
		sv = sv.Elem()
	}
	type job struct {
		prim  toml.Primitive
		field reflect.Value
	}
	var jobs []job
	for key, p := range tbl {
		f, ok := lookupField(s.fields, key)
		if !ok {
			continue // an unknown key; reported from the line index
		}
		fv, ok := settableField(sv, f.index)
		if !ok {
			// Cannot reach the field on its own: decode as a whole.
			if err := md.PrimitiveDecode(prim, target); err != nil {
				return []error{err}
			}
			return nil
		}
		jobs = append(jobs, job{p, fv})
	}
	var errs []error
	for _, j := range jobs {
		if err := md.PrimitiveDecode(j.prim, j.field.Addr().Interface()); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// settableField returns the field at index, allocating embedded pointers on
// the way, or false if it cannot be set.
func settableField(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, v.CanSet() && v.CanAddr()
}

// decodeError reports a decoder error for the table at base, decoded into
// a value of type t.
func (l *loader) decodeError(src *source, base keyPath, t reflect.Type, err error) {
	le := splitLibraryError(err)
	p := base
	if len(le.key) > len(base) {
		p = locateError(src.text, base, t, le.key[len(base):])
	}
	l.failed[p.String()] = true
	line := src.idx.line(p.String())
	if line == 0 {
		line = le.line // the decoder's line is right when the key occurs once
	}
	if line == 0 {
		line = src.idx.lineOf(p)
	}
	l.add(src.file, line, p.String(), "%s", le.msg)
}

const nameChars = "letters, digits, '-', '_' and '.'"

// badNameChar returns the first character of s that may not appear in a
// gateway ID or device name (they become MQTT topic levels), or "".
func badNameChar(s string) string {
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return strconv.QuoteRune(r)
		}
	}
	return ""
}

func (l *loader) checkGateway(src *source, cfg *Config) {
	g := &cfg.Gateway
	key := func(k string) keyPath { return keyPath{{key: "gateway"}, {key: k}} }
	ok := func(k string) bool { return !l.failed[key(k).String()] }

	switch {
	case !ok("id"):
	case g.ID == "":
		l.at(src, key("id"), `required: name this gateway, e.g. id = "plant1-line3" (%s; it becomes part of every MQTT topic)`, nameChars)
	case badNameChar(g.ID) != "":
		l.at(src, key("id"), "%q contains %s; use only %s (it becomes part of every MQTT topic)", g.ID, badNameChar(g.ID), nameChars)
	}

	g.DataDir = resolve(cfg.Dir, g.DataDir, DefaultDataDir)
	g.MapsDir = resolve(cfg.Dir, g.MapsDir, "maps")

	if g.LogLevel == "" {
		g.LogLevel = DefaultLogLevel
	}
	if ok("log_level") && !slices.Contains([]string{"debug", "info", "warn", "error"}, g.LogLevel) {
		l.at(src, key("log_level"), "%q is not a log level; use one of: debug, info, warn, error", g.LogLevel)
	}
	if g.LogFormat == "" {
		g.LogFormat = DefaultLogFormat
	}
	if ok("log_format") && g.LogFormat != "text" && g.LogFormat != "json" {
		l.at(src, key("log_format"), "%q is not a log format; use text or json", g.LogFormat)
	}
	if g.TopicPrefix == "" {
		g.TopicPrefix = DefaultTopicPrefix
	}
	if ok("topic_prefix") {
		if i := strings.IndexAny(g.TopicPrefix, "/+#\x00"); i >= 0 {
			l.at(src, key("topic_prefix"), "%q contains %q; the prefix is one topic level: no '/', and no MQTT wildcards '+' or '#'", g.TopicPrefix, g.TopicPrefix[i])
		} else if strings.HasPrefix(g.TopicPrefix, "$") {
			l.at(src, key("topic_prefix"), "%q starts with '$', which MQTT reserves for broker topics ($SYS); choose a prefix without it", g.TopicPrefix)
		}
	}
	if g.TopicTemplate == "" {
		g.TopicTemplate = DefaultTopicTemplate
	}
	if g.CommandTopicTemplate == "" {
		g.CommandTopicTemplate = DefaultCommandTopicTemplate
	} else if ok("command_topic_template") {
		if msg := checkTopicTemplate(g.CommandTopicTemplate, "{prefix}, {gateway}, {device}, {tag}", "{device}", "{tag}"); msg != "" {
			l.at(src, key("command_topic_template"), "%q: %s; e.g. %q", g.CommandTopicTemplate, msg, DefaultCommandTopicTemplate)
		}
	}
	if g.AuditTopic != "" && ok("audit_topic") {
		if msg := checkTopicTemplate(g.AuditTopic, "{prefix}, {gateway}"); msg != "" {
			l.at(src, key("audit_topic"), "%q: %s; e.g. \"{prefix}/{gateway}/audit\"", g.AuditTopic, msg)
		}
	}
}

// checkTopicTemplate says what is wrong with a topic template whose
// placeholders may be those listed in allowed and must include each of
// whole, alone in its level ("" when nothing is). It is the part of
// mapping.ParseTemplate's rules a config can be held to at its line.
func checkTopicTemplate(s, allowed string, whole ...string) string {
	if strings.HasPrefix(s, "$") {
		return "a topic must not start with $ (MQTT reserves it for broker topics such as $SYS)"
	}
	if i := strings.IndexAny(s, "+#\x00"); i >= 0 {
		return "the wildcards + and # and NUL are not allowed in a topic"
	}
	levels := strings.Split(s, "/")
	found := map[string]bool{}
	for _, lv := range levels {
		if lv == "" {
			return "empty level: levels between / must not be empty, and the topic must not start or end with /"
		}
		rest := lv
		for rest != "" {
			open, close := strings.IndexByte(rest, '{'), strings.IndexByte(rest, '}')
			if open < 0 && close < 0 {
				break
			}
			if open < 0 || close < open {
				return "unbalanced braces; placeholders are " + allowed
			}
			ph := rest[open : close+1]
			if !strings.Contains(allowed, ph) || strings.Count(ph, "{") != 1 {
				return "unknown placeholder " + ph + "; allowed are " + allowed
			}
			for _, w := range whole {
				if ph == w && lv != w {
					return w + " must be a whole level (e.g. /" + w + "/), so that a topic tells which it is"
				}
			}
			found[ph] = true
			rest = rest[close+1:]
		}
	}
	for _, w := range whole {
		if !found[w] {
			return w + " is required"
		}
	}
	return ""
}

// resolve returns p, or def when p is empty, made absolute against dir if
// relative.
func resolve(dir, p, def string) string {
	if p == "" {
		p = def
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p)
}

func (l *loader) checkMetrics(src *source, cfg *Config) {
	p := keyPath{{key: "metrics"}, {key: "listen"}}
	if cfg.Metrics.Listen == "" || l.failed[p.String()] {
		return // the default applies
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || strings.ContainsAny(host, " /") {
		l.at(src, p, `%q is not host:port; write e.g. "127.0.0.1:9272" (this machine only) or "0.0.0.0:9272" (all interfaces), port 0-65535 (0: any free port)`, cfg.Metrics.Listen)
	}
}

// deviceSchema is what the device table of a driver accepts: the common
// keys, then the driver's.
func deviceSchema(settings Settings) schema {
	if settings == nil {
		return schema{kind: anyKeys} // unknown driver: reported once, not per key
	}
	fields := fieldsOf(reflect.TypeFor[Device]())
	for _, f := range schemaOf(reflect.TypeOf(settings)).fields {
		if _, dup := lookupField(fields, f.name); !dup {
			fields = append(fields, f)
		}
	}
	return schema{kind: table, fields: fields}
}

// device decodes and checks device i; it returns nil if the device's driver
// is unknown, and the device as the cross-device checks see it if it
// loaded without error.
//
// Init runs even when some keys did not decode, so that a bad value of one
// key does not hide the problems of the others; what Init then says about
// a key that did not decode (or about a key of the same name at the top of
// the table: tag[3] when tag[1].type failed) is dropped, as are its
// problems without a key, which may come from a value that is missing only
// because it did not decode.
func (l *loader) device(src *source, cfg *Config, i int, prim toml.Primitive, names map[string]int) (*Device, *checkedDevice) {
	base := keyPath{{key: "device", idx: []int{i}}}
	key := func(k string) keyPath { return base.with(k) }
	errsBefore := len(l.errs)
	d := &Device{Line: src.idx.lineOf(base)}
	l.decode(src, base, prim, d)

	switch {
	case l.failed[key("name").String()]:
	case d.Name == "":
		l.at(src, key("name"), `required: name the device, e.g. name = "boiler1" (%s; it becomes an MQTT topic level)`, nameChars)
	case badNameChar(d.Name) != "":
		l.at(src, key("name"), "%q contains %s; use only %s (it becomes an MQTT topic level)", d.Name, badNameChar(d.Name), nameChars)
	default:
		if j, dup := names[d.Name]; dup {
			first := keyPath{{key: "device", idx: []int{j}}}
			l.at(src, key("name"), "%q is already the name of device[%d] (line %d); device names must be unique", d.Name, j, src.idx.lineOf(first))
		} else {
			names[d.Name] = i
		}
	}

	known := sortedNames(l.drivers.Names())
	switch {
	case l.failed[key("driver").String()]:
		return nil, nil
	case d.Driver == "":
		l.at(src, key("driver"), "required: say which driver talks to this device; known drivers: %s", strings.Join(known, ", "))
		return nil, nil
	}
	settings, ok := l.drivers.New(d.Driver)
	if !ok || settings == nil {
		msg := fmt.Sprintf("unknown driver %q; known drivers: %s", d.Driver, strings.Join(known, ", "))
		if s := closest(d.Driver, known); s != "" {
			msg = fmt.Sprintf("unknown driver %q; did you mean %s? known drivers: %s", d.Driver, s, strings.Join(known, ", "))
		}
		l.at(src, key("driver"), "%s", msg)
		return nil, nil
	}
	d.Settings = settings
	l.settings[i] = settings
	l.decode(src, base, prim, settings)

	tableErrs := len(l.errs)
	var mf *mapFile
	if d.Map != "" && !l.failed[key("map").String()] {
		mf = l.deviceMap(src, cfg, key("map"), d)
	}
	mapBad := len(l.errs) > tableErrs || (d.Map != "" && mf == nil)
	bad := l.failedUnder(base) // top-level keys of the table that did not decode
	if l.failed[base.String()] {
		// The table did not decode as a whole: nothing to check.
	} else if err := settings.Init(); err != nil {
		if len(bad) > 0 || mapBad {
			err = dropUnsure(err, bad, mapBad)
		}
		if err != nil {
			l.initError(src, base, d, mf, err)
		}
	}
	// Templates and meta are checked for every device; topics are claimed
	// (collisions) only for devices without other errors.
	l.topicDevs = append(l.topicDevs, topicDevice{d: d, base: base, prim: prim, mf: mf, clean: len(l.errs) == errsBefore})
	d.Fingerprint = fingerprint(src, prim, mf)
	if len(l.errs) > errsBefore {
		return d, nil
	}
	if w, ok := settings.(Warner); ok {
		l.locateWarnings(src, cfg, base, d, mf, w.Warnings())
	}
	return d, &checkedDevice{d: d, base: base, mf: mf}
}

// locateWarnings locates warnings as Init's errors are, and puts them in
// cfg.Warnings.
func (l *loader) locateWarnings(src *source, cfg *Config, base keyPath, d *Device, mf *mapFile, warnings []error) {
	errs := l.errs
	l.errs = nil
	for _, e := range warnings {
		l.initError(src, base, d, mf, e)
	}
	cfg.Warnings = append(cfg.Warnings, l.errs...)
	l.errs = errs
}

// failedUnder returns the first keys below base (without indexes) of the
// values that did not decode: "tag" for device[0].tag[1].type.
func (l *loader) failedUnder(base keyPath) map[string]bool {
	prefix := base.String() + "."
	var bad map[string]bool
	for k := range l.failed {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexAny(rest, ".["); i >= 0 {
			rest = rest[:i]
		}
		if bad == nil {
			bad = map[string]bool{}
		}
		bad[rest] = true
	}
	return bad
}

// dropUnsure removes from Init's err what may only be a consequence of
// values that did not decode: problems of the keys bad (at the top of the
// device table) or below them, problems without a key and, when the map
// file had problems, every problem in the map.
func dropUnsure(err error, bad map[string]bool, mapBad bool) error {
	var kept []error
	for _, e := range leafErrors(err) {
		var ce *Error
		if !errors.As(e, &ce) || ce.File != "" || ce.Key == "" || (ce.InMap && mapBad) {
			continue
		}
		first := ce.Key
		if i := strings.IndexAny(first, ".["); i >= 0 {
			first = first[:i]
		}
		if !ce.InMap && bad[first] {
			continue
		}
		kept = append(kept, e)
	}
	return errors.Join(kept...)
}

// fingerprint identifies what a device was configured from: its table as
// decoded (so comments and key order do not count) and its map file's text.
func fingerprint(src *source, prim toml.Primitive, mf *mapFile) string {
	var table map[string]any
	_ = src.md.PrimitiveDecode(prim, &table)
	b, _ := json.Marshal(table) // map keys are sorted
	h := sha256.New()
	h.Write(b)
	if mf != nil {
		h.Write([]byte{0})
		h.Write(mf.text)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// deviceMap decodes the device's map file into its settings' MapTarget. It
// returns the map file if it was read.
func (l *loader) deviceMap(src *source, cfg *Config, p keyPath, d *Device) *mapFile {
	mapped, ok := d.Settings.(Mapped)
	if !ok {
		l.at(src, p, "driver %q takes no map; remove map = %q and list the device's settings in its table", d.Driver, d.Map)
		return nil
	}
	name := d.Map
	if n, ok := strings.CutSuffix(name, ".toml"); ok {
		l.at(src, p, "write the map's name without .toml: map = %q", n)
		return nil
	}
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		l.at(src, p, "%q is not a map name; write the name of a file in %s without .toml, e.g. map = \"pm5560\" for pm5560.toml", name, cfg.Gateway.MapsDir)
		return nil
	}
	path := filepath.Join(cfg.Gateway.MapsDir, name+".toml")
	mf := l.maps[path]
	if mf == nil {
		mf = &mapFile{path: path}
		l.maps[path] = mf
		raw, err := l.readFile(path)
		if err != nil {
			mf.readErr = err
		} else if text, errs := substituteEnv(path, raw, l.env); len(errs) > 0 {
			l.errs = append(l.errs, errs...)
		} else {
			mf.text = text
		}
	}
	if mf.readErr != nil {
		l.mapReadError(src, p, name, mf)
		return nil
	}
	if mf.text == nil {
		return nil
	}
	msrc, top, ok := l.parse(path, mf.text)
	if !ok {
		return nil
	}
	mf.idx = msrc.idx
	target := mapped.MapTarget()
	rv := reflect.ValueOf(target)
	tt := rv.Type()
	if s := schemaOf(tt); s.kind == table && rv.Kind() == reflect.Pointer && !rv.IsNil() {
		sv := rv.Elem()
		for key, prim := range top {
			f, ok := lookupField(s.fields, key)
			if !ok {
				continue
			}
			fv, ok := settableField(sv, f.index)
			if !ok {
				continue
			}
			if err := msrc.md.PrimitiveDecode(prim, fv.Addr().Interface()); err != nil {
				l.decodeError(msrc, nil, tt, err)
			}
		}
	} else if _, err := toml.Decode(string(mf.text), target); err != nil {
		l.decodeError(msrc, nil, tt, err)
	}
	for _, u := range findUnknownKeys(msrc.idx, tt, noOverride) {
		l.add(path, u.line, u.path.String(), "%s", unknownKeyMsg(u.path[len(u.path)-1].key, u.allowed))
	}
	return mf
}

func noOverride(keyPath) (schema, bool) { return schema{}, false }

func (l *loader) mapReadError(src *source, p keyPath, name string, mf *mapFile) {
	dir := filepath.Dir(mf.path)
	if !errors.Is(mf.readErr, fs.ErrNotExist) {
		l.at(src, p, "map %q: cannot read %s: %v", name, mf.path, describe(mf.readErr))
		return
	}
	have, err := l.listMaps(dir)
	slices.Sort(have)
	var there string
	switch {
	case err != nil && errors.Is(err, fs.ErrNotExist):
		there = fmt.Sprintf("the folder %s does not exist (set gateway.maps_dir if the maps are elsewhere)", dir)
	case len(have) == 0:
		there = fmt.Sprintf("%s has no maps (*.toml files)", dir)
	default:
		there = fmt.Sprintf("maps in %s: %s", dir, strings.Join(have, ", "))
		if s := closest(name, have); s != "" {
			there = fmt.Sprintf("did you mean %s? %s", s, there)
		}
	}
	l.at(src, p, "map %q not found: %s does not exist; %s", name, mf.path, there)
}

// initError reports what the driver's Init said. Init may return *Error
// (or Errors, or errors.Join of them) with File empty and Key relative to
// the device table, e.g. "tag[3].address", or, with InMap, relative to the
// device's map file: it is then reported in that file at that key's line,
// or, when the key is not written, at the line of the nearest table that
// is (the [[device.tag]] or [[tag]] header for a missing tag key, else the
// device). Any other error is reported at the device table.
func (l *loader) initError(src *source, base keyPath, d *Device, mf *mapFile, err error) {
	for _, e := range leafErrors(err) {
		var ce *Error
		switch {
		case !errors.As(e, &ce) || ce.File != "":
			l.add(src.file, d.Line, base.String(), "device %q: %v", d.Name, e)
		case ce.InMap && (mf == nil || mf.idx == nil):
			// A driver's mistake: the device has no map. Keep the key in
			// the message rather than lose it.
			l.add(src.file, d.Line, base.String(), "device %q: map %s: %s", d.Name, ce.Key, ce.Msg)
		case ce.InMap:
			l.add(mf.path, mf.idx.lineOfKey(ce.Key), ce.Key, "device %q: %s", d.Name, ce.Msg)
		case ce.Key == "":
			l.add(src.file, d.Line, base.String(), "device %q: %s", d.Name, ce.Msg)
		default:
			full := base.String() + "." + ce.Key
			line := src.idx.lineOfKey(full)
			if line == 0 {
				line = d.Line
			}
			l.add(src.file, line, full, "device %q: %s", d.Name, ce.Msg)
		}
	}
}

// describe returns what went wrong with a file, without the path the
// message already names.
func describe(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// leafErrors flattens errors.Join and Errors.
func leafErrors(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// unknownKeys reports the keys of the main file that no struct takes. Keys
// the decoder left undecoded but the line index did not see (which would be
// a bug of the index) are reported without a line rather than dropped.
func (l *loader) unknownKeys(src *source) {
	override := func(p keyPath) (schema, bool) {
		if len(p) != 1 || p[0].key != "device" || len(p[0].idx) != 1 {
			return schema{}, false
		}
		return deviceSchema(l.settings[p[0].idx[0]]), true
	}
	top := fieldsOf(reflect.TypeFor[fileSchema]())
	for _, u := range findUnknownKeys(src.idx, reflect.TypeFor[fileSchema](), override) {
		key := u.path[len(u.path)-1].key
		msg := unknownKeyMsg(key, u.allowed)
		if _, ok := lookupField(top, key); ok && len(u.path) > 1 {
			msg += fmt.Sprintf(" (keys after a [table] header belong to that table: move %s above the first header, or start it with its own [%s] header)", key, key)
		}
		l.add(src.file, u.line, u.path.String(), "%s", msg)
	}

	seen := map[string]bool{}
	for _, e := range src.idx.entries {
		seen[strings.Join(e.path.keys(), "\x00")] = true
	}
	for _, k := range src.md.Undecoded() {
		if !seen[strings.Join(k, "\x00")] {
			l.add(src.file, 0, k.String(), "unknown key")
		}
	}
}
