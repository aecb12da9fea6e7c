package sparkplug

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The independent decoder: Eclipse Tahu's JavaScript sparkplug-payload,
// installed by scripts/test-deps.sh (make test) into testdata/tahu.

// wireMsg is one message as it went to the broker, with what the test
// expects of it (want is nil for births and deaths).
type wireMsg struct {
	Topic   string
	Payload []byte
	want    []wantMetric
}

type wantMetric struct {
	tag        string
	value      any // bool, int64, uint64, float64 (float32 for Float), string, nil = is_null
	historical bool
	ts         int64
}

type tahuMetric struct {
	Name         *string         `json:"name"`
	Alias        json.Number     `json:"alias"`
	Type         string          `json:"type"`
	Value        json.RawMessage `json:"value"`
	Timestamp    json.Number     `json:"timestamp"`
	IsHistorical *bool           `json:"isHistorical"`
	Properties   map[string]struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	} `json:"properties"`
}

type tahuMsg struct {
	Topic   string `json:"topic"`
	Error   string `json:"error"`
	Payload struct {
		Timestamp json.Number  `json:"timestamp"`
		Seq       *json.Number `json:"seq"`
		Metrics   []tahuMetric `json:"metrics"`
	} `json:"payload"`
	Raw []map[string]json.RawMessage `json:"raw"`
}

// tahuDecode runs every payload through Tahu's decoder. A missing decoder
// fails the test: run scripts/test-deps.sh.
func tahuDecode(t testing.TB, msgs []wireMsg) []tahuMsg {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "tahu"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "sparkplug-payload")); err != nil {
		t.Fatalf("Tahu's sparkplug-payload is not installed in %s (%v): run scripts/test-deps.sh (make test does)", dir, err)
	}
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, m := range msgs {
		if err := enc.Encode(map[string]string{"topic": m.Topic, "payload": base64.StdEncoding.EncodeToString(m.Payload)}); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("node", filepath.Join(dir, "decode.js"))
	cmd.Dir = dir
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node decode.js: %v\n%s", err, stderr.String())
	}
	var res []tahuMsg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m tahuMsg
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("reading decode.js output: %v", err)
		}
		res = append(res, m)
	}
	if len(res) != len(msgs) {
		t.Fatalf("Tahu decoded %d messages, sent %d", len(res), len(msgs))
	}
	return res
}

// hostCheck applies a primary host's rules to a message sequence as Tahu
// decoded it. wantTypes maps device/tag to its Sparkplug datatype name.
type hostCheck struct {
	t         testing.TB
	wantTypes map[string]string
	willBdSeq string                       // bdSeq of the NDEATH registered for the current connection
	bdSeq     string                       // of the last NBIRTH
	seq       int                          // expected next seq, -1 before NBIRTH
	born      map[string]map[string]string // device → alias → tag
	types     map[string]string            // device/tag → datatype name
	counts    map[string]int               // per message type
	hist      int                          // historical metrics seen
}

func newHostCheck(t testing.TB, wantTypes map[string]string) *hostCheck {
	return &hostCheck{t: t, wantTypes: wantTypes, seq: -1, born: map[string]map[string]string{},
		types: map[string]string{}, counts: map[string]int{}}
}

func (h *hostCheck) run(sent []wireMsg, got []tahuMsg) {
	for i := range sent {
		h.one(i, &sent[i], &got[i])
	}
}

