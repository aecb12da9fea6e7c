package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantErr is one expected problem; msg is a distinctive part of Msg.
type wantErr struct {
	file string
	line int
	key  string
	msg  string
}

func checkErrors(t *testing.T, err error, want []wantErr) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	for _, e := range es {
		t.Logf("got: %s", e)
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d", len(es), len(want))
	}
	for i, w := range want {
		e := es[i]
		if w.file == "" {
			w.file = testMain
		}
		if e.File != w.file || e.Line != w.line || e.Key != w.key || !strings.Contains(e.Msg, w.msg) {
			t.Errorf("error %d = %s\nwant %s:%d: %s: …%s…", i, e, w.file, w.line, w.key, w.msg)
		}
	}
}

const validMap = `# Schneider PM5560 power meter
model = "PM5560"

[[tag]]
name = "voltage"
address = 3000

[[tag]]
name = "current"
address = 3002
`

func TestLoadValid(t *testing.T) {
	files := memFS{
		testMain: lines(
			`# plant 1, line 3`,
			`[gateway]`,
			`id = "plant1-gw"`,
			`data_dir = "data"`,
			`log_level = "debug"`,
			``,
			`[broker]`,
			`listen = "0.0.0.0:1883"`,
			`allow_anonymous = true`,
			`[[device]]`,
			`name = "meter1"`,
			`driver = "fake"`,
			`map = "pm5560"`,
			`host = "${PLC_HOST}"`,
			`poll_interval = "500ms"`,
			`timeout = "2s"`,
			``,
			`[[device.tag]]`,
			`name = "local_temp"`,
			`address = 7`,
			``,
			`[[device]]`,
			`name = "pump"`,
			`driver = "plain"`,
			`port = 502`,
		),
		testMaps + "pm5560.toml": validMap,
	}
	cfg, err := loadMem(files, map[string]string{"PLC_HOST": "10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if g.ID != "plant1-gw" || g.DataDir != "/etc/edged/data" || g.MapsDir != "/etc/edged/maps" ||
		g.LogLevel != "debug" || g.LogFormat != "text" || g.TopicPrefix != "edged" ||
		g.TopicTemplate != "{prefix}/{gateway}/{device}/{tag}" {
		t.Errorf("gateway = %+v", g)
	}
	if cfg.Broker.Listen != "0.0.0.0:1883" || cfg.Broker.Retain == nil || !*cfg.Broker.Retain {
		t.Errorf("broker = %+v", cfg.Broker)
	}
	if cfg.File != testMain || cfg.Dir != testDir {
		t.Errorf("File, Dir = %q, %q", cfg.File, cfg.Dir)
	}
	if len(cfg.Devices) != 2 {
		t.Fatalf("%d devices", len(cfg.Devices))
	}
	d := cfg.Devices[0]
	if d.Name != "meter1" || d.Driver != "fake" || d.Map != "pm5560" || d.Line != 10 {
		t.Errorf("device 0 = %+v", d)
	}
	s := d.Settings.(*fakeSettings)
	if s.Host != "10.0.0.5" || s.PollInterval.D() != 500*time.Millisecond || s.Timeout.D() != 2*time.Second {
		t.Errorf("settings = %+v", s)
	}
	if s.fromMap.Model != "PM5560" || len(s.fromMap.Tags) != 2 || !reflect.DeepEqual(s.fromMap.Tags[1], fakeTag{Name: "current", Address: 3002}) {
		t.Errorf("map = %+v", s.fromMap)
	}
	if len(s.Tags) != 1 || !reflect.DeepEqual(s.Tags[0], fakeTag{Name: "local_temp", Address: 7}) {
		t.Errorf("tags = %+v", s.Tags)
	}
	if p := cfg.Devices[1]; p.Line != 22 || p.Settings.(*plainSettings).Port != 502 {
		t.Errorf("device 1 = %+v", p)
	}
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := loadMem(memFS{testMain: "[gateway]\nid = \"gw\"\n"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, b := cfg.Gateway, cfg.Broker
	if g.DataDir != "/var/lib/edged" || g.LogLevel != "info" || g.LogFormat != "text" ||
		g.TopicPrefix != "edged" || g.MapsDir != "/etc/edged/maps" ||
		b.Listen != "127.0.0.1:1883" || !*b.Retain || len(cfg.Devices) != 0 {
		t.Errorf("defaults: %+v %+v", g, b)
	}
}

func TestLoadEnv(t *testing.T) {
	main := lines(
		`[gateway]`,
		`id = "${GW_ID:-gw-default}"`,
		`data_dir = "/srv/$${literal}"`,
		`# a comment may mention ${UNSET_IN_COMMENT}`,
		`[[device]]`,
		`name = "m"`,
		`driver = "fake"`,
		`host = "${PASSWORDISH}"`,
		`retries = ${RETRIES}`,
	)
	cfg, err := loadMem(memFS{testMain: main}, map[string]string{"PASSWORDISH": `a"b\c`, "RETRIES": "3"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.ID != "gw-default" {
		t.Errorf("default: id = %q", cfg.Gateway.ID)
	}
	if cfg.Gateway.DataDir != "/srv/${literal}" {
		t.Errorf("$${: data_dir = %q", cfg.Gateway.DataDir)
	}
	s := cfg.Devices[0].Settings.(*fakeSettings)
	if s.Host != `a"b\c` || s.Retries != 3 {
		t.Errorf("escaped value: host = %q, retries = %d", s.Host, s.Retries)
	}
}

func TestLoadErrors(t *testing.T) {
	gw := "[gateway]\nid = \"gw\"\n" // two lines
	tests := []struct {
		name  string
		files memFS
		env   map[string]string
		want  []wantErr
	}{
		{
			name:  "unknown top-level key",
			files: memFS{testMain: gw + lines(`[brokr]`, `listen = "x"`)},
			want:  []wantErr{{line: 3, key: "brokr", msg: "unknown key; did you mean broker?; allowed here: gateway, broker, metrics, console, device, upstream"}},
		},
		{
			name:  "unknown key in gateway",
			files: memFS{testMain: gw + lines(`log_levle = "debug"`)},
			want:  []wantErr{{line: 3, key: "gateway.log_levle", msg: "did you mean log_level?; allowed here: id, data_dir, log_level, log_format, maps_dir, topic_prefix, topic_template"}},
		},
		{
			name: "command and audit topics",
			files: memFS{testMain: gw + lines(
				`command_topic_template = "{prefix}/{gateway}/{device}-{tag}/set"`, // 3
				`audit_topic = "{prefix}/{gateway}/{device}/audit"`,                // 4
			)},
			want: []wantErr{
				{line: 3, key: "gateway.command_topic_template", msg: `{device} must be a whole level (e.g. /{device}/), so that a topic tells which it is; e.g. "{prefix}/{gateway}/{device}/{tag}/set"`},
				{line: 4, key: "gateway.audit_topic", msg: "unknown placeholder {device}; allowed are {prefix}, {gateway}"},
			},
		},
		{
			name:  "command topic without its tag",
			files: memFS{testMain: gw + lines(`command_topic_template = "cmd/{gateway}/{device}/+"`)},
			want:  []wantErr{{line: 3, key: "gateway.command_topic_template", msg: "the wildcards + and # and NUL are not allowed in a topic"}},
		},
		{
			name:  "command topic needs the tag",
			files: memFS{testMain: gw + lines(`command_topic_template = "cmd/{gateway}/{device}"`)},
			want:  []wantErr{{line: 3, key: "gateway.command_topic_template", msg: "{tag} is required"}},
		},
		{
			name: "unknown keys in a device and its tag",
			files: memFS{testMain: gw + lines(
				`[[device]]`, // 3
				`name = "a"`,
				`driver = "fake"`,
				`[[device]]`, // 6
				`name = "b"`,
				`driver = "fake"`,
				`pollinterval = "1s"`, // 9
				`[[device.tag]]`,
				`name = "t"`,
				`adress = 4`, // 12
			)},
			want: []wantErr{
				{line: 9, key: "device[1].pollinterval", msg: "did you mean poll_interval?; allowed here: name, driver, map, meta, host, poll_interval, retries, tag, timeout"},
				{line: 12, key: "device[1].tag[0].adress", msg: "did you mean address?; allowed here: name, address, topic, meta"},
			},
		},
		{
			name: "key of another driver",
			files: memFS{testMain: gw + lines(
				`[[device]]`,
				`name = "a"`,
				`driver = "plain"`,
				`host = "10.0.0.1"`, // 6: plain has no host
				`[[device]]`,
				`name = "b"`,
				`driver = "fake"`,
				`host = "10.0.0.2"`,
			)},
			want: []wantErr{{line: 6, key: "device[0].host", msg: "unknown key; allowed here: name, driver, map, meta, port"}},
		},
		{
			name: "unknown key in a map file",
			files: memFS{
				testMain: gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1"`),
				testMaps + "m1.toml": lines(
					`model = "x"`,
					`[[tag]]`,
					`name = "a"`,
					`address = 1`,
					`[[tag]]`,
					`name = "b"`,
					`addres = 2`, // 7
				),
			},
			want: []wantErr{{file: testMaps + "m1.toml", line: 7, key: "tag[1].addres", msg: "did you mean address?"}},
		},
		{
			name: "bad types in a device, each reported",
			files: memFS{testMain: gw + lines(
				`[[device]]`,
				`name = "a"`,
				`driver = "fake"`,
				`poll_interval = 5`, // 6
				`host = 5`,          // 7
			)},
			want: []wantErr{
				{line: 6, key: "device[0].poll_interval", msg: `invalid duration "5": write a number with a unit`},
				{line: 7, key: "device[0].host", msg: "wrong type: found an integer, expected a string in quotes"},
			},
		},
		{
			name: "bad duration string in the second device",
			files: memFS{testMain: gw + lines(
				`[[device]]`,
				`name = "a"`,
				`driver = "fake"`,
				`poll_interval = "1s"`,
				`[[device]]`,
				`name = "b"`,
				`driver = "fake"`,
				`poll_interval = "1 s"`, // 10
				`[[device]]`,
				`name = "c"`,
				`driver = "fake"`,
				`poll_interval = "1s"`,
			)},
			want: []wantErr{{line: 10, key: "device[1].poll_interval", msg: `invalid duration "1 s"`}},
		},
		{
			name: "bad type in the middle of a map's tags",
			files: memFS{
				testMain: gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1"`),
				testMaps + "m1.toml": lines(
					`[[tag]]`,
					`name = "a"`,
					`address = 1`,
					`[[tag]]`,
					`name = "b"`,
					`address = "40001"`, // 6
					`[[tag]]`,
					`name = "c"`,
					`address = 3`,
				),
			},
			want: []wantErr{{file: testMaps + "m1.toml", line: 6, key: "tag[1].address", msg: "found a string, expected an integer"}},
		},
		{
			name: "devices as an inline array",
			files: memFS{testMain: lines(
				`device = [`,
				`  { name = "a", driver = "plain", port = 1 },`,
				`  { name = "b", driver = "plain", prot = 2 },`, // 3
				`]`,
			) + gw},
			want: []wantErr{{line: 3, key: "device[1].prot", msg: "did you mean port?"}},
		},
		{
			name:  "top-level key below a table header",
			files: memFS{testMain: gw + lines(`device = [{ name = "a", driver = "plain" }]`)},
			want:  []wantErr{{line: 3, key: "gateway.device", msg: "(keys after a [table] header belong to that table: move device above"}},
		},
		{
			name: "bad type in a device's third tag",
			files: memFS{testMain: gw + lines(
				`[[device]]`,
				`name = "a"`,
				`driver = "fake"`,
				`[[device]]`,
				`name = "b"`,
				`driver = "fake"`,
				`tag = [`,
				`  { name = "t0", address = 1 },`,
				`  { name = "t1", address = 2 },`,
				`  { name = "t2", address = 3.5 },`, // 12
				`  { name = "t3", address = 4 },`,
				`]`,
			)},
			want: []wantErr{{line: 12, key: "device[1].tag[2].address", msg: "found a float, expected an integer"}},
		},
		{
			name: "a map shared by two devices reports its problems once",
			files: memFS{
				testMain: gw + lines(
					`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1"`,
					`[[device]]`, `name = "b"`, `driver = "fake"`, `map = "m1"`,
				),
				testMaps + "m1.toml": lines(`modle = "x"`),
			},
			want: []wantErr{{file: testMaps + "m1.toml", line: 1, key: "modle", msg: "did you mean model?; allowed here: model, tag"}},
		},
		{
			name: "duplicate device name",
			files: memFS{testMain: gw + lines(
				`[[device]]`, // 3
				`name = "boiler"`,
				`driver = "plain"`,
				`[[device]]`,
				`name = "boiler"`, // 7
				`driver = "plain"`,
			)},
			want: []wantErr{{line: 7, key: "device[1].name", msg: `"boiler" is already the name of device[0] (line 3); device names must be unique`}},
		},
		{
			name: "missing map file",
			files: memFS{
				testMain:                 gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m2"`),
				testMaps + "m1.toml":     validMap,
				testMaps + "sdm630.toml": validMap,
			},
			want: []wantErr{{line: 6, key: "device[0].map", msg: `map "m2" not found: /etc/edged/maps/m2.toml does not exist; did you mean m1? maps in /etc/edged/maps: m1, sdm630`}},
		},
		{
			name:  "missing maps folder",
			files: memFS{testMain: gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m2"`)},
			want:  []wantErr{{line: 6, key: "device[0].map", msg: "the folder /etc/edged/maps does not exist"}},
		},
		{
			name:  "map on a driver without maps",
			files: memFS{testMain: gw + lines(`[[device]]`, `name = "a"`, `driver = "plain"`, `map = "m1"`)},
			want:  []wantErr{{line: 6, key: "device[0].map", msg: `driver "plain" takes no map`}},
		},
		{
			name:  "unknown driver",
			files: memFS{testMain: gw + lines(`[[device]]`, `name = "a"`, `driver = "fak"`, `host = "x"`)},
			want:  []wantErr{{line: 5, key: "device[0].driver", msg: `unknown driver "fak"; did you mean fake? known drivers: fake, plain`}},
		},
		{
			name:  "missing name and driver",
			files: memFS{testMain: gw + lines(`[[device]]`, `port = 1`)},
			want: []wantErr{
				{line: 3, key: "device[0].name", msg: "required: name the device"},
				{line: 3, key: "device[0].driver", msg: "required: say which driver talks to this device; known drivers: fake, plain"},
			},
		},
		{
			name: "driver Init error",
			files: memFS{
				testMain: gw + lines(
					`[[device]]`,
					`name = "a"`,
					`driver = "fake"`,
					`[[device]]`, // 6
					`name = "b"`,
					`driver = "fake"`,
					`map = "m1"`,
					`[[device.tag]]`,
					`name = "voltage"`,
					`address = 1`,
				),
				testMaps + "m1.toml": validMap,
			},
			want: []wantErr{{line: 6, key: "device[1]", msg: `device "b": duplicate tag name "voltage"`}},
		},
		{
			name: "driver Init error with a key",
			files: memFS{testMain: gw + lines(
				`[[device]]`,
				`name = "a"`,
				`driver = "fake"`,
				`retries = 50`, // 6
			)},
			want: []wantErr{{line: 6, key: "device[0].retries", msg: `device "a": 50 retries is too many; at most 10`}},
		},
		{
			name: "driver Init errors in a map tag and an inline tag of the same index",
			files: memFS{
				testMain: gw + lines(
					`[[device]]`,
					`name = "a"`,
					`driver = "fake"`,
					`map = "m1"`,
					`[[device.tag]]`, // 7
					`name = "local"`,
					`address = -2`,   // 9
					`[[device.tag]]`, // 10
					`address = 5`,
				),
				testMaps + "m1.toml": lines(
					`model = "x"`,
					`[[tag]]`, // 2
					`name = "voltage"`,
					`address = -1`, // 4
					`[[tag]]`,      // 5
					`address = 7`,
				),
			},
			want: []wantErr{
				// Files in the order the driver named them.
				{file: testMaps + "m1.toml", line: 4, key: "tag[0].address", msg: `device "a": address -1 is negative`},
				{file: testMaps + "m1.toml", line: 5, key: "tag[1].name", msg: `device "a": name is missing`},
				{line: 9, key: "device[0].tag[0].address", msg: `device "a": address -2 is negative`},
				{line: 10, key: "device[0].tag[1].name", msg: `device "a": name is missing`},
			},
		},
		{
			name: "driver Init error in a map tag the device table also has",
			files: memFS{
				testMain: gw + lines(
					`[[device]]`,
					`name = "a"`,
					`driver = "fake"`,
					`map = "m1"`,
					`[[device.tag]]`,
					`name = "local"`,
					`address = 2`,
				),
				testMaps + "m1.toml": lines(
					`[[tag]]`,
					`name = "voltage"`,
					`address = -1`, // 3
				),
			},
			want: []wantErr{{file: testMaps + "m1.toml", line: 3, key: "tag[0].address", msg: `device "a": address -1 is negative`}},
		},
		{
			name: "unset environment variables",
			files: memFS{testMain: gw + lines(
				`[[device]]`,
				`name = "a"`,
				`driver = "fake"`,
				`host = "${PLC_HOST}"`, // 6
				`retries = ${RETRIES}`, // 7
			)},
			want: []wantErr{
				{line: 6, msg: "environment variable PLC_HOST is not set; set it for the edged service"},
				{line: 7, msg: "environment variable RETRIES is not set"},
			},
		},
		{
			name:  "bad variable reference",
			files: memFS{testMain: gw + lines(`[broker]`, `listen = "${1X}"`, `retain = ${OK`)},
			want: []wantErr{
				{line: 4, msg: `"1X" is not a variable name`},
				{line: 5, msg: `"${" is not closed by "}" on the same line`},
			},
		},
		{
			name: "several problems in one file",
			files: memFS{testMain: lines(
				`[gateway]`,
				`id = "plant 1"`,        // 2
				`log_level = "verbose"`, // 3
				`topic_prefix = "a/b"`,  // 4
				`[broker]`,
				`listen = "1883"`, // 6
				`retain = "yes"`,  // 7
				`[[device]]`,      // 8
				`name = "a"`,
				`driver = "modbus"`, // 10
				`[[device]]`,        // 11
				`driver = "plain"`,
				`[[device]]`,
				`name = "c"`,
				`driver = "fake"`,
				`timeout = "soon"`, // 16
				`[extra]`,          // 17
			)},
			want: []wantErr{
				{line: 2, key: "gateway.id", msg: `"plant 1" contains ' '; use only letters, digits, '-', '_' and '.'`},
				{line: 3, key: "gateway.log_level", msg: `"verbose" is not a log level; use one of: debug, info, warn, error`},
				{line: 4, key: "gateway.topic_prefix", msg: `"a/b" contains '/'`},
				{line: 6, key: "broker.listen", msg: `"1883" is not host:port`},
				{line: 7, key: "broker.retain", msg: "wrong type: found a string, expected true or false"},
				{line: 10, key: "device[0].driver", msg: `unknown driver "modbus"`},
				{line: 11, key: "device[1].name", msg: "required"},
				{line: 16, key: "device[2].timeout", msg: `invalid duration "soon"`},
				{line: 17, key: "extra", msg: "unknown key"},
			},
		},
		{
			name:  "syntax error",
			files: memFS{testMain: gw + lines(`[[device]]`, `name = "a`, `driver = "fake"`)},
			want:  []wantErr{{line: 4, msg: "strings cannot contain newlines"}},
		},
		{
			name: "syntax error in a map file",
			files: memFS{
				testMain:             gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1"`),
				testMaps + "m1.toml": lines(`[[tag]]`, `name = "a"`, `address = = 1`),
			},
			want: []wantErr{{file: testMaps + "m1.toml", line: 3, msg: "expected value"}},
		},
		{
			name: "map name with .toml",
			files: memFS{
				testMain: gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1.toml"`),
			},
			want: []wantErr{{line: 6, key: "device[0].map", msg: `write the map's name without .toml: map = "m1"`}},
		},
		{
			name:  "device is not an array of tables",
			files: memFS{testMain: "device = 5\n" + gw},
			want:  []wantErr{{line: 1, key: "device", msg: "write each device as a [[device]] table"}},
		},
		{
			name:  "gateway without id",
			files: memFS{testMain: lines(`[gateway]`, `log_level = "info"`)},
			want:  []wantErr{{line: 1, key: "gateway.id", msg: `required: name this gateway, e.g. id = "plant1-line3"`}},
		},
		{
			name:  "unknown placeholder in topic_template",
			files: memFS{testMain: gw + lines(`topic_template = "{prefix}/{site}/{tag}"`)},
			want:  []wantErr{{line: 3, key: "gateway.topic_template", msg: "unknown placeholder {site}: allowed are {prefix}, {gateway}, {device}, {tag}, {meta.KEY}"}},
		},
		{
			name:  "{meta} without a key in device_topic_template",
			files: memFS{testMain: gw + lines(`device_topic_template = "{prefix}/{meta}"`)},
			want:  []wantErr{{line: 3, key: "gateway.device_topic_template", msg: "write {meta.KEY}"}},
		},
		{
			name:  "unknown publish mode",
			files: memFS{testMain: gw + lines(`publish = "tag"`)},
			want:  []wantErr{{line: 3, key: "gateway.publish", msg: `"tag" is not a publish mode; use "tags"`}},
		},
		{
			name:  "unknown format",
			files: memFS{testMain: gw + lines(`format = "csv"`)},
			want:  []wantErr{{line: 3, key: "gateway.format", msg: `"csv" is not a payload format; use "json" (default`}},
		},
		{
			name:  "format value with per-device messages",
			files: memFS{testMain: gw + lines(`publish = "both"`, `format = "value"`)},
			want:  []wantErr{{line: 4, key: "gateway.format", msg: `a per-device message (publish = "both") has no bare-value form: set publish = "tags"`}},
		},
		{
			name: "unknown placeholder in a tag's own topic",
			files: memFS{testMain: gw + lines(
				`[[device]]`, `name = "a"`, `driver = "fake"`,
				`[[device.tag]]`, `name = "t"`, `topic = "plant/{area}/{tag}"`, // 8
			)},
			want: []wantErr{{line: 8, key: "device[0].tag[0].topic", msg: `tag "t": topic template "plant/{area}/{tag}": unknown placeholder {area}`}},
		},
		{
			name: "unknown placeholder in a map tag's topic",
			files: memFS{
				testMain:             gw + lines(`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1"`),
				testMaps + "m1.toml": lines(`[[tag]]`, `name = "t"`, `topic = "x/{tag}+"`),
			},
			want: []wantErr{{file: testMaps + "m1.toml", line: 3, key: "tag[0].topic", msg: "contains +"}},
		},
		{
			name: "meta key the device and none of its tags set: once, at the device",
			files: memFS{testMain: gw + lines(
				`topic_template = "acme/{meta.area}/{meta.line}/{device}/{tag}"`,
				`[[device]]`, `name = "filler"`, `driver = "fake"`,
				`meta = { area = "packaging" }`, // 7
				`[[device.tag]]`, `name = "t1"`,
				`[[device.tag]]`, `name = "t2"`,
			)},
			want: []wantErr{{line: 7, key: "device[0].meta", msg: `device "filler": topic_template "acme/{meta.area}/{meta.line}/{device}/{tag}" (line 3) uses {meta.line}, but neither the device nor any of its 2 tags sets meta key "line"`}},
		},
		{
			name: "meta key one tag lacks: at that tag",
			files: memFS{testMain: gw + lines(
				`topic_template = "{meta.cell}/{tag}"`,
				`[[device]]`, `name = "d"`, `driver = "fake"`, // 4
				`[[device.tag]]`, `name = "t1"`, `meta = { cell = "c1" }`,
				`[[device.tag]]`, `name = "t2"`, // 10
			)},
			want: []wantErr{{line: 10, key: "device[0].tag[1].meta", msg: `tag "t2" of device "d": topic_template "{meta.cell}/{tag}" uses {meta.cell}, but neither the tag's meta nor the device's (/etc/edged/edged.toml:4) has key "cell"`}},
		},
		{
			name: "meta key a tag's own topic needs",
			files: memFS{testMain: gw + lines(
				`[[device]]`, `name = "d"`, `driver = "fake"`,
				`[[device.tag]]`, `name = "t"`, `topic = "x/{meta.unit}"`, // 8
			)},
			want: []wantErr{{line: 8, key: "device[0].tag[0].meta", msg: `its topic "x/{meta.unit}" uses {meta.unit}`}},
		},
		{
			name: "meta value with a / used in a topic",
			files: memFS{testMain: gw + lines(
				`topic_template = "{meta.area}/{tag}"`,
				`[[device]]`, `name = "d"`, `driver = "fake"`,
				`meta = { area = "a/b" }`, // 7
				`[[device.tag]]`, `name = "t"`,
			)},
			want: []wantErr{{line: 7, key: "device[0].meta.area", msg: `device "d": meta area = "a/b" is used in its tags' topics, and / + # and NUL are not allowed`}},
		},
		{
			name: "meta key that cannot be a placeholder",
			files: memFS{testMain: gw + lines(
				`[[device]]`, `name = "d"`, `driver = "fake"`,
				`[[device.tag]]`, `name = "t"`,
				`meta = { "line.no" = "3" }`, // 8
			)},
			want: []wantErr{{line: 8, key: `device[0].tag[0].meta."line.no"`, msg: `meta key "line.no" cannot be used as {meta.line.no}`}},
		},
		{
			name: "two tags with the same topic: at the second, naming the first",
			files: memFS{testMain: gw + lines(
				`[[device]]`, `name = "d"`, `driver = "fake"`,
				`[[device.tag]]`, // 6
				`name = "t1"`, `topic = "plant/level"`,
				`[[device.tag]]`,
				`name = "t2"`, `topic = "plant/level"`, // 11: the second topic
			)},
			want: []wantErr{{line: 11, key: "device[0].tag[1]", msg: `topic "plant/level" of tag "t2" of device "d" is already the topic of tag "t1" of device "d" (/etc/edged/edged.toml:6)`}},
		},
		{
			name: "a template without {device}: tags of two devices collide",
			files: memFS{testMain: gw + lines(
				`topic_template = "{prefix}/{tag}"`,
				`[[device]]`, `name = "a"`, `driver = "fake"`,
				`[[device.tag]]`, `name = "flow"`, // 7
				`[[device]]`, `name = "b"`, `driver = "fake"`,
				`[[device.tag]]`, `name = "flow"`, // 12
			)},
			want: []wantErr{{line: 12, key: "device[1].tag[0]", msg: `topic "edged/flow" of tag "flow" of device "b" is already the topic of tag "flow" of device "a" (/etc/edged/edged.toml:7)`}},
		},
		{
			name: "a map's literal topic collides across its devices: at the second device",
			files: memFS{
				testMain: gw + lines(
					`[[device]]`, `name = "a"`, `driver = "fake"`, `map = "m1"`,
					`[[device]]`, `name = "b"`, `driver = "fake"`, `map = "m1"`, // 7
				),
				testMaps + "m1.toml": lines(`[[tag]]`, `name = "t"`, `topic = "meters/energy"`),
			},
			want: []wantErr{{line: 7, key: "device[1]", msg: `topic "meters/energy" of tag "t" of device "b" is already the topic of tag "t" of device "a" (/etc/edged/edged.toml:3, from map /etc/edged/maps/m1.toml:1)`}},
		},
		{
			name: "a tag's topic is a device's status topic",
			files: memFS{testMain: gw + lines(
				`[[device]]`, `name = "a"`, `driver = "fake"`,
				`[[device.tag]]`, `name = "t"`, `topic = "edged/gw/a/_status"`, // 8
			)},
			want: []wantErr{{line: 8, key: "device[0].tag[0]", msg: `is already the topic of the status of device "a"`}},
		},
		{
			name: "meta key a per-device topic needs",
			files: memFS{testMain: gw + lines(
				`publish = "device"`, `device_topic_template = "{meta.area}/{device}"`, // 4
				`[[device]]`, `name = "d"`, `driver = "fake"`, // 5
			)},
			want: []wantErr{{line: 5, key: "device[0].meta", msg: `device "d": device_topic_template "{meta.area}/{device}" (line 4) uses {meta.area}, but the device's meta has no key "area"`}},
		},
		{
			name:  "unknown upstream format",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtts://x"`, `format = "xml"`)},
			want:  []wantErr{{line: 6, key: "upstream[0].format", msg: `"xml" is not an upstream format; use "json", "value", "sparkplug" (default: the [gateway] format, "json")`}},
		},
		{
			name:  "json upstream of a value gateway",
			files: memFS{testMain: gw + lines(`format = "value"`, `[[upstream]]`, `name = "c"`, `url = "mqtts://x"`, `format = "json"`)},
			want:  []wantErr{{line: 7, key: "upstream[0].format", msg: `[gateway] format = "value" publishes bare values`}},
		},
		{
			name:  "value upstream without per-tag messages",
			files: memFS{testMain: gw + lines(`publish = "device"`, `[[upstream]]`, `name = "c"`, `url = "mqtts://x"`, `format = "value"`)},
			want:  []wantErr{{line: 7, key: "upstream[0].format", msg: `[gateway] publish = "device" publishes no per-tag messages`}},
		},
		{
			name: "one pass: template, meta and collision errors with the others",
			files: memFS{testMain: gw + lines(
				`topic_template = "{prefix}/{meta.area}/{device}/{tag}"`, // 3
				`log_level = "loud"`,                          // 4
				`[[device]]`, `name = "a"`, `driver = "fake"`, // 5
				`poll_interval = "often"`,                            // 8: an error of device a: its topics are not claimed
				`[[device.tag]]`, `name = "t"`, `topic = "x/{nope}"`, // 11
				`[[device]]`, `name = "b"`, `driver = "fake"`, `meta = { area = "utilities" }`,
				`[[device.tag]]`, `name = "t1"`, `topic = "same"`, // 16
				`[[device.tag]]`, `name = "t2"`, `topic = "same"`, // 21
				`[[device.tag]]`, `name = "t3"`, `metaa = 1`, // 24
			)},
			want: []wantErr{
				{line: 4, key: "gateway.log_level", msg: `"loud" is not a log level`},
				{line: 8, key: "device[0].poll_interval", msg: `invalid duration "often"`},
				{line: 11, key: "device[0].tag[0].topic", msg: "unknown placeholder {nope}"},
				{line: 21, key: "device[1].tag[1]", msg: `topic "same" of tag "t2" of device "b" is already the topic of tag "t1" of device "b" (/etc/edged/edged.toml:16)`},
				{line: 24, key: "device[1].tag[2].metaa", msg: "did you mean meta?"},
			},
		},
		{
			name:  "missing file",
			files: memFS{},
			want:  []wantErr{{msg: "cannot read the configuration: file does not exist"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadMem(tt.files, tt.env)
			if cfg != nil {
				t.Fatalf("got a config and error %v", err)
			}
			checkErrors(t, err, tt.want)
		})
	}
}

func TestLoadFromDisk(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "devmaps"), 0o755); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "edged.toml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(main, lines(`[gateway]`, `id = "gw"`, `maps_dir = "devmaps"`, `[[device]]`, `name = "a"`, `driver = "fake"`, `map = "pm"`))
	write(filepath.Join(dir, "devmaps", "pm.toml"), validMap)
	cfg, err := Load(main, fakeDrivers{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.MapsDir != filepath.Join(dir, "devmaps") || len(cfg.Devices[0].Settings.(*fakeSettings).fromMap.Tags) != 2 {
		t.Errorf("maps_dir %q, settings %+v", cfg.Gateway.MapsDir, cfg.Devices[0].Settings)
	}

	write(main, lines(`[gateway]`, `id = "gw"`, `[[device]]`, `name = "a"`, `driver = "fake"`, `map = "pm"`))
	_, err = Load(main, fakeDrivers{})
	checkErrors(t, err, []wantErr{{file: main, line: 6, key: "device[0].map", msg: "the folder " + filepath.Join(dir, "maps") + " does not exist"}})
}

func TestErrorsFormat(t *testing.T) {
	es := Errors{
		{File: "edged.toml", Line: 3, Key: "gateway.id", Msg: "required"},
		{File: "edged.toml", Msg: "cannot read"},
		{Key: "k", Msg: "m"},
		{Line: 2, Msg: "m"},
	}
	want := "edged.toml:3: gateway.id: required\nedged.toml: cannot read\nk: m\nline 2: m"
	if es.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", es.Error(), want)
	}
	var err error = es
	var e *Error
	if !errors.As(err, &e) || e != es[0] {
		t.Errorf("errors.As found %v", e)
	}
}

func TestClosest(t *testing.T) {
	allowed := []string{"host", "poll_interval", "retries", "tag", "timeout"}
	for in, want := range map[string]string{
		"hots":          "host",
		"pollinterval":  "poll_interval",
		"Poll_Interval": "poll_interval",
		"retires":       "retries",
		"tags":          "tag",
		"x":             "",
		"colour":        "",
	} {
		if got := closest(in, allowed); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDeviceFingerprint(t *testing.T) {
	load := func(main, m1 string) *Config {
		t.Helper()
		cfg, err := loadMem(memFS{testMain: main, testMaps + "m1.toml": m1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	base := "[gateway]\nid = \"g\"\n[[device]]\nname = \"a\"\ndriver = \"fake\"\nhost = \"h1\"\nmap = \"m1\"\n[[device]]\nname = \"b\"\ndriver = \"fake\"\nhost = \"h2\"\n"
	m1 := "[[tag]]\nname = \"t\"\naddress = 1\n"
	c0 := load(base, m1)
	same := load("# a comment\n"+base, m1)
	hostChanged := load(strings.Replace(base, `"h2"`, `"h3"`, 1), m1)
	mapChanged := load(base, strings.Replace(m1, "address = 1", "address = 2", 1))
	fp := func(c *Config, i int) string { return c.Devices[i].Fingerprint }
	if fp(c0, 0) == "" || fp(c0, 0) != fp(same, 0) || fp(c0, 1) != fp(same, 1) {
		t.Fatalf("a comment changed a fingerprint")
	}
	if fp(c0, 1) == fp(hostChanged, 1) || fp(c0, 0) != fp(hostChanged, 0) {
		t.Fatalf("changing device b's host must change b's fingerprint only")
	}
	if fp(c0, 0) == fp(mapChanged, 0) || fp(c0, 1) != fp(mapChanged, 1) {
		t.Fatalf("changing a's map must change a's fingerprint only")
	}
}

// An Error a driver returns says which file its key is in.
func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{Key: "tag[0].area", Msg: "area is missing"}, "tag[0].area: area is missing"},
		{Error{Key: "tag[0].area", Msg: "area is missing", InMap: true}, "map: tag[0].area: area is missing"},
		{Error{File: "/m.toml", Line: 3, Key: "tag[0].area", Msg: "area is missing", InMap: true}, "/m.toml:3: tag[0].area: area is missing"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}
