package sparkplug

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/edged-gw/edged/mapping/sparkplug/sproto"
)

// Fuzz targets for everything a broker (or a damaged buffer) can hand the
// session. Run: go test -run '^$' -fuzz '^FuzzCommand$' ./mapping/sparkplug/
// (scripts/fuzz-all.sh runs them all); the corpus is in testdata/fuzz.

// FuzzCommand: any NCMD/DCMD payload gives a Command or an error, and
// every write it returns names a configured tag of the topic's device.
func FuzzCommand(f *testing.F) {
	f.Add(false, ncmdRebirth(f))
	f.Add(true, marshal(f, &sproto.Payload_Metric{Name: proto.String("i16"), Value: &sproto.Payload_Metric_IntValue{IntValue: 7}}))
	f.Add(true, marshal(f, &sproto.Payload_Metric{Alias: proto.Uint64(3), Datatype: proto.Uint32(9), Value: &sproto.Payload_Metric_FloatValue{FloatValue: 1}}))
	f.Add(true, []byte{0x12, 0x02, 0x10, 0x05})
	p := newPlant(f)
	p.s.Connect()
	f.Fuzz(func(t *testing.T, device bool, payload []byte) {
		topic := "spBv1.0/plant1/NCMD/gw1"
		if device {
			topic = "spBv1.0/plant1/DCMD/gw1/pump"
		}
		cmd, err := p.s.Command(topic, payload)
		if !device && len(cmd.Writes) > 0 {
			t.Fatalf("NCMD gave writes %+v", cmd.Writes)
		}
		for _, w := range cmd.Writes {
			if w.Device != "pump" || w.Spec == nil || w.Spec.Name != w.Tag || p.s.byName["pump"].byName[w.Tag] == nil {
				t.Fatalf("write %+v is not a pump tag", w)
			}
		}
		if err == nil && !cmd.Rebirth && len(cmd.Writes) == 0 {
			t.Fatal("no error and nothing to do")
		}
	})
}

// FuzzState: any STATE payload parses or errs; the primary host's state
// machine never goes online on a payload that does not parse.
func FuzzState(f *testing.F) {
	f.Add([]byte(`{"online":true,"timestamp":1700000000000}`))
	f.Add([]byte(`{"online":false,"timestamp":0}`))
	f.Add([]byte(`ONLINE`))
	f.Add([]byte(`{"online":null,"timestamp":1e3}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		st, err := ParseState(payload)
		h, _ := NewPrimaryHost("scada")
		ev, herr := h.Observe(payload)
		if (err == nil) != (herr == nil) {
			t.Fatalf("ParseState error %v, Observe error %v", err, herr)
		}
		if err != nil && (ev != HostUnchanged || h.Online()) {
			t.Fatalf("unparsable STATE changed the host: %v", ev)
		}
		if err == nil && h.Online() != st.Online {
			t.Fatalf("STATE %+v left the host online=%v", st, h.Online())
		}
	})
}

// FuzzNext: a pending DDATA as damaged as a buffer can make it gives an
// error or a payload the generated decoder reads: aliases of born tags
// only, no names, a seq.
func FuzzNext(f *testing.F) {
	p := newPlant(f)
	p.device("pump", true)
	p.connect()
	p.poll("pump", 3)
	_, good, _ := p.s.Data("pump", nil, nil)
	f.Add(good, false)
	f.Add(p.queueOne("pump", 4), true)
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 'x'}, false)
	f.Fuzz(func(t *testing.T, pending []byte, historical bool) {
		out, err := p.s.Next(nil, "spBv1.0/plant1/DDATA/gw1/pump", pending, historical)
		if err != nil || len(out) == 0 {
			return
		}
		var pl sproto.Payload
		if err := proto.Unmarshal(out, &pl); err != nil {
			t.Fatalf("Next wrote an undecodable payload: %v", err)
		}
		if pl.Seq == nil || pl.GetSeq() > 255 {
			t.Fatalf("seq %v", pl.Seq)
		}
		for _, m := range pl.GetMetrics() {
			if m.Name != nil || m.Alias == nil || p.s.byAlias[m.GetAlias()] == nil {
				t.Fatalf("metric %v: want a known alias and no name", m)
			}
			if m.GetIsHistorical() != historical {
				t.Fatalf("is_historical %v, want %v", m.GetIsHistorical(), historical)
			}
		}
	})
}

// queueOne makes one pending DDATA of dev without sending it.
func (p *plant) queueOne(dev string, n int) []byte {
	p.up = false
	p.poll(dev, n)
	q := p.queue[len(p.queue)-1]
	p.queue = p.queue[:0]
	p.up = true
	return q.pending
}
