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
