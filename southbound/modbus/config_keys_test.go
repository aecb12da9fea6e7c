package modbus

import (
	"errors"
	"strings"
	"testing"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
)

// checkKey fails unless err holds a *configs.Error with key (relative to
// the device table, or with inMap to the map file) whose message contains
// msg. For key "", err must hold a plain error (reported at the device)
// containing msg.
func checkKey(t *testing.T, err error, key string, inMap bool, msg string) {
	t.Helper()
	var got []string
	for _, e := range leaves(err) {
		var ce *configs.Error
		if !errors.As(e, &ce) {
			if key == "" && strings.Contains(e.Error(), msg) {
				return
			}
			got = append(got, "plain: "+e.Error())
			continue
		}
		if key != "" && ce.Key == key && ce.InMap == inMap && ce.File == "" && strings.Contains(ce.Msg, msg) {
			return
		}
		got = append(got, ce.Key+" (map "+map[bool]string{true: "yes", false: "no"}[ce.InMap]+"): "+ce.Msg)
	}
	t.Errorf("no error with key %q (map %v) and %q; got:\n%s", key, inMap, msg, strings.Join(got, "\n"))
}

func leaves(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// Tags from the map file are keyed tag[i] of the map (InMap), inline tags
// tag[i] of the device table, whichever tag comes first.
func TestMapTagKeys(t *testing.T) {
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
type = "float32"
`
	const device = `
[[device]]
name = "d"
map = "meter"
address = "h"
[[device.tag]]
name = "%s"
area = "holding"
address = %s
type = "uint16"
write_function = %s
`
	// fill fills in the inline tag's name, address and write_function.
	fill := func(name, address, wf string) string {
		out := device
		for _, v := range []string{name, address, wf} {
			out = strings.Replace(out, "%s", v, 1)
		}
		return out
	}
	tests := []struct {
		name   string
		device string
		key    string
		inMap  bool
		msg    string
	}{
		{"map tag type", fill("c", "10", "0"), "tag[1].type", true, `tag "b" (coil 3): type = "float32" is not allowed`},
		{"inline tag write_function", fill("c", "10", "5"), "tag[0].write_function", false, `tag "c" (holding_register 10): write_function = 5`},
		{"inline tag shadowing a map tag", fill("a", "10", "0"), "tag[0].name", false, `tag "a" is defined in map "meter" and again inline`},
		{"inline tag overlapping a map tag", fill("c", "1", "0"), "tag[0].address", false, `tag "c" (holding_register 1..1) overlaps tag "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeDevice(t, tt.device, mapDoc)
			if err == nil {
				t.Fatal("Init accepted it")
			}
			checkKey(t, err, tt.key, tt.inMap, tt.msg)
		})
	}

	// A map tag overlapping a later map tag: the later one's address, in
	// the map.
	_, err := decodeDevice(t, fill("c", "10", "0"), `
[[tag]]
name = "x"
area = "input"
address = 5
type = "uint32"
[[tag]]
name = "y"
area = "input"
address = 4
type = "uint32"
`)
	checkKey(t, err, "tag[0].address", true, `tag "x" (input_register 5..6) overlaps tag "y"`)
}

// Device settings are keyed to their key.
func TestSettingKeys(t *testing.T) {
	tag := Tag{Spec: mapping.Spec{Name: "t", Type: mapping.TypeUint16}, Area: HoldingRegister}
	tcp := NewTCP()
	tcp.Address, tcp.Tag = "10.0.0.1:0", []Tag{tag}
	checkKey(t, tcp.Init(), "address", false, `address = "10.0.0.1:0"`)

	for _, tt := range []struct {
		set      func(r *RTU)
		key, msg string
	}{
		{func(r *RTU) { r.Port = " " }, "port", "port is missing"},
		{func(r *RTU) { r.Baud = 100 }, "baud", "baud = 100: allowed are 300..4000000"},
		{func(r *RTU) { r.DataBits = 9 }, "data_bits", "data_bits = 9"},
		{func(r *RTU) { r.Parity = "mark" }, "parity", `parity = "mark"`},
		{func(r *RTU) { r.StopBits = 3 }, "stop_bits", "stop_bits = 3"},
		{func(r *RTU) { r.UnitID = 0 }, "unit_id", "unit_id = 0: allowed are 1..247"},
		{func(r *RTU) { r.Timeout = -1 }, "timeout", "must not be negative"},
		{func(r *RTU) { r.Turnaround = configs.Duration(11e9) }, "turnaround", "allowed are 0..10s"},
		{func(r *RTU) { r.MaxBits = 5000 }, "max_bits", "max_bits = 5000"},
	} {
		r := NewRTU()
		r.Port, r.Tag = "/dev/ttyUSB0", []Tag{tag}
		tt.set(r)
		checkKey(t, r.Init(), tt.key, false, tt.msg)
	}
}
