package modbus

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edged-gw/edged/mapping"
)

// decodeDevice decodes one [[device]] table the way the config loader
// does: strictly, into a fresh NewTCP, then the map file, then Init.
func decodeDevice(t testing.TB, doc, mapDoc string) (*TCP, error) {
	t.Helper()
	var file struct {
		Device []toml.Primitive `toml:"device"`
	}
	md, err := toml.Decode(doc, &file)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(file.Device) != 1 {
		t.Fatalf("%d [[device]] tables, want 1", len(file.Device))
	}
	dev := NewTCP()
	if err := md.PrimitiveDecode(file.Device[0], dev); err != nil {
		t.Fatalf("decode device: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("undecoded keys: %v", und)
	}
	if mapDoc != "" {
		mmd, err := toml.Decode(mapDoc, dev.MapTarget())
		if err != nil {
			t.Fatalf("decode map: %v", err)
		}
		if und := mmd.Undecoded(); len(und) > 0 {
			t.Fatalf("undecoded map keys: %v", und)
		}
	}
	return dev, dev.Init()
}

func TestSampleConfig(t *testing.T) {
	dev, err := decodeDevice(t, SampleConfig(), "")
	if err != nil {
		t.Fatalf("sample.toml does not Init: %v", err)
	}
	if dev.Name != "boiler_1" || dev.Driver != "modbus-tcp" || dev.Address != "192.168.1.10:502" {
		t.Errorf("device keys: %q %q %q", dev.Name, dev.Driver, dev.Address)
	}
	if len(dev.Tags()) != 5 {
		t.Fatalf("%d tags, want 5", len(dev.Tags()))
	}
	// The embedded mapping.Spec is flattened: its keys sit in the tag table.
	temp := dev.Tag[0]
	if temp.Name != "supply_temp" || temp.Type != mapping.TypeFloat32 || temp.Order != mapping.OrderCDAB ||
		temp.Unit != "°C" || temp.Deadband != 0.1 || temp.Area != InputRegister || temp.Address != 0 {
		t.Errorf("supply_temp decoded as %+v", temp)
	}
	if p := dev.Tag[1]; p.Scale != 0.01 || p.MaxSilence.D() != time.Minute || p.Area != HoldingRegister {
		t.Errorf("pressure decoded as %+v", p)
	}
	if b := dev.Tag[2]; b.Bit == nil || *b.Bit != 3 {
		t.Errorf("burner_fault bit = %v", b.Bit)
	}
	if !dev.Tag[3].OnChange || dev.Tag[4].Length != 8 {
		t.Errorf("pump_running / serial_number decoded as %+v / %+v", dev.Tag[3], dev.Tag[4])
	}
}

func TestDefaults(t *testing.T) {
	dev, err := decodeDevice(t, `
[[device]]
name = "d"
driver = "modbus-tcp"
address = "plc.local"
[[device.tag]]
name = "x"
area = "holding"
type = "uint16"
`, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxGap: 16, MaxRegisters: 125, MaxBits: 2000}
	if dev.Limits() != want || dev.UnitID != 1 || dev.Retries != 1 ||
		dev.PollInterval.D() != time.Second || dev.Timeout.D() != time.Second || dev.Address != "plc.local:502" {
		t.Errorf("defaults: %+v unit %d retries %d poll %v timeout %v address %q",
			dev.Limits(), dev.UnitID, dev.Retries, dev.PollInterval, dev.Timeout, dev.Address)
	}

	// unit_id = 0 and max_gap = 0 are kept: zero means something there.
	dev, err = decodeDevice(t, `
[[device]]
address = "10.0.0.1:1502"
unit_id = 0
max_gap = 0
retries = 0
[[device.tag]]
name = "x"
area = "holding"
type = "uint16"
`, "")
	if err != nil {
		t.Fatal(err)
	}
	if dev.UnitID != 0 || dev.MaxGap != 0 || dev.Retries != 0 {
		t.Errorf("explicit zeros overwritten: unit %d gap %d retries %d", dev.UnitID, dev.MaxGap, dev.Retries)
	}
}

func TestAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5":        "10.0.0.5:502",
		"10.0.0.5:1502":   "10.0.0.5:1502",
		" plc.local ":     "plc.local:502",
		"[fe80::1]":       "[fe80::1]:502",
		"fe80::1":         "[fe80::1]:502",
		"[fe80::1]:5020":  "[fe80::1]:5020",
		"localhost:65535": "localhost:65535",
	} {
		got, err := normalizeAddress(in)
		if err != nil || got != want {
			t.Errorf("normalizeAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "host:0", "host:70000", "host:http", ":502", "a b",
		"192.168.10.321:502", "192.168.10.321", "10.0.5:502", "256.1.1.1", "1.2.3.4.5:502"} {
		if _, err := normalizeAddress(in); err == nil {
			t.Errorf("normalizeAddress(%q) accepted", in)
		}
	}
}

func TestArea(t *testing.T) {
	for in, want := range map[string]Area{
		"coil": Coil, "discrete_input": DiscreteInput, "discrete": DiscreteInput,
		"input_register": InputRegister, "input": InputRegister, "Holding_Register": HoldingRegister, "holding": HoldingRegister,
	} {
		var a Area
		if err := a.UnmarshalText([]byte(in)); err != nil || a != want {
			t.Errorf("%q → %v, %v; want %v", in, a, err, want)
		}
		if b, _ := want.MarshalText(); string(b) != want.String() {
			t.Errorf("MarshalText(%v) = %q", want, b)
		}
	}
	var a Area
	err := a.UnmarshalText([]byte("register"))
	if err == nil || !strings.Contains(err.Error(), AreaNames) {
		t.Errorf("unknown area error %v does not list the allowed names", err)
	}
}

func TestMapAndInlineTags(t *testing.T) {
	const mapDoc = `
[[tag]]
name = "a"
area = "holding"
address = 0
type = "float32"
[[tag]]
name = "b"
area = "coil"
address = 3
type = "bool"
`
	dev, err := decodeDevice(t, `
[[device]]
name = "d"
map = "meter"
address = "h"
[[device.tag]]
name = "c"
area = "input"
address = 7
type = "int16"
`, mapDoc)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range dev.Tags() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("Tags() = %v, want map tags then inline tags", names)
	}
	if got := len(dev.Requests()); got != 3 {
		t.Errorf("%d requests, want 3 (one per area)", got)
	}

	_, err = decodeDevice(t, `
[[device]]
name = "d"
map = "meter"
address = "h"
[[device.tag]]
name = "b"
area = "input"
address = 7
type = "int16"
`, mapDoc)
	if err == nil || !strings.Contains(err.Error(), `tag "b" is defined in map "meter" and again inline`) {
		t.Errorf("inline tag shadowing a map tag: err = %v", err)
	}
}

