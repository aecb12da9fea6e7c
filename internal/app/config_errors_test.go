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
			_, err := configs.Load(path, Drivers(nil))
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
