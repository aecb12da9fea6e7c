package door

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Audit defaults: writes.jsonl is rotated at 1 MiB, four rotations are
// kept (writes.jsonl.1 newest … writes.jsonl.4 oldest): at most 5 MiB.
const (
	DefaultAuditMaxBytes = 1 << 20
	DefaultAuditKeep     = 4
	AuditFile            = "writes.jsonl"
	maxAuditValue        = 1024 // bytes of a requested value kept in a line
)

// Audit appends one JSON line per write attempt to dir/writes.jsonl,
// rotating it when it would pass maxBytes. Safe for concurrent use.
type Audit struct {
	dir      string
	maxBytes int64
	keep     int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewAudit returns an audit log in dir; nothing is opened until Append.
func NewAudit(dir string, maxBytes int64, keep int) *Audit {
	if maxBytes <= 0 {
		maxBytes = DefaultAuditMaxBytes
	}
	if keep <= 0 {
		keep = DefaultAuditKeep
	}
	return &Audit{dir: dir, maxBytes: maxBytes, keep: keep}
}

// Line is one audit record.
type Line struct {
	Time      string          `json:"time"` // RFC 3339, UTC, milliseconds
	Source    Source          `json:"source"`
	Topic     string          `json:"topic,omitempty"`
	Device    string          `json:"device"`
	Tag       string          `json:"tag"`
	ID        string          `json:"id,omitempty"`
	Requested json.RawMessage `json:"requested,omitempty"`
	Old       json.RawMessage `json:"old,omitempty"`
	Written   json.RawMessage `json:"written,omitempty"`
	ReadBack  json.RawMessage `json:"readback,omitempty"`
	Result    string          `json:"result"` // ok, refused, failed
	Reason    Reason          `json:"reason,omitempty"`
	Message   string          `json:"message,omitempty"`
	LatencyMs float64         `json:"latency_ms"`
}

// Append writes the line for one attempt. An accepted write is synced to
// disk (it changed the plant); refusals are not, so that a flood of them
// does not wear an SD card.
func (a *Audit) Append(req Request, res *Result, requested string) error {
	b, err := MarshalLine(req, res, requested)
	if err != nil {
		return err
	}
	return a.write(append(b, '\n'), res.Sent)
}

// MarshalLine is the audit line of one attempt as JSON, without the
// newline; requested is the value as given.
func MarshalLine(req Request, res *Result, requested string) ([]byte, error) {
	if len(requested) > maxAuditValue {
		b, _ := json.Marshal(requested[:maxAuditValue] + "…")
		requested = string(b)
	}
	l := Line{
		Time: time.UnixMilli(res.Ts).UTC().Format("2006-01-02T15:04:05.000Z07:00"), Source: req.Source, Topic: req.Topic,
		Device: req.Device, Tag: req.Tag, ID: req.ID, Old: res.Old, Written: res.Written, ReadBack: res.ReadBack,
		Result: res.Status(), Reason: res.Reason, Message: res.Message, LatencyMs: res.LatencyMs,
	}
	if requested != "" {
		l.Requested = json.RawMessage(requested)
	}
	return json.Marshal(l)
}

// write appends one line, synced when sync is set.
func (a *Audit) write(b []byte, sync bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.open(int64(len(b))); err != nil {
		return err
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	if err == nil && sync {
		err = a.f.Sync()
	}
	return err
}

// open makes sure a file with room for n more bytes is open, rotating.
func (a *Audit) open(n int64) error {
	path := filepath.Join(a.dir, AuditFile)
	if a.f != nil && a.size+n <= a.maxBytes {
		return nil
	}
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	if a.f == nil {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 && st.Size()+n > a.maxBytes {
			if err := a.rotate(path); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(a.dir, 0o750); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	a.f, a.size = f, st.Size()
	return nil
}

// rotate shifts path.k to path.k+1 (dropping the oldest) and path to path.1.
func (a *Audit) rotate(path string) error {
	_ = os.Remove(fmt.Sprintf("%s.%d", path, a.keep))
	for k := a.keep - 1; k >= 1; k-- {
		from := fmt.Sprintf("%s.%d", path, k)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, fmt.Sprintf("%s.%d", path, k+1)); err != nil {
				return fmt.Errorf("audit: rotate: %w", err)
			}
		}
	}
	if err := os.Rename(path, path+".1"); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	return nil
}

// Close closes the file; a later Append opens it again.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
