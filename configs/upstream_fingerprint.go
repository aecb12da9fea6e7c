package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// Fingerprint identifies what an upstream was configured with: its decoded
// settings (defaults applied, so spelling out a default changes nothing)
// and the content of its certificate and key files, so that a renewed
// certificate at the same path counts as a change. A reload restarts only
// upstreams whose fingerprint changed. A file that cannot be read counts
// by its path only.
func (u *Upstream) Fingerprint() string {
	c := *u
	c.Line = 0
	b, _ := json.Marshal(c)
	h := sha256.New()
	h.Write(b)
	for _, f := range []string{u.CAFile, u.CertFile, u.KeyFile} {
		h.Write([]byte{0})
		if f == "" {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BufferKey identifies how u keeps its messages (folder, caps and sync
// policy): an upstream whose other settings change, and whose BufferKey
// does not, can hand its open buffer to its successor.
func (u *Upstream) BufferKey() string {
	delay := "default"
	if u.WriteDelay != nil {
		delay = u.WriteDelay.D().String()
	}
	return fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%s\x00%s", u.BufferDir, int64(u.MaxBytes), u.MaxAge.D(), u.Sync, u.SyncInterval.D(), delay)
}
