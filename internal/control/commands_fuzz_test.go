package control

import (
	"testing"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound/door"
)

// FuzzCommandRequest: whatever topic and payload a client sends, reading
// them into a door request never panics, and a request that names a
// writable tag either carries a typed value or the source's refusal.
func FuzzCommandRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"edged/gw/dev/sp/set", "42"}, {"edged/gw/dev/sp/set", `{"v": 1, "id": "x", "ts": 1}`},
		{"edged/gw/dev//set", "1"}, {"edged/gw/dev/sp/x/set", "1"}, {"edged/gw/set", ""}, {"edged/gw/dev/sp/set", "\xff"},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	dev := &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}}
	c := &Commands{specs: dev, prefix: "edged/gw/"}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		req := c.request(Command{Topic: topic, Payload: payload, Source: door.Source{Kind: door.FromLocal}}, "", "")
		if req.Device == "" || req.Tag == "" {
			t.Fatalf("request without device or tag: %+v", req)
		}
		if req.Device == "dev" && req.Tag == "sp" && req.Typed == nil && req.Refused == "" {
			t.Fatalf("%q %q: neither a value nor a refusal", topic, payload)
		}
		if req.Refused != "" && req.Refused != door.BadPayload {
			t.Fatalf("refused %s", req.Refused)
		}
	})
}
