package modbus

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

var writeTags = tagToml("coil5", "coil", 1, "bool", "writable = true") +
	tagToml("coil15", "coil", 2, "bool", "writable = true", "write_function = 15") +
	tagToml("reg6", "holding", 10, "int16", "writable = true") +
	tagToml("reg16", "holding", 11, "uint16", "writable = true", "write_function = 16") +
	tagToml("f_cdab", "holding", 12, "float32", "writable = true", `order = "CDAB"`) +
	tagToml("d_dcba", "holding", 14, "float64", "writable = true", `order = "DCBA"`, "scale = 0.5") +
	tagToml("bit3", "holding", 20, "bool", "bit = 3", "writable = true") +
	tagToml("bit9_16", "holding", 20, "bool", "bit = 9", "writable = true", "write_function = 16") +
	tagToml("name", "holding", 30, "string", "length = 3", "writable = true") +
	tagToml("ro", "holding", 40, "uint16") +
	tagToml("bounded", "holding", 41, "uint16", "writable = true", "min = 10", "max = 20") +
	tagToml("slow", "holding", 42, "uint16", "writable = true", `write_interval = "1h"`)

// testWrites runs every function code and every refusal against sim
// through w (a started TCP or RTU device).
func testWrites(t *testing.T, sim *modbussim.Server, w southbound.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sim.SetHolding(20, 0b1000_0000_0000_0001) // other bits must survive
	u := func(n uint64) mapping.Value { return mapping.Value{Kind: mapping.KindUint, Uint: n} }
	f := func(x float64) mapping.Value { return mapping.Value{Kind: mapping.KindFloat, Float: x} }
	b := func(on bool) mapping.Value { return mapping.Value{Kind: mapping.KindBool, Bool: on} }
	for _, c := range []struct {
		tag string
		v   mapping.Value
	}{
		{"coil5", b(true)}, {"coil15", b(true)},
		{"reg6", mapping.Value{Kind: mapping.KindInt, Int: -2}}, {"reg16", u(0xBEEF)},
		{"f_cdab", f(21.5)}, {"d_dcba", f(3)},
		{"bit3", b(true)}, {"bit9_16", b(true)},
		{"name", mapping.Value{Kind: mapping.KindString, Str: "ABCDE"}},
		{"bounded", u(15)}, {"slow", u(1)},
	} {
		if err := w.Write(ctx, c.tag, c.v); err != nil {
			t.Errorf("write %s: %v", c.tag, err)
		}
	}
	if got := sim.Coils(1, 2); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("coils %v", got)
	}
	want := []uint16{0xFFFE, 0xBEEF, 0x0000, 0x41AC} // -2; 0xBEEF; 21.5 word-swapped
	if got := sim.Holding(10, 4); !slices.Equal(got, want) {
		t.Errorf("holding 10..13 = %04x, want %04x", got, want)
	}
	// 3 / 0.5 = 6.0 = 0x4018_0000_0000_0000, DCBA: bytes reversed.
	if got := sim.Holding(14, 4); !slices.Equal(got, []uint16{0, 0, 0, 0x1840}) {
		t.Errorf("float64 DCBA = %04x", got)
	}
	if got := sim.Holding(20, 1)[0]; got != 0b1000_0010_0000_1001 {
		t.Errorf("bit writes left %016b, want the other bits kept", got)
	}
	if got := sim.Holding(30, 3); !slices.Equal(got, []uint16{0x4142, 0x4344, 0x4500}) {
		t.Errorf("string = %04x", got)
	}
	if err := w.Write(ctx, "bit3", b(false)); err != nil || sim.Holding(20, 1)[0] != 0b1000_0010_0000_0001 {
		t.Errorf("clear bit3: %v, register %016b", err, sim.Holding(20, 1)[0])
	}

	// Refused writes never reach the wire.
	before := sim.Writes()
	for _, c := range []struct {
		tag string
		v   mapping.Value
	}{{"ro", u(1)}, {"bounded", u(21)}, {"bounded", u(9)}, {"slow", u(2)}} {
		err := w.Write(ctx, c.tag, c.v)
		if !errors.Is(err, mapping.ErrWriteRefused) {
			t.Errorf("write %s = %v: %v, want refused", c.tag, c.v, err)
		}
	}
	if err := w.Write(ctx, "reg6", u(70000)); !errors.Is(err, mapping.ErrRange) {
		t.Errorf("out of int16 range: %v", err)
	}
	if err := w.Write(ctx, "nope", u(1)); err == nil {
		t.Error("write to an unknown tag succeeded")
	}
	if n := sim.Writes() - before; n != 0 {
		t.Errorf("%d refused writes reached the device", n)
	}
}

func TestWritesTCP(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	d := device(t, "plc", sim.Addr(), writeTags)
	s := newSink()
	run(t, d, s)
	testWrites(t, sim, d)
}

func TestWritesRTU(t *testing.T) {
	p := ptyPair(t)
	sim := modbussim.New()
	serveRTU(t, sim, p.B, modbussim.RTUOptions{Units: []byte{5}})
	d := rtuDevice(t, "plc", p.A, 5, "", writeTags)
	s := newSink()
	run(t, d, s)
	testWrites(t, sim, d)
}

func TestWriteConfigErrors(t *testing.T) {
	for _, c := range []struct{ tags, want string }{
		{tagToml("x", "input", 0, "uint16", "writable = true"), "read-only"},
		{tagToml("x", "holding", 0, "float32", "write_function = 6"), "write_function = 6 writes one register"},
		{tagToml("x", "coil", 0, "bool", "write_function = 6"), "allowed for a coil are 5"},
		{tagToml("x", "holding", 0, "uint16", "write_function = 5"), "allowed for a holding register are 6"},
	} {
		_, err := decodeDevice(t, "[[device]]\nname = \"d\"\naddress = \"127.0.0.1\"\n"+c.tags, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.tags, err, c.want)
		}
	}
}