func (h *hostCheck) one(i int, sent *wireMsg, m *tahuMsg) {
	t := h.t
	t.Helper()
	where := fmt.Sprintf("message %d %s", i, m.Topic)
	if m.Error != "" {
		t.Fatalf("%s: Tahu cannot decode it: %s", where, m.Error)
	}
	levels := strings.Split(m.Topic, "/")
	if len(levels) < 4 || levels[0] != Namespace {
		t.Fatalf("%s: not a Sparkplug topic", where)
	}
	typ := levels[2]
	dev := ""
	if len(levels) == 5 {
		dev = levels[4]
	}
	h.counts[typ]++
	if ts, err := m.Payload.Timestamp.Int64(); err != nil || ts <= 0 {
		t.Errorf("%s: payload timestamp %q", where, m.Payload.Timestamp)
	}
	if typ == "NDEATH" {
		if m.Payload.Seq != nil {
			t.Errorf("%s: NDEATH carries seq %s, the specification says it has none", where, *m.Payload.Seq)
		}
		bd := h.bdSeqOf(where, m)
		h.willBdSeq = bd
		return
	}
	if m.Payload.Seq == nil {
		t.Fatalf("%s: no seq", where)
	}
	seq, err := strconv.Atoi(m.Payload.Seq.String())
	if err != nil || seq < 0 || seq > 255 {
		t.Fatalf("%s: seq %s, want 0..255", where, m.Payload.Seq)
	}
	if typ == "NBIRTH" {
		if seq != 0 {
			t.Errorf("%s: NBIRTH seq %d, want 0", where, seq)
		}
		h.bdSeq = h.bdSeqOf(where, m)
		if h.bdSeq != h.willBdSeq {
			t.Errorf("%s: NBIRTH bdSeq %s, the connection's NDEATH has %s", where, h.bdSeq, h.willBdSeq)
		}
		rebirth := false
		for _, mt := range m.Payload.Metrics {
			if mt.Name != nil && *mt.Name == MetricRebirth && mt.Type == "Boolean" {
				rebirth = true
			}
		}
		if !rebirth {
			t.Errorf("%s: NBIRTH without a Boolean %q", where, MetricRebirth)
		}
		h.seq = 1
		h.born = map[string]map[string]string{}
		return
	}
	if h.seq < 0 {
		t.Fatalf("%s before any NBIRTH", where)
	}
	if seq != h.seq {
		t.Errorf("%s: seq %d, want %d (continuity mod 256)", where, seq, h.seq)
	}
	h.seq = (seq + 1) % 256
	switch typ {
	case "DBIRTH":
		aliases := map[string]string{}
		for _, mt := range m.Payload.Metrics {
			if mt.Name == nil || mt.Alias == "" || mt.Type == "" {
				t.Fatalf("%s: birth metric without name, alias or datatype: %+v", where, mt)
			}
			key := dev + "/" + *mt.Name
			if want, ok := h.wantTypes[key]; ok && mt.Type != want {
				t.Errorf("%s: %s born as %s, want %s", where, key, mt.Type, want)
			}
			if prev, ok := h.types[key]; ok && prev != mt.Type {
				t.Errorf("%s: %s born as %s, earlier as %s", where, key, mt.Type, prev)
			}
			h.types[key] = mt.Type
			aliases[mt.Alias.String()] = *mt.Name
		}
		for key := range h.wantTypes {
			if strings.HasPrefix(key, dev+"/") {
				if _, ok := h.types[key]; !ok {
					t.Errorf("%s: %s missing from the birth", where, key)
				}
			}
		}
		h.born[dev] = aliases
	case "DDEATH":
		if h.born[dev] == nil {
			t.Errorf("%s: DDEATH of a device that is not born", where)
		}
		delete(h.born, dev)
	case "DDATA":
		aliases := h.born[dev]
		if aliases == nil {
			t.Fatalf("%s: DDATA before DBIRTH", where)
		}
		if len(m.Payload.Metrics) != len(sent.want) {
			t.Fatalf("%s: %d metrics, want %d", where, len(m.Payload.Metrics), len(sent.want))
		}
		for j, mt := range m.Payload.Metrics {
			w := sent.want[j]
			if mt.Name != nil {
				t.Errorf("%s metric %d: named %q in DDATA, want alias only", where, j, *mt.Name)
			}
			tag, ok := aliases[mt.Alias.String()]
			if !ok {
				t.Fatalf("%s metric %d: alias %s not in the DBIRTH", where, j, mt.Alias)
			}
			if tag != w.tag {
				t.Errorf("%s metric %d: alias %s is %q, want %q", where, j, mt.Alias, tag, w.tag)
			}
			hist := mt.IsHistorical != nil && *mt.IsHistorical
			if hist != w.historical {
				t.Errorf("%s %s: is_historical %v, want %v", where, tag, hist, w.historical)
			}
			if hist {
				h.hist++
			}
			if ts, _ := mt.Timestamp.Int64(); ts != w.ts {
				t.Errorf("%s %s: timestamp %s, want the sample's %d", where, tag, mt.Timestamp, w.ts)
			}
			checkValue(t, where+" "+tag, h.types[dev+"/"+tag], m.Raw[j], w.value)
			if q, ok := mt.Properties[PropertyQuality]; (w.value == nil) != ok || ok && string(q.Value) != "0" {
				t.Errorf("%s %s: %s property %+v, want 0 (bad) exactly on the failed reads", where, tag, PropertyQuality, q)
			}
		}
	default:
		t.Errorf("%s: unexpected message type", where)
	}
}

func (h *hostCheck) bdSeqOf(where string, m *tahuMsg) string {
	for _, mt := range m.Payload.Metrics {
		if mt.Name != nil && *mt.Name == MetricBdSeq {
			if mt.Type != "UInt64" {
				h.t.Errorf("%s: bdSeq is %s, want UInt64", where, mt.Type)
			}
			return strings.Trim(string(mt.Value), `"`)
		}
	}
	h.t.Fatalf("%s: no bdSeq metric", where)
	return ""
}

// checkValue reads a DDATA metric the way a host does — by the datatype
// from its birth — from Tahu's protobuf decoding of it.
func checkValue(t testing.TB, where, typ string, raw map[string]json.RawMessage, want any) {
	t.Helper()
	if want == nil {
		if string(raw["isNull"]) != "true" {
			t.Errorf("%s: want is_null, got %v", where, raw)
		}
		return
	}
	field := map[string]string{
		"Boolean": "booleanValue", "Int8": "intValue", "Int16": "intValue", "Int32": "intValue",
		"UInt8": "intValue", "UInt16": "intValue", "UInt32": "longValue", "Int64": "longValue",
		"UInt64": "longValue", "Float": "floatValue", "Double": "doubleValue", "String": "stringValue",
	}[typ]
	v, ok := raw[field]
	if !ok {
		t.Errorf("%s: %s metric without %s: %v", where, typ, field, raw)
		return
	}
	s := strings.Trim(string(v), `"`)
	var got any
	switch typ {
	case "Boolean":
		got = s == "true"
	case "Int8", "Int16", "Int32":
		u, _ := strconv.ParseUint(s, 10, 32)
		got = int64(int32(uint32(u)))
	case "Int64":
		u, _ := strconv.ParseUint(s, 10, 64)
		got = int64(u)
	case "UInt8", "UInt16", "UInt32", "UInt64":
		u, _ := strconv.ParseUint(s, 10, 64)
		got = u
	case "Float":
		f, _ := strconv.ParseFloat(s, 64)
		got = float32(f)
	case "Double":
		f, _ := strconv.ParseFloat(s, 64)
		got = f
	case "String":
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		got = str
	}
	if fw, ok := want.(float64); ok && typ == "Double" {
		if g := got.(float64); g != fw && !(math.IsNaN(g) && math.IsNaN(fw)) {
			t.Errorf("%s: %v, want %v", where, g, fw)
		}
		return
	}
	if got != want {
		t.Errorf("%s: %v (%T), want %v (%T)", where, got, got, want, want)
	}
}
