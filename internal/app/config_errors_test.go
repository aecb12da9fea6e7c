package app

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edged-gw/edged/configs"
)

// Broken configs through the real loader and the real drivers: each must
// produce one specific error an installer can act on, naming the file, the
// line, the key and what is allowed.
func TestBrokenConfigsGiveSpecificErrors(t *testing.T) {
	// Lines 1-7; a tag() added right after starts at line 9.
	const head = "[gateway]\nid = \"g\"\n\n[[device]]\nname = \"m\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1:502\"\n"
	// tag is 6 lines: a blank one, then [[device.tag]] and four keys.
	tag := func(name, area string, addr int, typ string) string {
		return "\n  [[device.tag]]\n  name = \"" + name + "\"\n  area = \"" + area + "\"\n  address = " + strconv.Itoa(addr) + "\n  type = \"" + typ + "\"\n"
	}
	// mapTag is a map file's [[tag]] table, 5 lines.
	mapTag := func(name, area string, addr int, typ string) string {
		return "[[tag]]\nname = \"" + name + "\"\narea = \"" + area + "\"\naddress = " + strconv.Itoa(addr) + "\ntype = \"" + typ + "\"\n"
	}
	// rtuDev is an RTU device on /dev/ttyUSB0: a [[device]] line and 4
	// keys, extra (one line or none), a tag (6 lines); the first, "a",
	// comes after a 3-line [gateway] and starts at line 4.
	rtuDev := func(name string, unit int, extra string) string {
		d := "[[device]]\nname = \"" + name + "\"\ndriver = \"modbus-rtu\"\nport = \"/dev/ttyUSB0\"\nunit_id = " + strconv.Itoa(unit) + "\n" + extra + tag("x", "holding", 0, "uint16")
		if name == "a" {
			return "[gateway]\nid = \"g\"\n\n" + d
		}
		return d
	}
	const opcuaHead = "[gateway]\nid = \"g\"\n\n[[device]]\nname = \"u\"\ndriver = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840\"\n"
	cases := []struct {
		name   string
		cfg    string
		maps   map[string]string // maps/NAME.toml → text
		file   string            // "" = the main file, else relative to its folder
		line   int
		key    string
		wanted []string // in the message
	}{
		{"unknown key", head + "pol_interval = \"1s\"\n" + tag("a", "holding", 0, "uint16"),
			nil, "", 8, "device[0].pol_interval", []string{"unknown key", "did you mean poll_interval?"}},
		{"bad type", head + "unit_id = \"one\"\n" + tag("a", "holding", 0, "uint16"),
			nil, "", 8, "device[0].unit_id", []string{"expected an integer"}},
		{"bad duration", head + "poll_interval = \"fast\"\n" + tag("a", "holding", 0, "uint16"),
			nil, "", 8, "device[0].poll_interval", []string{`invalid duration "fast"`, `"500ms"`}},
		{"unknown data type", head + tag("a", "holding", 0, "real"),
			nil, "", 13, "device[0].tag[0].type", []string{`unknown type "real"`, "float32"}},
		{"missing area: at the tag's table", head + "\n  [[device.tag]]\n  name = \"t1\"\n  address = 40001\n  type = \"float32\"\n",
			nil, "", 9, "device[0].tag[0].area", []string{`tag "t1" (address 40001): area is missing`, "holding_register"}},
		{"string without length: at the tag's table", head + tag("a", "holding", 0, "uint16") + tag("s", "holding", 10, "string"),
			nil, "", 15, "device[0].tag[1].length", []string{"length = 0", "1..125"}},
		{"bad write_function: at the key", head + tag("a", "holding", 0, "uint16") + "  write_function = 5\n",
			nil, "", 14, "device[0].tag[0].write_function", []string{"write_function = 5", "6 (write single register", "16 (write multiple"}},
		{"coil with float32: at the type", head + tag("a", "coil", 0, "float32"),
			nil, "", 13, "device[0].tag[0].type", []string{`type = "float32" is not allowed in area coil`, `"bool"`}},
		{"duplicate tag name: at the second name", head + tag("a", "holding", 0, "uint16") + tag("a", "holding", 5, "uint16"),
			nil, "", 16, "device[0].tag[1].name", []string{`tag "a" is defined twice`, "must be unique"}},
		{"overlapping addresses: at the later address", head + tag("a", "holding", 0, "float32") + tag("b", "holding", 1, "float32"),
			nil, "", 18, "device[0].tag[1].address", []string{`tag "b" (holding_register 1..2) overlaps tag "a"`}},
		{"overlap listed first, starting later: at its address", head + tag("b", "holding", 1, "float32") + tag("a", "holding", 0, "float32"),
			nil, "", 12, "device[0].tag[0].address", []string{`tag "b" (holding_register 1..2) overlaps tag "a"`}},
		{"address out of range", head + tag("a", "holding", 65535, "float32"),
			nil, "", 12, "device[0].tag[0].address", []string{"65535", "at most 65534"}},
		{"bad max_registers", head + "max_registers = 200\n" + tag("a", "holding", 0, "uint16"),
			nil, "", 8, "device[0].max_registers", []string{"max_registers = 200", "allowed are 1..125"}},
		{"bad address", head[:len(head)-len("address = \"127.0.0.1:502\"\n")] + "address = \"10.0.0.1:99999\"\n" + tag("a", "holding", 0, "uint16"),
			nil, "", 7, "device[0].address", []string{"port 1..65535"}},
		{"rtu parity", "[gateway]\nid = \"g\"\n[[device]]\nname = \"r\"\ndriver = \"modbus-rtu\"\nport = \"/dev/ttyUSB0\"\nparity = \"mark\"\n" + tag("a", "holding", 0, "uint16"),
			nil, "", 7, "device[0].parity", []string{`parity = "mark"`, `"none", "even", "odd"`}},
		{"missing map", head + "map = \"pm5560\"\n",
			nil, "", 8, "device[0].map", []string{`map "pm5560" not found`, "pm5560.toml does not exist"}},
		{"map tag with an inline tag of the same index: in the map", head + "map = \"pm\"\n" + tag("local", "holding", 100, "uint16"),
			map[string]string{"pm": "# meter\n" + mapTag("v", "holding", 65535, "float32")},
			"maps/pm.toml", 5, "tag[0].address", []string{`tag "v"`, "address = 65535 with 2 registers", "at most 65534"}},
		{"missing key in a map tag: at the map's [[tag]]", head + "map = \"pm\"\n" + tag("local", "holding", 100, "uint16"),
			map[string]string{"pm": mapTag("v", "holding", 0, "uint16") + "\n[[tag]]\nname = \"w\"\naddress = 1\ntype = \"uint16\"\n"},
			"maps/pm.toml", 7, "tag[1].area", []string{`tag "w" (address 1): area is missing`}},
		{"inline tag overlapping a map tag: inline", head + "map = \"pm\"\n" + tag("local", "holding", 1, "uint32"),
			map[string]string{"pm": mapTag("v", "holding", 0, "uint32")},
			"", 13, "device[0].tag[0].address", []string{`tag "local" (holding_register 1..2) overlaps tag "v"`}},
		{"opcua map tag with an inline tag of the same index: in the map", opcuaHead + "map = \"plc\"\n\n  [[device.tag]]\n  name = \"a\"\n  node = \"ns=2;s=A\"\n",
			map[string]string{"plc": "[[tag]]\nname = \"b\"\nnode = \"Line1.Speed\"\n"},
			"maps/plc.toml", 3, "tag[0].node", []string{"is not a NodeId"}},
		{"unknown placeholder in a tag's topic: at the topic", head + tag("a", "holding", 0, "uint16") + "  topic = \"plant/{area}/{tag}\"\n",
			nil, "", 14, "device[0].tag[0].topic", []string{`tag "a"`, "unknown placeholder {area}", "{meta.KEY}"}},
		{"two tags on one topic: at the second, naming the first's line", head + tag("a", "holding", 0, "uint16") + "  topic = \"x/level\"\n" + tag("b", "holding", 5, "uint16") + "  topic = \"x/level\"\n",
			nil, "", 21, "device[0].tag[1]", []string{`topic "x/level" of tag "b" of device "m" is already the topic of tag "a" of device "m"`, "edged.toml:9)"}},
		{"meta key the device lacks: at the device", strings.Replace(head, "\n\n", "\ntopic_template = \"acme/{meta.area}/{device}/{tag}\"\n", 1) + tag("a", "holding", 0, "uint16") + tag("b", "holding", 1, "uint16"),
			nil, "", 4, "device[0].meta", []string{`device "m"`, "{meta.area}", `meta key "area"`, "(line 3)"}},
		{"bad topic in a map tag: in the map", head + "map = \"pm\"\n",
			map[string]string{"pm": mapTag("v", "holding", 0, "float32") + "topic = \"{tag}/#\"\n"},
			"maps/pm.toml", 6, "tag[0].topic", []string{`tag "v"`, "contains #"}},
		{"value format with per-device messages: at format", strings.Replace(head, "\n\n", "\npublish = \"device\"\nformat = \"value\"\n", 1) + tag("a", "holding", 0, "uint16"),
			nil, "", 4, "gateway.format", []string{`format = "value"`, `set publish = "tags"`}},
		{"opcua duplicate tag name: names the first by its key", opcuaHead + "\n  [[device.tag]]\n  name = \"a\"\n  node = \"ns=2;s=A\"\n\n  [[device.tag]]\n  name = \"a\"\n  node = \"ns=2;s=B\"\n",
			nil, "", 14, "device[0].tag[1].name", []string{`"a" is also the name of tag[0] of this device`}},
		{"modbus tag without a name: named by its key, from 0", head + tag("a", "holding", 0, "uint16") + "\n  [[device.tag]]\n  area = \"holding\"\n  address = 1\n  type = \"uint16\"\n",
			nil, "", 15, "device[0].tag[1].name", []string{"tag[1] (holding_register 1): name is empty"}},
		// The checks that span devices and the topic layout, located.
		{"rtu line settings differ on one port: at the baud", rtuDev("a", 1, "baud = 9600\n") + rtuDev("b", 2, "baud = 19200\n"),
			nil, "", 21, "device[1].baud", []string{`port /dev/ttyUSB0 is 9600 8E1 for device "a" but 19200 8E1 here`, "same baud, data_bits, parity and stop_bits"}},
		{"rtu parity differs, not written: at the device", rtuDev("a", 1, "parity = \"none\"\n") + rtuDev("b", 2, ""),
			nil, "", 16, "device[1].parity", []string{"9600 8N1 for device \"a\" but 9600 8E1 here"}},
		{"rtu unit_id shared on one port: at the unit_id", rtuDev("a", 7, "") + rtuDev("b", 7, ""),
			nil, "", 19, "device[1].unit_id", []string{`unit_id 7 on port /dev/ttyUSB0 is already device "a"`}},
		{"unknown placeholder in topic_template: at its line", "[gateway]\nid = \"g\"\ntopic_template = \"{prefix}/{dev}/{tag}\"\n" + head[len("[gateway]\nid = \"g\"\n"):] + tag("a", "holding", 0, "uint16"),
			nil, "", 3, "gateway.topic_template", []string{"unknown placeholder {dev}", "{prefix}, {gateway}, {device}, {tag}"}},
		{"unknown publish: at its line", "[gateway]\nid = \"g\"\npublish = \"all\"\n" + head[len("[gateway]\nid = \"g\"\n"):] + tag("a", "holding", 0, "uint16"),
			nil, "", 3, "gateway.publish", []string{`"all" is not a publish mode`, `"tags"`, `"device"`, `"both"`}},
		{"two devices on one topic: at the second device's name", "[gateway]\nid = \"g\"\ntopic_template = \"{prefix}/{gateway}/{tag}\"\n" +
			"[[device]]\nname = \"m\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1\"\n" + tag("t", "holding", 0, "uint16") +
			"[[device]]\nname = \"n\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1\"\n" + tag("t", "holding", 0, "uint16"),
			nil, "", 19, "device[1].tag[0]", []string{`topic "edged/g/t" of tag "t" of device "n" is already the topic of tag "t" of device "m"`, "edged.toml:9)"}},
		{"opcua publish_requests out of range", opcuaHead + "publish_requests = 100\n\n  [[device.tag]]\n  name = \"a\"\n  node = \"ns=2;s=A\"\n",
			nil, "", 8, "device[0].publish_requests", []string{"100: allowed are 1..64 PublishRequests in flight"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "edged.toml")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if len(tc.maps) > 0 {
				if err := os.Mkdir(filepath.Join(dir, "maps"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, text := range tc.maps {
				if err := os.WriteFile(filepath.Join(dir, "maps", name+".toml"), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantFile := path
			if tc.file != "" {
				wantFile = filepath.Join(dir, tc.file)
			}
			_, err := LoadConfig(path, nil)
			var errs configs.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Load = %v, want configs.Errors", err)
			}
			e := errs[0]
			t.Log(e)
			if len(errs) != 1 {
				t.Errorf("want exactly one error, got %d:\n%v", len(errs), err)
			}
			if e.File != wantFile || e.Line != tc.line || e.Key != tc.key {
				t.Errorf("error at %s:%d key %q, want %s:%d key %q\n%v", e.File, e.Line, e.Key, wantFile, tc.line, tc.key, e)
			}
			// The message, not Error(): the path holds the test's name.
			for _, w := range tc.wanted {
				if !strings.Contains(strings.ToLower(e.Msg), strings.ToLower(w)) {
					t.Errorf("message %q lacks %q", e.Msg, w)
				}
			}
		})
	}
}

// TestOneRunListsEveryError: one load reports every problem of a config,
// each at its line: a value that does not decode hides neither the
// device's other problems nor its tags', a device-level problem hides no
// tag's, and the checks that span devices and the topic layout come in the
// same run as the rest. What only follows from a value that did not decode
// is not reported a second time.
func TestOneRunListsEveryError(t *testing.T) {
	type want struct {
		line int
		key  string
		msg  string
	}
	const gw = "[gateway]\nid = \"g\"\n"
	// dev is a modbus-tcp device at 127.0.0.1, 4 lines, then extra.
	dev := func(name, extra string) string {
		return "[[device]]\nname = \"" + name + "\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1\"\n" + extra
	}
	cases := []struct {
		name string
		cfg  string
		want []want
	}{
		{"unit_id with a bad order and a bad duration",
			gw + dev("m", "unit_id = 300\npoll_interval = \"fast\"\n[[device.tag]]\nname = \"a\"\narea = \"holding\"\naddress = 0\ntype = \"float32\"\norder = \"XYZW\"\n"),
			[]want{{7, "device[0].unit_id", "unit_id = 300: allowed are 0..255"},
				{8, "device[0].poll_interval", `invalid duration "fast"`},
				{14, "device[0].tag[0].order", `unknown order "XYZW"`}}},
		{"a unit_id that does not decode and a tag overlap",
			gw + dev("m", "unit_id = \"one\"\n[[device.tag]]\nname = \"a\"\narea = \"holding\"\naddress = 0\ntype = \"float32\"\n[[device.tag]]\nname = \"b\"\narea = \"holding\"\naddress = 1\ntype = \"uint16\"\n"),
			[]want{{7, "device[0].unit_id", "expected an integer"},
				{16, "device[0].tag[1].address", `tag "b" (holding_register 1..1) overlaps tag "a"`}}},
		{"a device setting and a tag",
			gw + dev("m", "max_registers = 300\n[[device.tag]]\nname = \"a\"\narea = \"coil\"\naddress = 0\ntype = \"float32\"\n"),
			[]want{{7, "device[0].max_registers", "max_registers = 300"},
				{12, "device[0].tag[0].type", `type = "float32" is not allowed in area coil`}}},
		{"a tag value that does not decode, nothing it causes",
			gw + dev("m", "[[device.tag]]\nname = \"a\"\narea = \"holding\"\naddress = \"zero\"\ntype = \"uint16\"\n"),
			[]want{{10, "device[0].tag[0].address", "expected an integer"}}},
		{"a duplicate device name and the same device's unit_id",
			gw + dev("m", "[[device.tag]]\nname = \"a\"\narea = \"holding\"\naddress = 0\ntype = \"uint16\"\n") +
				dev("m", "unit_id = 300\n[[device.tag]]\nname = \"a\"\narea = \"holding\"\naddress = 0\ntype = \"uint16\"\n"),
			[]want{{13, "device[1].name", `"m" is already the name of device[0] (line 3)`},
				{16, "device[1].unit_id", "unit_id = 300"}}},
		{"a map value that does not decode and an inline tag",
			gw + dev("m", "map = \"meter\"\n[[device.tag]]\nname = \"a\"\narea = \"coil\"\naddress = 0\ntype = \"float32\"\n"),
			[]want{{-3, "tag[0].address", "expected an integer"},
				{12, "device[0].tag[0].type", `type = "float32" is not allowed in area coil`}}},
		{"a device error, the port's line settings and the topic template",
			"[gateway]\nid = \"g\"\ntopic_template = \"{prefix}/{nope}/{tag}\"\n" +
				dev("m", "unit_id = 300\n[[device.tag]]\nname = \"a\"\narea = \"holding\"\naddress = 0\ntype = \"uint16\"\n") +
				"[[device]]\nname = \"r1\"\ndriver = \"modbus-rtu\"\nport = \"/dev/ttyS9\"\nbaud = 9600\n[[device.tag]]\nname = \"x\"\narea = \"holding\"\naddress = 0\ntype = \"uint16\"\n" +
				"[[device]]\nname = \"r2\"\ndriver = \"modbus-rtu\"\nport = \"/dev/ttyS9\"\nbaud = 19200\nunit_id = 2\n[[device.tag]]\nname = \"x\"\narea = \"holding\"\naddress = 0\ntype = \"uint16\"\n",
			[]want{{3, "gateway.topic_template", "unknown placeholder {nope}"},
				{8, "device[0].unit_id", "unit_id = 300"},
				{28, "device[2].baud", `port /dev/ttyS9 is 9600 8E1 for device "r1" but 19200 8E1 here`}}},
	}
	// A want with a negative line is in maps/meter.toml, at line -line.
	const meter = "[[tag]]\nname = \"v\"\naddress = \"one\"\narea = \"input\"\ntype = \"uint16\"\n"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "edged.toml")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "maps"), 0o755); err != nil {
				t.Fatal(err)
			}
			mapPath := filepath.Join(dir, "maps", "meter.toml")
			if err := os.WriteFile(mapPath, []byte(meter), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path, nil)
			var errs configs.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load = %v, want configs.Errors", err)
			}
			if len(errs) != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(errs) {
					t.Errorf("missing: line %d %s: %s", w.line, w.key, w.msg)
					continue
				}
				e := errs[i]
				file, line := path, w.line
				if line < 0 {
					file, line = mapPath, -line
				}
				if e.File != file || e.Line != line || e.Key != w.key || !strings.Contains(e.Msg, w.msg) {
					t.Errorf("error %d is\n  %v\nwant line %d key %s with %q", i, e, w.line, w.key, w.msg)
				}
			}
		})
	}
}
