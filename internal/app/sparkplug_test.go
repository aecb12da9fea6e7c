package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
	"github.com/edged-gw/edged/northbound/sparkplughost"
	"github.com/edged-gw/edged/southbound/door"
)

// TestSparkplugUpstream runs edged as a Sparkplug B edge node against
// Debian's mosquitto, a primary host simulation and Eclipse Tahu's decoder:
// births wait for the host's STATE; a host outage keeps data in the buffer
// and replays it as historical after new births; an NCMD Rebirth gives new
// births; a DCMD write lands on the Modbus simulator through the write door
// and a refused one never reaches the wire. Every message edged sent is
// then decoded by Tahu and checked against the host rules.
func TestSparkplugUpstream(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	sim.SetHolding(5, 11)
	dir := t.TempDir()
	path := commandsConfig(t, dir, sim.Addr(), "writes = true", "")
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "scada", `format = "sparkplug"
group_id = "plant"
primary_host = "host1"
commands = true`))
	wire := mqtttest.Subscribe(t, mq.PlainAddr(), "spBv1.0/plant/#")
	rt, _ := startFromFile(t, path)
	testwait.For(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
	// No host yet: nothing is born.
	time.Sleep(300 * time.Millisecond) // nothing to wait for: give a wrong birth the time it would need
	for _, m := range wire.Messages() {
		if m.Topic != "spBv1.0/plant/NDEATH/gw" {
			t.Fatalf("sent %s before the primary host was online", m.Topic)
		}
	}
	host := sparkplughost.Start(t, mq.PlainAddr(), "host1", "plant")
	host.WaitFor(30*time.Second, "NBIRTH and DBIRTH", func(s sparkplughost.Snapshot) bool {
		n := s.Nodes["gw"]
		return n.Births >= 1 && len(n.Devices["plc"]) > 0
	})
	bump := func(v uint16) { sim.SetHolding(8, v) } // sp2 changes: DDATA by exception
	bump(1)
	host.WaitFor(30*time.Second, "live DDATA", func(s sparkplughost.Snapshot) bool { return s.Nodes["gw"].LiveMetrics > 0 })

	// The host goes offline: edged dies (NDEATH), data waits in the buffer.
	host.SetState(false)
	host.WaitFor(30*time.Second, "NDEATH", func(s sparkplughost.Snapshot) bool { return s.Nodes["gw"].Deaths >= 1 })
	for i := range 5 {
		bump(uint16(100 + i))
		testwait.For(t, 20*time.Second, "polls while the host is away", func() bool { return pollsOf(rt, "plc") > 0 })
		time.Sleep(150 * time.Millisecond) // let a poll see each value (poll_interval 50ms)
	}
	host.SetState(true)
	host.WaitFor(30*time.Second, "births again, then historical DDATA", func(s sparkplughost.Snapshot) bool {
		n := s.Nodes["gw"]
		return n.Births >= 2 && n.Historical > 0
	})

	// Rebirth on request.
	births := host.Snapshot().Nodes["gw"].Births
	cloudPubFile(t, mq, "spBv1.0/plant/NCMD/gw", &sproto.Payload{Metrics: []*sproto.Payload_Metric{{
		Name: proto.String("Node Control/Rebirth"), Datatype: proto.Uint32(11), Value: &sproto.Payload_Metric_BooleanValue{BooleanValue: true}}}})
	host.WaitFor(30*time.Second, "rebirth", func(s sparkplughost.Snapshot) bool { return s.Nodes["gw"].Births > births })

	// DCMD: a write through the door lands on the register; a refused one
	// (ro is not writable) never reaches the wire.
	cloudPubFile(t, mq, "spBv1.0/plant/DCMD/gw/plc", &sproto.Payload{Metrics: []*sproto.Payload_Metric{{
		Name: proto.String("sp"), Datatype: proto.Uint32(6), Value: &sproto.Payload_Metric_IntValue{IntValue: 321}}}})
	testwait.For(t, 20*time.Second, "the DCMD write on the register", func() bool { return sim.Holding(5, 1)[0] == 321 })
	writes := len(sim.WriteLog())
	cloudPubFile(t, mq, "spBv1.0/plant/DCMD/gw/plc", &sproto.Payload{Metrics: []*sproto.Payload_Metric{{
		Name: proto.String("ro"), Datatype: proto.Uint32(6), Value: &sproto.Payload_Metric_IntValue{IntValue: 5}}}})
	testwait.For(t, 20*time.Second, "the refused DCMD audited", func() bool {
		a := commandAuditIfAny(dir)
		return len(a) == 2
	})
	a := commandAudit(t, dir)
	if a[0].Source.Kind != door.FromSparkplug || a[0].Source.Name != "scada" || a[0].Result != "ok" || a[1].Reason != door.NotWritable {
		t.Fatalf("audit %+v", a)
	}
	if got := len(sim.WriteLog()); got != writes {
		t.Fatalf("a refused DCMD reached the wire: %d writes, %d before", got, writes)
	}
	host.WaitFor(30*time.Second, "the written value as DDATA", func(s sparkplughost.Snapshot) bool { return s.Nodes["gw"].LiveMetrics > 2 })

	// Nothing stays in the buffer: replayed births and deaths, which the
	// births at connect make redundant, are taken out unsent.
	testwait.For(t, 20*time.Second, "the buffer drained", func() bool {
		st := rt.Uplinks()[0].Stats()
		return st.Buffer.Depth == 0 && st.Replayed > 0
	})
	s := host.Snapshot()
	for _, k := range []sparkplughost.EventKind{sparkplughost.Gap, sparkplughost.NotBorn, sparkplughost.UnknownAlias, sparkplughost.NamedData, sparkplughost.Undecodable, sparkplughost.BadBirth} {
		if n := s.Count(k); n != 0 {
			t.Errorf("the host saw %d %s: %+v", n, k, s.Events)
		}
	}
	sparkplughost.CheckWithTahu(t, wire.Messages(), map[string]string{"sp": "UInt16", "sp2": "UInt16", "ro": "UInt16", "slow": "UInt16"}, 3)
}

