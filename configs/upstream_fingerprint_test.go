package configs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUpstreamFingerprint(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := Upstream{Name: "cloud", URL: "mqtts://h:8883", CAFile: ca, KeepAlive: Duration(30 * time.Second), Topics: []string{"edged/#"}, Line: 3}
	fp := base.Fingerprint()
	moved := base
	moved.Line = 40
	if moved.Fingerprint() != fp {
		t.Error("the table's line changed the fingerprint")
	}
	for name, change := range map[string]func(u *Upstream){
		"keepalive": func(u *Upstream) { u.KeepAlive = Duration(time.Minute) },
		"topics":    func(u *Upstream) { u.Topics = []string{"edged/#", "other/#"} },
		"password":  func(u *Upstream) { u.Password = "x" },
	} {
		u := base
		change(&u)
		if u.Fingerprint() == fp {
			t.Errorf("changing %s kept the fingerprint", name)
		}
	}
	if err := os.WriteFile(ca, []byte("renewed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if base.Fingerprint() == fp {
		t.Error("a renewed CA file kept the fingerprint")
	}
}

// TestUpstreamBufferKey: only the settings of how messages are kept
// (folder, caps, sync, write delay) change the buffer key, so that a
// reload hands the open buffer over exactly when it may.
func TestUpstreamBufferKey(t *testing.T) {
	base := func() *Upstream {
		return &Upstream{Name: "cloud", URL: "mqtts://a:8883", BufferDir: "/b", MaxBytes: 64 << 20,
			Sync: "interval", SyncInterval: Duration(time.Second)}
	}
	d := func(v time.Duration) *Duration { x := Duration(v); return &x }
	for _, tt := range []struct {
		name string
		edit func(*Upstream)
		same bool
	}{
		{"url", func(u *Upstream) { u.URL = "mqtts://b:8883" }, true},
		{"keepalive", func(u *Upstream) { u.KeepAlive = Duration(time.Minute) }, true},
		{"buffer_dir", func(u *Upstream) { u.BufferDir = "/c" }, false},
		{"max_bytes", func(u *Upstream) { u.MaxBytes = 32 << 20 }, false},
		{"max_age", func(u *Upstream) { u.MaxAge = Duration(time.Hour) }, false},
		{"sync", func(u *Upstream) { u.Sync = "always" }, false},
		{"sync_interval", func(u *Upstream) { u.SyncInterval = Duration(2 * time.Second) }, false},
		{"write_delay unset → 0s", func(u *Upstream) { u.WriteDelay = d(0) }, false},
		{"write_delay unset → 1s", func(u *Upstream) { u.WriteDelay = d(time.Second) }, false},
	} {
		u := base()
		tt.edit(u)
		if got := u.BufferKey() == base().BufferKey(); got != tt.same {
			t.Errorf("%s: same buffer key %v, want %v", tt.name, got, tt.same)
		}
	}
	a, b := base(), base()
	a.WriteDelay, b.WriteDelay = d(time.Second), d(time.Second)
	if a.BufferKey() != b.BufferKey() {
		t.Error("equal write_delay: different buffer keys")
	}
}
