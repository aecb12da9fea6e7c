package app

import (
	"strings"
	"testing"

	"github.com/edged-gw/edged/configs"
)

// TestUplinkProtocols: every protocol and URL scheme that configs accepts
// gets a publisher (MQTT 3.1.1 and wss:// included); an unknown protocol
// is refused.
func TestUplinkProtocols(t *testing.T) {
	cfg := &configs.Config{}
	cfg.Gateway.ID, cfg.Gateway.TopicPrefix = "gw", "edged"
	cases := []struct {
		protocol, url, wantErr string
	}{
		{"5", "mqtts://broker.example.com:8883", ""},
		{"3.1.1", "mqtts://hub.example.com:8883", ""},
		{"5", "wss://broker.example.com:443/mqtt", ""},
		{"3.1.1", "wss://broker.example.com", ""},
		{"4", "mqtts://broker.example.com:8883", `protocol "4"`},
	}
	for _, c := range cases {
		t.Run(c.protocol+" "+c.url, func(t *testing.T) {
			uc := &configs.Upstream{Name: "cloud", URL: c.url, Protocol: c.protocol, ClientID: "edged-gw", MaxInflight: 10}
			err := checkUplink(cfg, uc)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one with %q", err, c.wantErr)
			}
		})
	}
}
