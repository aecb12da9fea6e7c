package configs

import (
	"testing"
)

func TestBrokerDefaults(t *testing.T) {
	cfg, err := loadMem(memFS{testMain: lines(`[gateway]`, `id = "gw"`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Broker
	if b.Listen != DefaultBrokerListen || b.Anonymous != "read" || b.AllowAnonymous || b.Commands ||
		b.MaxClients != 100 || b.MaxPacketSize != 1<<20 || b.SessionExpiry.D().String() != "1h0m0s" ||
		b.MaxInflight != 1024 || b.MaxQueued != 4096 || b.ClientQueueBytes != 8<<20 || b.QueueBytes != 64<<20 ||
		b.TLS.Listen != "" || b.WebSocket.Listen != "" || b.WebSocket.Path != "/mqtt" {
		t.Fatalf("defaults = %+v", b)
	}
}

func TestBrokerUsersAndListeners(t *testing.T) {
	const hash = "$2a$04$AVq3hdTbaQ4Y5jl3b8Yc5u3wHZ6yjJj4kbfJ6l6nW5o7hxyZQm9xO" // bcrypt of "x", cost 4
	files := memFS{
		testMain: lines(`[gateway]`, `id = "gw"`,
			`[broker]`,
			`listen = "0.0.0.0:1883"`,
			`[broker.tls]`,
			`listen = "0.0.0.0:8883"`,
			`cert_file = "server.pem"`,
			`key_file = "server.key"`,
			`client_ca_file = "ca.pem"`,
			`require_client_cert = true`,
			`[broker.websocket]`,
			`listen = "127.0.0.1:8080"`,
			`[[broker.user]]`,
			`name = "hmi"`,
			`password_hash = "`+hash+`"`,
			`publish = ["apps/%u/#"]`,
		),
		"/etc/edged/server.pem": "x", "/etc/edged/server.key": "x", "/etc/edged/ca.pem": "x",
	}
	cfg, err := loadMem(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Broker
	if len(b.Users) != 1 || b.Users[0].Name != "hmi" || b.Users[0].Subscribe[0] != "#" || b.Users[0].Publish[0] != "apps/%u/#" {
		t.Fatalf("users = %+v", b.Users)
	}
	if b.TLS.CertFile != "/etc/edged/server.pem" || b.TLS.ClientCAFile != "/etc/edged/ca.pem" {
		t.Fatalf("tls = %+v", b.TLS)
	}
}

func TestBrokerErrors(t *testing.T) {
	gw := "[gateway]\nid = \"gw\"\n" // two lines
	tests := []struct {
		name  string
		files memFS
		want  []wantErr
	}{
		{
			name:  "non-loopback listener without users",
			files: memFS{testMain: gw + lines(`[broker]`, `listen = "0.0.0.0:1883"`)},
			want:  []wantErr{{line: 4, key: "broker.listen", msg: "reachable beyond this machine, and no [[broker.user]] is configured"}},
		},
		{
			name:  "all interfaces with an empty host",
			files: memFS{testMain: gw + lines(`[broker]`, `listen = ":1883"`)},
			want:  []wantErr{{line: 4, key: "broker.listen", msg: "allow_anonymous = true"}},
		},
		{
			name: "websocket beyond loopback without users",
			files: memFS{testMain: gw + lines(`[broker]`, `anonymous = "none"`, // 4
				`[broker.websocket]`, `listen = "192.168.1.10:8080"`)},
			want: []wantErr{{line: 6, key: "broker.websocket.listen", msg: "reachable beyond this machine"}},
		},
		{
			name: "plaintext password and bad filter",
			files: memFS{testMain: gw + lines(`[broker]`,
				`[[broker.user]]`,             // 4
				`name = "hmi"`,                // 5
				`password_hash = "secret"`,    // 6
				`subscribe = ["edged/#/x"]`)}, // 7
			want: []wantErr{
				{line: 6, key: "broker.user[0].password_hash", msg: "not a bcrypt hash"},
				{line: 7, key: "broker.user[0].subscribe", msg: "'#' must be a whole level and the last one"},
			},
		},
		{
			name: "duplicate user and bad anonymous",
			files: memFS{testMain: gw + lines(`[broker]`, `anonymous = "write"`, // 4
				`[[broker.user]]`, `name = "a"`, `[[broker.user]]`, `name = "a"`)}, // 8
			want: []wantErr{
				{line: 4, key: "broker.anonymous", msg: `"write" is not allowed`},
				{line: 8, key: "broker.user[1].name", msg: "already the name of broker.user[0]"},
			},
		},
		{
			name: "tls without files",
			files: memFS{testMain: gw + lines(`[broker]`, `[broker.tls]`, `listen = "127.0.0.1:8883"`, // 5
				`require_client_cert = true`)}, // 6
			want: []wantErr{
				{line: 4, key: "broker.tls.cert_file", msg: "needs cert_file and key_file"},
				{line: 6, key: "broker.tls.require_client_cert", msg: "needs client_ca_file"},
			},
		},
		{
			name:  "same port twice",
			files: memFS{testMain: gw + lines(`[broker]`, `listen = "127.0.0.1:1883"`, `[broker.websocket]`, `listen = "127.0.0.1:1883"`)},
			want:  []wantErr{{line: 6, key: "broker.websocket.listen", msg: "already the address of broker.listen"}},
		},
		{
			name:  "queue bytes below packet size",
			files: memFS{testMain: gw + lines(`[broker]`, `max_packet_size = "1MiB"`, `client_queue_bytes = "64KiB"`)},
			want:  []wantErr{{line: 5, key: "broker.client_queue_bytes", msg: "below max_packet_size"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadMem(tt.files, nil)
			if cfg != nil {
				t.Fatalf("got a config and error %v", err)
			}
			checkErrors(t, err, tt.want)
		})
	}
}

func TestBrokerAllowAnonymousBeyondLoopback(t *testing.T) {
	cfg, err := loadMem(memFS{testMain: lines(`[gateway]`, `id = "gw"`, `[broker]`, `listen = "0.0.0.0:1883"`, `allow_anonymous = true`)}, nil)
	if err != nil || !cfg.Broker.AllowAnonymous {
		t.Fatalf("allow_anonymous = true refused: %v", err)
	}
}

func TestIsLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.0.0.2:1883": true, "[::1]:1883": true, "localhost:1883": true,
		"0.0.0.0:1883": false, ":1883": false, "[::]:1883": false, "10.0.0.5:1883": false, "gw.local:1883": false, "x": false,
	} {
		if got := IsLoopbackListen(addr); got != want {
			t.Errorf("IsLoopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}
