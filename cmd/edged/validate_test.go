package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestValidateCatchesLikelyMistakes: what the config loader accepted but
// was wrong, now reported by `edged validate` at file:line: key. An IPv4
// literal out of range is an error (before, it passed and failed later as a
// DNS lookup); a register address that looks 1-based is a warning naming
// the 0-based address (exit 0: it may be right), in the main file or in the
// map file where the tag is written.
func TestValidateCatchesLikelyMistakes(t *testing.T) {
	const head = "[gateway]\nid = \"gw\"\n\n[[device]]\nname = \"m1\"\ndriver = \"modbus-tcp\"\n" // device at line 4
	tag := func(name, area string, addr int) string {
		return "  [[device.tag]]\n  name = \"" + name + "\"\n  area = \"" + area + "\"\n  address = " + strconv.Itoa(addr) + "\n  type = \"uint16\"\n"
	}
	tests := []struct {
		name    string
		main    string
		mapFile string
		code    int
		stderr  []string // each must appear
		none    string   // must not appear
	}{
		{"IPv4 out of range", head + "address = \"192.168.10.321:502\"\n" + tag("t", "holding", 0), "", exitConfig,
			[]string{"edged.toml:7: device[0].address: ", `address = "192.168.10.321:502": 192.168.10.321 is not an IPv4 address`}, ""},
		{"three numbers", head + "address = \"10.0.5\"\n" + tag("t", "holding", 0), "", exitConfig,
			[]string{"edged.toml:7: device[0].address: ", "10.0.5 is not an IPv4 address"}, ""},
		{"holding 40101", head + "address = \"127.0.0.1\"\n" + tag("a", "holding", 100) + tag("b", "holding", 40101), "", exitOK,
			[]string{"1 warning(s)", "edged.toml:16: device[0].tag[1].address: ", "address = 40101 looks like a 1-based register number", "probably address = 100"}, ""},
		{"input 30005 in a map", head + "address = \"127.0.0.1\"\nmap = \"meter\"\n",
			"[[tag]]\nname = \"v\"\narea = \"input\"\naddress = 30005\ntype = \"uint16\"\n", exitOK,
			[]string{"maps/meter.toml:4: tag[0].address: ", "probably address = 4"}, ""},
		{"SunSpec", head + "address = \"127.0.0.1\"\n" + tag("sid", "holding", 40000) + tag("w", "holding", 40083), "", exitOK,
			nil, "warning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeConfig(t, dir, tt.main)
			if tt.mapFile != "" {
				if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "maps", "meter.toml"), []byte(tt.mapFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, _, errOut := runCLI("validate", "-c", path)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, errOut)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tt.none != "" && strings.Contains(errOut, tt.none) {
				t.Errorf("stderr has %q:\n%s", tt.none, errOut)
			}
		})
	}
}
