package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
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
	waitUntil(t, 20*time.Second, "the device polled", func() bool { return pollsOf(rt, "plc") > 1 })
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
		waitUntil(t, 20*time.Second, "polls while the host is away", func() bool { return pollsOf(rt, "plc") > 0 })
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
	waitUntil(t, 20*time.Second, "the DCMD write on the register", func() bool { return sim.Holding(5, 1)[0] == 321 })
	writes := len(sim.WriteLog())
	cloudPubFile(t, mq, "spBv1.0/plant/DCMD/gw/plc", &sproto.Payload{Metrics: []*sproto.Payload_Metric{{
		Name: proto.String("ro"), Datatype: proto.Uint32(6), Value: &sproto.Payload_Metric_IntValue{IntValue: 5}}}})
	waitUntil(t, 20*time.Second, "the refused DCMD audited", func() bool {
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

	s := host.Snapshot()
	for _, k := range []sparkplughost.EventKind{sparkplughost.Gap, sparkplughost.NotBorn, sparkplughost.UnknownAlias, sparkplughost.NamedData, sparkplughost.Undecodable, sparkplughost.BadBirth} {
		if n := s.Count(k); n != 0 {
			t.Errorf("the host saw %d %s: %+v", n, k, s.Events)
		}
	}
	checkWithTahu(t, wire.Messages())
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

type tahuOut struct {
	Topic   string `json:"topic"`
	Error   string `json:"error"`
	Payload struct {
		Seq     *json.Number `json:"seq"`
		Metrics []struct {
			Name         *string     `json:"name"`
			Alias        json.Number `json:"alias"`
			Type         string      `json:"type"`
			IsHistorical *bool       `json:"isHistorical"`
			Value        any         `json:"value"`
		} `json:"metrics"`
	} `json:"payload"`
}

// checkWithTahu decodes every message with Tahu and checks the host rules
// over the whole sequence: bdSeq of each NDEATH equal to its NBIRTH's,
// seq 0 at NBIRTH and +1 mod 256 on every message after, DBIRTH before
// DDATA, aliases only from the births, datatypes from the tag types, and
// is_historical on replayed data.
func checkWithTahu(t *testing.T, msgs []mqtttest.Message) {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", "..", "mapping", "sparkplug", "testdata", "tahu"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "sparkplug-payload")); err != nil {
		t.Fatalf("Tahu's sparkplug-payload is not installed in %s (%v): run scripts/test-deps.sh (make test does)", dir, err)
	}
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, m := range msgs {
		_ = enc.Encode(map[string]string{"topic": m.Topic, "payload": base64.StdEncoding.EncodeToString(m.Payload)})
	}
	cmd := exec.Command("node", filepath.Join(dir, "decode.js"))
	cmd.Dir, cmd.Stdin, cmd.Stderr = dir, &in, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("decode.js: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var got []tahuOut
	for dec.More() {
		var m tahuOut
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != len(msgs) {
		t.Fatalf("Tahu decoded %d of %d messages", len(got), len(msgs))
	}
	wantType := map[string]string{"sp": "UInt16", "sp2": "UInt16", "ro": "UInt16", "slow": "UInt16"}
	seq, bdSeq := -1, ""
	aliases := map[string]string{}
	born := false
	counts := map[string]int{}
	hist := 0
	for i, m := range got {
		if m.Error != "" {
			t.Fatalf("message %d %s: Tahu: %s", i, m.Topic, m.Error)
		}
		typ := sparkplugType(m.Topic)
		if typ == "NCMD" || typ == "DCMD" {
			continue // the test's own commands
		}
		counts[typ]++
		if typ == "NDEATH" {
			var bd string
			for _, mt := range m.Payload.Metrics {
				if mt.Name != nil && *mt.Name == "bdSeq" {
					bd = jsonText(mt.Value)
				}
			}
			if bdSeq != "" && bd != bdSeq {
				t.Errorf("message %d: NDEATH bdSeq %s, NBIRTH had %s", i, bd, bdSeq)
			}
			seq, born = -1, false
			continue
		}
		if m.Payload.Seq == nil {
			t.Fatalf("message %d %s: no seq", i, m.Topic)
		}
		s, _ := m.Payload.Seq.Int64()
		switch {
		case typ == "NBIRTH":
			if s != 0 {
				t.Errorf("message %d: NBIRTH seq %d", i, s)
			}
			bdSeq, born = "", false
			for _, mt := range m.Payload.Metrics {
				if mt.Name != nil && *mt.Name == "bdSeq" {
					bdSeq = jsonText(mt.Value)
				}
			}
			if bdSeq == "" {
				t.Errorf("message %d: NBIRTH without bdSeq", i)
			}
		case seq < 0:
			t.Fatalf("message %d %s before any NBIRTH", i, m.Topic)
		case int(s) != (seq+1)%256:
			t.Errorf("message %d %s: seq %d after %d", i, m.Topic, s, seq)
		}
		seq = int(s)
		switch typ {
		case "DBIRTH":
			born = true
			for _, mt := range m.Payload.Metrics {
				if mt.Name == nil {
					t.Fatalf("message %d: DBIRTH metric without a name", i)
				}
				aliases[mt.Alias.String()] = *mt.Name
				if w := wantType[*mt.Name]; w != "" && mt.Type != w {
					t.Errorf("message %d: %s born as %s, want %s", i, *mt.Name, mt.Type, w)
				}
			}
		case "DDATA":
			if !born {
				t.Errorf("message %d: DDATA before DBIRTH", i)
			}
			for _, mt := range m.Payload.Metrics {
				if mt.Name != nil && *mt.Name != "" {
					t.Errorf("message %d: DDATA metric by name %q (aliases only)", i, *mt.Name)
				}
				name, ok := aliases[mt.Alias.String()]
				if !ok {
					t.Errorf("message %d: DDATA alias %s not born", i, mt.Alias)
				}
				if mt.Type != "" && mt.Type != wantType[name] {
					t.Errorf("message %d: %s as %s", i, name, mt.Type)
				}
				if mt.IsHistorical != nil && *mt.IsHistorical {
					hist++
				}
			}
		}
	}
	t.Logf("Tahu decoded %d messages: %v, historical metrics %d", len(got), counts, hist)
	if counts["NBIRTH"] < 3 || counts["DBIRTH"] < 3 || counts["DDATA"] < 2 || counts["NDEATH"] < 1 || hist == 0 {
		t.Fatalf("message counts %v, historical metrics %d: want births of the first session, after the outage and the rebirth, an NDEATH and historical DDATA", counts, hist)
	}
}

func sparkplugType(topic string) string {
	var levels []string
	for _, l := range bytes.Split([]byte(topic), []byte("/")) {
		levels = append(levels, string(l))
	}
	if len(levels) < 3 {
		return ""
	}
	return levels[2]
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(bytes.Trim(b, `"`))
}
