package modbus

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
)

// TestTCPGatewayUnitsShareOneConnection: three unit IDs behind one Modbus
// TCP gateway (one address) are polled over one TCP connection in one
// lane, as such gateways need (they answer one request at a time); a unit
// missing behind the gateway (exception 0B) goes offline without costing
// the others their connection or their rate.
func TestTCPGatewayUnitsShareOneConnection(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetUnitIDs(1, 2, 3)
	sim.SetHolding(0, 42)
	lanes := host.New()
	s := newSink()
	for unit := 1; unit <= 4; unit++ {
		d := device(t, fmt.Sprintf("u%d", unit), sim.Addr(), tagToml("x", "holding", 0, "uint16"))
		d.UnitID = unit
		d.Provision(host.Env{Host: lanes})
		run(t, d, s)
	}
	testwait.For(t, testwait.Timeout, "units 1-3 polled, unit 4 offline", func() bool {
		st, _ := s.state("u4")
		return s.pollCount("u1") >= 5 && s.pollCount("u2") >= 5 && s.pollCount("u3") >= 5 && st == southbound.StateOffline
	})
	for _, name := range []string{"u1", "u2", "u3"} {
		if got := s.samples(name); len(got) != 1 || got[0].Quality != mapping.Good || got[0].Value.Uint != 42 {
			t.Errorf("%s: %v", name, got)
		}
	}
	if n := sim.Accepted(); n != 1 {
		t.Errorf("the gateway saw %d connections, want 1 shared by every unit", n)
	}
	ls := lanes.Lanes()
	if len(ls) != 1 || len(ls[0].Members) != 4 {
		t.Errorf("lanes %+v, want one lane of 4 devices", ls)
	}
}

// rtuTCPDevice decodes one modbus-rtu-tcp [[device]] table.
func rtuTCPDevice(t *testing.T, name, addr string, unit int, tags string) *RTUOverTCP {
	t.Helper()
	doc := fmt.Sprintf("[[device]]\nname = %q\ndriver = \"modbus-rtu-tcp\"\naddress = %q\nunit_id = %d\npoll_interval = \"20ms\"\ntimeout = \"200ms\"\n%s",
		name, addr, unit, tags)
	var file struct {
		Device []toml.Primitive `toml:"device"`
	}
	md, err := toml.Decode(doc, &file)
	if err != nil {
		t.Fatal(err)
	}
	d := NewRTUOverTCP()
	if err := md.PrimitiveDecode(file.Device[0], d); err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("undecoded keys: %v", und)
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	d.minBackoff, d.maxBackoff = 20*time.Millisecond, 500*time.Millisecond
	return d
}

// TestRTUOverTCP: driver = "modbus-rtu-tcp" speaks raw RTU frames (CRC
// checked by the in-process RTU responder) over one socket to a
// transparent converter; two slaves share its connection and lane, every
// type decodes, and a write lands once.
func TestRTUOverTCP(t *testing.T) {
	sim := modbussim.New()
	fillValues(sim)
	conv, err := sim.ServeRTUOverTCP("127.0.0.1:0", modbussim.RTUOptions{Units: []byte{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conv.Close() })
	lanes := host.New()
	s := newSink()
	a := rtuTCPDevice(t, "a", conv.Addr(), 1, valueTags)
	b := rtuTCPDevice(t, "b", conv.Addr(), 2, tagToml("level", "input", 7, "uint32")+tagToml("sp", "holding", 300, "uint16", "writable = true"))
	for _, d := range []*RTUOverTCP{a, b} {
		d.Provision(host.Env{Host: lanes})
		run(t, d, s)
	}
	testwait.For(t, testwait.Timeout, "3 polls of each", func() bool { return s.pollCount("a") >= 3 && s.pollCount("b") >= 3 })
	for _, smp := range s.samples("a") {
		if smp.Quality != mapping.Good {
			t.Errorf("%s: quality %v err %v", smp.Tag.Name, smp.Quality, smp.Err)
		}
		if smp.Tag.Name == "serial" && smp.Value.Str != "EDGE-01" {
			t.Errorf("serial = %v", smp.Value)
		}
	}
	if got := s.samples("b"); len(got) != 2 || got[0].Value.Uint != 3_000_000_000 {
		t.Errorf("b: %v", got)
	}
	writes := sim.Writes()
	if err := b.Write(t.Context(), "sp", mapping.Value{Kind: mapping.KindUint, Uint: 77}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := sim.Holding(300, 1); got[0] != 77 || sim.Writes() != writes+1 {
		t.Errorf("register 300 = %v after %d write(s), want 77 after 1", got, sim.Writes()-writes)
	}
	if n := sim.Accepted(); n != 1 {
		t.Errorf("the converter saw %d connections, want 1", n)
	}
	if st := a.Stats(); st.Errors != 0 || st.Requests == 0 {
		t.Errorf("stats of a: %+v (a CRC or framing error would count)", st)
	}
	if !strings.Contains(fmt.Sprint(lanes.Lanes()[0].Key), "rtu-tcp:") {
		t.Errorf("lane %q", lanes.Lanes()[0].Key)
	}
}
