package sparkplughost

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edged-gw/edged/internal/mqtttest"
)

// The independent decoder for end-to-end tests: Eclipse Tahu's JavaScript
// sparkplug-payload, installed by scripts/test-deps.sh into
// mapping/sparkplug/testdata/tahu.

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

// CheckWithTahu decodes every message with Tahu and checks the host rules
// over the whole sequence: bdSeq of each NDEATH equal to its NBIRTH's,
// seq 0 at NBIRTH and +1 mod 256 on every message after, DBIRTH before
// DDATA, aliases only from the births, datatypes from the tag types, and
// is_historical on replayed data.
func CheckWithTahu(t testing.TB, msgs []mqtttest.Message, wantType map[string]string, minBirths int) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "mapping", "sparkplug", "testdata", "tahu")
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
	seq, bdSeq := -1, ""
	aliases := map[string]string{}
	born := map[string]bool{} // device → DBIRTH since the NBIRTH and no DDEATH since
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
			seq = -1
			clear(born)
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
			bdSeq = ""
			clear(born)
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
			born[sparkplugDevice(m.Topic)] = true
			seen := map[string]bool{}
			for _, mt := range m.Payload.Metrics {
				if mt.Name != nil {
					seen[*mt.Name] = true
				}
			}
			for name := range wantType {
				if !seen[name] {
					t.Errorf("message %d: DBIRTH without tag %s", i, name)
				}
			}
			for _, mt := range m.Payload.Metrics {
				if mt.Name == nil {
					t.Fatalf("message %d: DBIRTH metric without a name", i)
				}
				aliases[mt.Alias.String()] = *mt.Name
				if w := wantType[*mt.Name]; w != "" && mt.Type != w {
					t.Errorf("message %d: %s born as %s, want %s", i, *mt.Name, mt.Type, w)
				}
			}
		case "DDEATH":
			if !born[sparkplugDevice(m.Topic)] {
				t.Errorf("message %d: DDEATH of a device not born", i)
			}
			born[sparkplugDevice(m.Topic)] = false
		case "DDATA":
			if !born[sparkplugDevice(m.Topic)] {
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
	if counts["NBIRTH"] < minBirths || counts["DBIRTH"] < minBirths || counts["DDATA"] < 2 || counts["NDEATH"] < 1 || hist == 0 {
		t.Fatalf("message counts %v, historical metrics %d: want at least %d births, an NDEATH and historical DDATA", counts, hist, minBirths)
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

func sparkplugDevice(topic string) string {
	if parts := strings.Split(topic, "/"); len(parts) == 5 {
		return parts[4]
	}
	return ""
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(bytes.Trim(b, `"`))
}
