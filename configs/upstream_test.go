package configs

import (
	"strings"
	"testing"
	"time"
)

func TestUpstreamDefaults(t *testing.T) {
	cfg, err := loadMem(memFS{
		testMain: lines(
			`[gateway]`,
			`id = "gw"`,
			`[[upstream]]`,
			`name = "cloud"`,
			`url = "mqtts://broker.example.com:8883"`,
			`password_file = "secret"`,
		),
		testDir + "/secret": "s3cret\n",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 1 {
		t.Fatalf("%d upstreams", len(cfg.Upstreams))
	}
	u := cfg.Upstreams[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"protocol", u.Protocol, "5"},
		{"client_id", u.ClientID, "edged-gw"},
		{"keepalive", u.KeepAlive.D(), 30 * time.Second},
		{"topics", u.Topics[0], "edged/#"},
		{"max_inflight", u.MaxInflight, 100},
		{"replay_rate", u.ReplayRate, 500},
		{"replay_order", u.ReplayOrder, "interleave"},
		{"buffer_dir", u.BufferDir, "/var/lib/edged/buffer/cloud"},
		{"max_bytes", int64(u.MaxBytes), int64(256 << 20)},
		{"sync", u.Sync, "interval"},
		{"sync_interval", u.SyncInterval.D(), time.Second},
		{"password from password_file", u.Password, "s3cret"},
		{"ack_timeout", u.AckTimeout.D(), 10 * time.Second},
		{"reconnect_max", u.ReconnectMax.D(), 10 * time.Second},
		{"line", u.Line, 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestUpstreamErrors(t *testing.T) {
	gw := "[gateway]\nid = \"gw\"\n" // two lines
	tests := []struct {
		name  string
		files memFS
		want  []wantErr
	}{
		{
			name:  "plaintext without opting in",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtt://10.0.0.1"`)},
			want:  []wantErr{{line: 5, key: "upstream[0].url", msg: "use mqtts://, or set insecure_plaintext = true"}},
		},
		{
			name:  "plaintext opted in",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtt://10.0.0.1"`, `insecure_plaintext = true`)},
		},
		{
			name:  "strict replay order",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtts://b:8883"`, `replay_order = "strict"`)},
		},
		{
			name:  "MQTT 3.1.1",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtts://hub.azure-devices.net:8883"`, `protocol = "3.1.1"`)},
		},
		{
			name:  "wss with a path, both protocols",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "a"`, `url = "wss://b.example.com:443/mqtt"`, `[[upstream]]`, `name = "b"`, `url = "wss://b.example.com"`, `protocol = "3.1.1"`)},
		},
		{
			name:  "plaintext websocket",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "ws://b.example.com/mqtt"`)},
			want:  []wantErr{{line: 5, key: "upstream[0].url", msg: `scheme "ws" is not supported; use mqtts:// (TLS), wss://`}},
		},
		{
			name:  "missing name and url",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `protocol = "5"`)},
			want: []wantErr{
				{line: 3, key: "upstream[0].name", msg: "required: name the upstream"},
				{line: 3, key: "upstream[0].url", msg: "required: the cloud broker"},
			},
		},
		{
			name: "bad values",
			files: memFS{testMain: gw + lines(
				`[[upstream]]`, // 3
				`name = "c"`,
				`url = "mqtts://b:8883"`,
				`protocol = "4"`, // 6
				`cert_file = "client.pem"`,
				`sync = "sometimes"`, // 8
				`topics = ["edged/#/x"]`,
				`max_bytes = "1KiB"`, // 10
				`keepalve = "30s"`,
				`replay_order = "ordered"`, // 12
			), testDir + "/client.pem": "x"},
			want: []wantErr{
				{line: 6, key: "upstream[0].protocol", msg: `use "5" (default) or "3.1.1"`},
				{line: 7, key: "upstream[0].cert_file", msg: "cert_file and key_file go together"},
				{line: 8, key: "upstream[0].sync", msg: `use "interval"`},
				{line: 9, key: "upstream[0].topics", msg: "'#' must be a whole level and the last one"},
				{line: 10, key: "upstream[0].max_bytes", msg: "at least \"16MiB\""},
				{line: 11, key: "upstream[0].keepalve", msg: "did you mean keepalive?"},
				{line: 12, key: "upstream[0].replay_order", msg: `"ordered" is not a replay order; use "interleave" (default`},
			},
		},
		{
			name:  "sparkplug",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtts://b:8883"`, `format = "sparkplug"`, `group_id = "plant7"`, `primary_host = "scada"`)},
		},
		{
			name: "sparkplug keys",
			files: memFS{testMain: gw + lines(
				`[[upstream]]`, // 3
				`name = "c"`,
				`url = "mqtts://b:8883"`,
				`format = "sparkplug"`, // 6
				`protocol = "3.1.1"`,
				`edge_node_id = "a/b"`, // 8
				`primary_host = "h+"`,
				`[[upstream]]`, // 10
				`name = "d"`,
				`url = "mqtts://b:8883"`,
				`group_id = "g"`, // 13
				`[[upstream]]`,
				`name = "e"`,
				`url = "mqtts://b:8883"`,
				`format = "protobuf"`, // 17
			)},
			want: []wantErr{
				{line: 3, key: "upstream[0].group_id", msg: `required with format = "sparkplug"`},
				{line: 7, key: "upstream[0].protocol", msg: `format = "sparkplug" needs protocol = "5"`},
				{line: 8, key: "upstream[0].edge_node_id", msg: `"a/b" contains one of / + #`},
				{line: 9, key: "upstream[0].primary_host", msg: `"h+" contains one of / + #`},
				{line: 13, key: "upstream[1].group_id", msg: `group_id is a Sparkplug B key; it needs format = "sparkplug"`},
				{line: 17, key: "upstream[2].format", msg: `"protobuf" is not an upstream format; use "json"`},
			},
		},
		{
			name: "credentials in the url",
			files: memFS{testMain: gw + lines(
				`[[upstream]]`,
				`name = "c"`,
				`url = "mqtts://plant7:Sup3rS3cret@b.example.com:8883"`, // 5
				`[[upstream]]`,
				`name = "d"`,
				`url = "mqtt://:0nlyPass@10.0.0.1"`, // 8
				`insecure_plaintext = true`,
			)},
			want: []wantErr{
				{line: 5, key: "upstream[0].url", msg: `"mqtts://…@b.example.com:8883" carries credentials in the URL ("…@"), which edged does not use and would show in logs; remove them and set username = "plant7" with password_file`},
				{line: 8, key: "upstream[1].url", msg: `"mqtt://…@10.0.0.1" carries credentials`},
			},
		},
		{
			name: "ack_timeout and reconnect_max out of range",
			files: memFS{testMain: gw + lines(
				`[[upstream]]`,
				`name = "c"`,
				`url = "mqtts://b:8883"`,
				`ack_timeout = "100ms"`, // 6
				`reconnect_max = "1h"`,  // 7
			)},
			want: []wantErr{
				{line: 6, key: "upstream[0].ack_timeout", msg: "100ms is out of range; use 1s to 1h"},
				{line: 7, key: "upstream[0].reconnect_max", msg: "1h0m0s is out of range; use 1s to 10m"},
			},
		},
		{
			name:  "ack_timeout and reconnect_max set",
			files: memFS{testMain: gw + lines(`[[upstream]]`, `name = "c"`, `url = "mqtts://b:8883"`, `ack_timeout = "3s"`, `reconnect_max = "30s"`)},
		},
		{
			name: "missing ca_file and duplicate name",
			files: memFS{testMain: gw + lines(
				`[[upstream]]`,
				`name = "c"`,
				`url = "mqtts://b"`,
				`ca_file = "/etc/edged/ca.pem"`, // 6
				`[[upstream]]`,
				`name = "c"`, // 8
				`url = "mqtts://b"`,
			)},
			want: []wantErr{
				{line: 6, key: "upstream[0].ca_file", msg: "cannot read /etc/edged/ca.pem: no such file"},
				{line: 8, key: "upstream[1].name", msg: "already the name of upstream[0]"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadMem(tt.files, nil)
			for _, secret := range []string{"Sup3rS3cret", "0nlyPass"} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows the password: %v", err)
				}
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkErrors(t, err, tt.want)
		})
	}
}

// TestUpstreamURLErrorsNeverEchoAPassword: a URL with credentials that is
// also mistyped (no "://", one slash) is refused without its password in
// the message: the message goes to the log, `edged validate` and the
// console's config page after a refused reload.
func TestUpstreamURLErrorsNeverEchoAPassword(t *testing.T) {
	for _, raw := range []string{
		"mqtts:/plant7:Sup3rS3cret@b.example.com:8883",
		"mqtts//plant7:Sup3rS3cret@b.example.com:8883",
		"plant7:Sup3rS3cret@b.example.com:8883",
		"mqtts://plant7:Sup3rS3cret@",
	} {
		_, err := loadMem(memFS{testMain: lines(`[gateway]`, `id = "gw"`, `[[upstream]]`, `name = "c"`, `url = "`+raw+`"`)}, nil)
		if err == nil || !strings.Contains(err.Error(), "upstream[0].url") {
			t.Errorf("url %q: error %v, want one about upstream[0].url", raw, err)
			continue
		}
		if strings.Contains(err.Error(), "Sup3rS3cret") {
			t.Errorf("url %q: the error shows the password: %v", raw, err)
		}
	}
}