func commandAuditIfAny(dir string) []door.Line {
	b, err := os.ReadFile(filepath.Join(dir, "data", "audit", door.AuditFile))
	if err != nil {
		return nil
	}
	var out []door.Line
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var a door.Line
		if json.Unmarshal(l, &a) == nil {
			out = append(out, a)
		}
	}
	return out
}

// cloudPubFile publishes a Sparkplug payload on the cloud broker with
// mosquitto_pub.
func cloudPubFile(t *testing.T, mq *mosquittotest.Broker, topic string, p *sproto.Payload) {
	t.Helper()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(mq.PlainAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-V", "5", "-t", topic, "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %s: %v %s", topic, err, out)
	}
}

// TestSparkplugReloadAddsDevice: a reload that adds a device restarts the
// Sparkplug uplink (its births and aliases change): the host sees the old
// session's NDEATH, then an NBIRTH and a DBIRTH for the new device and for
// the one that kept running with values that do not change (no
// report-by-exception message to learn it from), without a gap.
func TestSparkplugReloadAddsDevice(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	sim := startSim(t)
	dir := t.TempDir()
	sim.SetHolding(5, 7) // and it stays so: on_change publishes it once
	path := writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = "gw"
data_dir = %q

[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
  [[device.tag]]
  name = "sp"
  area = "holding"
  address = 5
  type = "uint16"
  on_change = true
`, filepath.Join(dir, "data"), sim.Addr()))
	appendFile(t, path, upstreamTOML(mq, mq.TLSAddr(), "scada", "format = \"sparkplug\"\ngroup_id = \"plant\""))
	host := sparkplughost.Start(t, mq.PlainAddr(), "host1", "plant")
	wire := mqtttest.Subscribe(t, mq.PlainAddr(), "spBv1.0/plant/#")
	rt, running := startFromFile(t, path)
	host.WaitFor(30*time.Second, "the first births", func(s sparkplughost.Snapshot) bool {
		return len(s.Nodes["gw"].Devices["plc"]) > 0
	})
	appendFile(t, path, fmt.Sprintf(`
[[device]]
name = "plc2"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
  [[device.tag]]
  name = "level"
  area = "holding"
  address = 9
  type = "uint16"
`, sim.Addr()))
	if _, _, err := rt.Reload(context.Background(), path, running); err != nil {
		t.Fatal(err)
	}
	host.WaitFor(30*time.Second, "births of both devices after the reload", func(s sparkplughost.Snapshot) bool {
		n := s.Nodes["gw"]
		return n.Births == 2 && n.Deaths == 1 && len(n.Devices["plc"]) > 0 && len(n.Devices["plc2"]) > 0
	})
	s := host.Snapshot()
	for _, k := range []sparkplughost.EventKind{sparkplughost.Gap, sparkplughost.NotBorn, sparkplughost.UnknownAlias, sparkplughost.StaleDeath, sparkplughost.BadBirth} {
		if n := s.Count(k); n != 0 {
			t.Errorf("the host saw %d %s: %+v", n, k, s.Events)
		}
	}
	for _, m := range wire.Messages() {
		if m.Topic == "spBv1.0/plant/DDEATH/gw/plc" {
			t.Errorf("plc kept running but was declared dead")
		}
	}
}
