package mapping_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound/modbus"
)

// modbusOnly gives the loader the real Modbus TCP driver, whose tags embed
// mapping.Spec: the keys precision and nan are decoded and checked exactly
// as in edged.
type modbusOnly struct{}

func (modbusOnly) New(driver string) (configs.Settings, bool) {
	if driver == "modbus-tcp" {
		return modbus.NewTCP(), true
	}
	return nil, false
}

func (modbusOnly) Names() []string { return []string{"modbus-tcp"} }

// TestFormattingKeysInConfig: precision and nan through the real loader —
// accepted when right, and otherwise one error at the key's file and line
// that says what is allowed.
func TestFormattingKeysInConfig(t *testing.T) {
	// Lines 1-13; the key under test is line 14.
	const head = "[gateway]\nid = \"g\"\n\n[[device]]\nname = \"m\"\ndriver = \"modbus-tcp\"\naddress = \"127.0.0.1:502\"\n\n  [[device.tag]]\n  name = \"temp\"\n  area = \"holding\"\n  address = 0\n  type = \"int16\"\n"
	for _, tt := range []struct {
		name string
		keys string
		key  string   // "" = loads
		want []string // in the message
	}{
		{"precision and nan accepted", "  precision = 2\n  nan = \"null\"\n", "", nil},
		{"precision too large", "  precision = 16\n", "device[0].tag[0].precision", []string{"precision = 16", "0 (whole numbers) to 15"}},
		{"negative precision", "  precision = -1\n", "device[0].tag[0].precision", []string{"precision = -1", "0 (whole numbers) to 15"}},
		{"precision not a number", "  precision = \"two\"\n", "device[0].tag[0].precision", []string{"integer"}},
		{"unknown nan", "  nan = \"zero\"\n", "device[0].tag[0].nan", []string{`unknown nan "zero"`, `"string"`, `"null"`, `"drop"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edged.toml")
			if err := os.WriteFile(path, []byte(head+tt.keys), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := configs.Load(path, modbusOnly{})
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var errs configs.Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("Load = %v, want one configs.Error", err)
			}
			e := errs[0]
			if e.File != path || e.Line != 14 || e.Key != tt.key {
				t.Errorf("error at %s:%d key %q, want %s:14 key %q\n%v", e.File, e.Line, e.Key, path, tt.key, e)
			}
			for _, w := range tt.want {
				if !strings.Contains(e.Msg, w) {
					t.Errorf("message %q lacks %q", e.Msg, w)
				}
			}
		})
	}
}