func TestInitErrors(t *testing.T) {
	const head = "[[device]]\nname = \"d\"\naddress = \"10.0.0.1\"\n"
	tag := func(body string) string { return "[[device.tag]]\n" + body + "\n" }
	tests := []struct {
		name string
		key  string // of one of the errors, relative to the device table; "" = not a *configs.Error
		doc  string
		want []string // all must appear in the error
	}{
		{"duplicate tag", "tag[1].name", tag(`name = "t1"
area = "holding"
address = 0
type = "uint16"`) + tag(`name = "t1"
area = "holding"
address = 5
type = "uint16"`), []string{`tag "t1" is defined twice`, "holding_register 0", "holding_register 5", "must be unique"}},
		{"partial overlap", "tag[1].address", tag(`name = "wide"
area = "holding"
address = 10
type = "uint32"`) + tag(`name = "narrow"
area = "holding"
address = 11
type = "float32"`), []string{`tag "narrow" (holding_register 11..12) overlaps tag "wide" (holding_register 10..11)`, "exactly the same"}},
		{"coil with float32", "tag[0].type", tag(`name = "c"
area = "coil"
address = 1
type = "float32"`), []string{`tag "c" (coil 1)`, `type = "float32" is not allowed in area coil`, `must be "bool"`}},
		{"bit on a coil", "tag[0].bit", tag(`name = "c"
area = "discrete"
address = 1
type = "bool"
bit = 2`), []string{`tag "c" (discrete_input 1)`, "bit is not allowed in area discrete_input"}},
		{"address out of range", "tag[0].address", tag(`name = "far"
area = "input"
address = 70000
type = "uint16"`), []string{`tag "far"`, "address = 70000", "allowed are 0..65535"}},
		{"runs past the last register", "tag[0].address", tag(`name = "edge"
area = "input"
address = 65534
type = "float64"`), []string{`tag "edge"`, "ends at 65537", "at most 65532"}},
		{"bit on non-bool", "tag[0].bit", tag(`name = "n"
area = "holding"
address = 1
type = "uint16"
bit = 4`), []string{`tag "n" (holding_register 1)`, `bit is only for type = "bool"`}},
		{"bit 16", "tag[0].bit", tag(`name = "n"
area = "holding"
address = 1
type = "bool"
bit = 16`), []string{`tag "n"`, "allowed are 0 (least significant) to 15"}},
		{"missing area", "tag[0].area", tag(`name = "n"
address = 1
type = "uint16"`), []string{`tag "n" (address 1)`, "area is missing", AreaNames}},
		{"missing name", "tag[0].name", tag(`area = "holding"
type = "uint16"`), []string{"tag[0] (holding_register 0)", "name is empty"}},
		{"string longer than max_registers", "tag[0]", "max_registers = 10\n" + tag(`name = "s"
area = "holding"
type = "string"
length = 20`), []string{`tag "s"`, "needs 20 registers but max_registers = 10"}},
		{"unit_id 300", "unit_id", "unit_id = 300\n" + tag(`name = "x"
area = "holding"
type = "uint16"`), []string{"unit_id = 300", "allowed are 0..255"}},
		{"max_registers 200", "max_registers", "max_registers = 200\n", []string{"max_registers = 200", "allowed are 1..125"}},
		{"max_bits 2001", "max_bits", "max_bits = 2001\n", []string{"max_bits = 2001", "allowed are 1..2000"}},
		{"max_gap negative", "max_gap", "max_gap = -1\n", []string{"max_gap = -1", "allowed are 0..125"}},
		{"retries 11", "retries", "retries = 11\n", []string{"retries = 11", "allowed are 0..10"}},
		{"bad write_function", "tag[0].write_function", tag(`name = "w"
area = "holding"
address = 1
type = "uint16"
write_function = 5`), []string{`tag "w" (holding_register 1)`, "write_function = 5", "allowed for a holding register are 6"}},
		{"write_function 6 for two registers", "tag[0].write_function", tag(`name = "w"
area = "holding"
address = 1
type = "float32"
write_function = 6`), []string{"write_function = 6 writes one register", "use 16"}},
		{"writable input register", "tag[0].writable", tag(`name = "w"
area = "input"
address = 1
type = "uint16"
writable = true`), []string{"writable = true in area input_register", "read-only"}},
		{"length on a number", "tag[0].length", tag(`name = "n"
area = "holding"
type = "uint16"
length = 2`), []string{`length is only for type = "string"`}},
		{"min without writable", "tag[0].writable", tag(`name = "n"
area = "holding"
type = "uint16"
min = 1.0`), []string{"set writable = true"}},
		{"scale on a bool", "tag[0].scale", tag(`name = "n"
area = "coil"
type = "bool"
scale = 2.0`), []string{"scale and offset are only for numeric types"}},
		{"offset on a string", "tag[0].offset", tag(`name = "n"
area = "holding"
type = "string"
length = 2
offset = 1.0`), []string{"scale and offset are only for numeric types"}},
		{"no tags", "", "", []string{"no tags", "[[device.tag]]"}},
		{"all problems at once", "unit_id", "unit_id = -1\nmax_bits = 0\nmax_registers = 126\n", []string{"unit_id = -1", "max_registers = 126"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := head + tt.doc
			_, err := decodeDevice(t, doc, "")
			if err == nil {
				t.Fatalf("Init accepted:\n%s", doc)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			checkKey(t, err, tt.key, false, tt.want[0])
		})
	}
}

func TestIdenticalAndBitOverlapsAllowed(t *testing.T) {
	_, err := decodeDevice(t, `
[[device]]
address = "h"
[[device.tag]]
name = "raw"
area = "holding"
address = 10
type = "uint16"
[[device.tag]]
name = "scaled"
area = "holding"
address = 10
type = "uint16"
scale = 0.1
[[device.tag]]
name = "signed"
area = "holding"
address = 10
type = "int16"
[[device.tag]]
name = "bit"
area = "holding"
address = 10
type = "bool"
bit = 15
[[device.tag]]
name = "bit_in_float"
area = "holding"
address = 12
type = "bool"
bit = 0
[[device.tag]]
name = "float"
area = "holding"
address = 11
type = "float32"
[[device.tag]]
name = "same_address_other_area"
area = "input"
address = 11
type = "float64"
`, "")
	if err != nil {
		t.Fatal(err)
	}
}

// TestWarningsOneBasedAddresses: tags at holding 40001..49999 or input
// 30001..39999 get one warning per area naming the likely 0-based address,
// keyed to the first such tag (in the map file or the device table); a
// device that has 40000 or beyond 49999 numbers its registers that high for
// real and gets none.
func TestWarningsOneBasedAddresses(t *testing.T) {
	const mapDoc = "[[tag]]\nname = \"m\"\narea = \"holding\"\naddress = 40101\ntype = \"uint16\"\n"
	tests := []struct {
		name, tags, mapDoc string
		key                string // of the first warning; "" = no warning
		inMap              bool
		want               []string
	}{
		{"holding 40101", tagToml("p", "holding", 40101, "uint16") + tagToml("q", "holding", 40103, "uint16"), "",
			"tag[0].address", false, []string{`tag "p" (holding_register 40101) and 1 more holding_register tags`, "probably address = 100"}},
		{"input 30001", tagToml("i", "input", 30001, "float32"), "",
			"tag[0].address", false, []string{"address = 30001 looks like a 1-based register number (3xxxx = input_register)", "probably address = 0"}},
		{"in the map file", tagToml("inline", "holding", 5, "uint16"), mapDoc,
			"tag[0].address", true, []string{`tag "m"`, "probably address = 100"}},
		{"SunSpec at 40000", tagToml("sid", "holding", 40000, "uint32") + tagToml("w", "holding", 40083, "int16"), "", "", false, nil},
		{"beyond 49999", tagToml("a", "holding", 40010, "uint16") + tagToml("b", "holding", 50010, "uint16"), "", "", false, nil},
		{"0-based", tagToml("a", "holding", 100, "uint16") + tagToml("c", "coil", 40001, "bool"), "", "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "[[device]]\nname = \"d\"\naddress = \"10.0.0.1\"\n"
			if tt.mapDoc != "" {
				doc += "map = \"m\"\n"
			}
			d, err := decodeDevice(t, doc+tt.tags, tt.mapDoc)
			if err != nil {
				t.Fatal(err)
			}
			ws := d.Warnings()
			if tt.key == "" {
				if len(ws) != 0 {
					t.Errorf("warnings %v, want none", ws)
				}
				return
			}
			if len(ws) != 1 {
				t.Fatalf("warnings %v, want one", ws)
			}
			for _, w := range tt.want {
				if !strings.Contains(ws[0].Error(), w) {
					t.Errorf("warning %q\ndoes not contain %q", ws[0], w)
				}
			}
			checkKey(t, ws[0], tt.key, tt.inMap, tt.want[0])
		})
	}
}
