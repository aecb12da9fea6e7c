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

// Broken configs through the real loader and the real modbus-tcp driver:
// each must produce one specific error an installer can act on, naming the
// file, the line, the key and what is allowed.
func TestBrokenConfigsGiveSpecificErrors(t *testing.T) {
	const head = "[gateway]\nid = \"g\"\n\n[[device]]\nname = \"m\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1:502\"\n"
	tag := func(name, area string, addr int, typ string) string {
		return "\n  [[device.tag]]\n  name = \"" + name + "\"\n  area = \"" + area + "\"\n  address = " + strconv.Itoa(addr) + "\n  type = \"" + typ + "\"\n"
	}
	cases := []struct {
		name   string
		cfg    string
		file   string // "" = the main file
		line   int    // 0 = do not check
		key    string
		wanted []string
	}{
		{"unknown key", head + "pol_interval = \"1s\"\n" + tag("a", "holding", 0, "uint16"),
			"", 8, "device[0].pol_interval", []string{"unknown key", "did you mean poll_interval?"}},
		{"bad type", head + "unit_id = \"one\"\n" + tag("a", "holding", 0, "uint16"),
			"", 8, "device[0].unit_id", []string{"expected an integer"}},
		{"bad duration", head + "poll_interval = \"fast\"\n" + tag("a", "holding", 0, "uint16"),
			"", 8, "device[0].poll_interval", []string{`invalid duration "fast"`, `"500ms"`}},
		{"unknown data type", head + tag("a", "holding", 0, "real"),
			"", 0, "type", []string{`unknown type "real"`, "float32"}},
		{"duplicate tag name", head + tag("a", "holding", 0, "uint16") + tag("a", "holding", 5, "uint16"),
			"", 0, "device[0]", []string{`"a"`, "duplicate"}},
		{"overlapping addresses", head + tag("a", "holding", 0, "float32") + tag("b", "holding", 1, "float32"),
			"", 0, "device[0]", []string{"overlap"}},
		{"address out of range", head + tag("a", "holding", 65535, "float32"),
			"", 0, "device[0]", []string{"65535"}},
		{"missing map", head + "map = \"pm5560\"\n",
			"", 8, "device[0].map", []string{`map "pm5560" not found`, "pm5560.toml does not exist"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "edged.toml")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
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
			if e.File != path || (tc.line != 0 && e.Line != tc.line) || !strings.Contains(e.Key, tc.key) {
				t.Errorf("error at %s:%d key %q, want %s:%d key containing %q\n%v", e.File, e.Line, e.Key, path, tc.line, tc.key, e)
			}
			if e.Line == 0 {
				t.Errorf("error without a line: %v", e)
			}
			for _, w := range tc.wanted {
				if !strings.Contains(strings.ToLower(e.Error()), strings.ToLower(w)) {
					t.Errorf("error %q lacks %q", e.Error(), w)
				}
			}
		})
	}
}
