// Package door is the single entry point of every write to the plant: the
// CLI (through the daemon's control socket), local and cloud MQTT commands,
// Sparkplug commands and the console all call Door.Write. It applies the
// write policy once, with one long-lived state per running daemon
// (writable, min/max, write_interval, command ids, command age, the master
// switch and the per-source switches), hands an accepted write to the
// device's driver through southbound.Writer (which runs it in the device's
// lane, between polls), reads the value back, audits every attempt to a
// rotated JSON-lines file and counts it for Prometheus.
//
// It knows tags, values and the southbound contract; it must not know any
// protocol (no Modbus, no OPC UA) nor MQTT: sources translate their
// payloads into a Request and the Result into their replies.
package door

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// Reason says why a write was not applied. The values are a stable,
// documented list (README "Writes"): replies and audit lines carry them.
type Reason string

// The reasons. Refusals (nothing was sent to the device): not_writable,
// out_of_range, too_soon, duplicate, expired, device_offline, bad_payload,
// denied. Failures (the write was sent): device_refused, timeout.
const (
	NotWritable   Reason = "not_writable"   // no such tag, or not writable = true, or its driver cannot write
	OutOfRange    Reason = "out_of_range"   // outside min/max, NaN, or does not fit the tag's type
	TooSoon       Reason = "too_soon"       // sooner than write_interval after the last accepted write
	Duplicate     Reason = "duplicate"      // a command id already applied within the duplicate window
	Expired       Reason = "expired"        // issued longer than max_command_age ago
	DeviceOffline Reason = "device_offline" // no connection to the device: nothing was sent
	DeviceRefused Reason = "device_refused" // the device answered with an error (exception, Bad status)
	Timeout       Reason = "timeout"        // the device did not answer in time (the write may have landed)
	BadPayload    Reason = "bad_payload"    // the value cannot be read as the tag's type, or the request is malformed
	Denied        Reason = "denied"         // writes are off ([gateway] writes) or this source may not write
)

// Reasons lists every reason, for documentation and tests.
var Reasons = []Reason{NotWritable, OutOfRange, TooSoon, Duplicate, Expired, DeviceOffline, DeviceRefused, Timeout, BadPayload, Denied}

// SourceKind says where a write came from.
type SourceKind string

// Sources of writes.
const (
	FromCLI       SourceKind = "cli"       // edged write, through the control socket or on its own
	FromLocal     SourceKind = "local"     // a client of the embedded broker
	FromUpstream  SourceKind = "upstream"  // a cloud broker ([[upstream]])
	FromSparkplug SourceKind = "sparkplug" // a Sparkplug DCMD
	FromConsole   SourceKind = "console"   // the web console
)

// Source identifies who asked: the kind, then the upstream's name or the
// local client id, and the user (MQTT username, or the Unix user of the
// CLI as the kernel reports it on the control socket).
type Source struct {
	Kind SourceKind `json:"kind"`
	Name string     `json:"name,omitempty"`
	User string     `json:"user,omitempty"`
}

func (s Source) String() string {
	out := string(s.Kind)
	if s.Name != "" {
		out += " " + s.Name
	}
	if s.User != "" {
		out += " (user " + s.User + ")"
	}
	return out
}

// Request is one write. The value is given once: as JSON (a bare value,
// as MQTT commands carry it: 42.5, true, "text"), as command-line Text
// (parsed for the tag's type: "on", "0x10", "1450.5"), or typed.
type Request struct {
	Device string          `json:"device"`
	Tag    string          `json:"tag"`
	Value  json.RawMessage `json:"value,omitempty"`
	Text   string          `json:"text,omitempty"`
	Typed  *mapping.Value  `json:"-"`
	Source Source          `json:"source"`
	// ID is the command id: a second request with the same id within
	// DuplicateWindow is refused as duplicate (MQTT QoS 1 redelivers).
	ID string `json:"id,omitempty"`
	// Issued is when the command was issued (MQTT 5 message expiry, a "ts"
	// in the payload); older than MaxCommandAge is refused as expired. Zero:
	// now (the CLI).
	Issued time.Time `json:"issued,omitzero"`
	// Expires, when set, is when the command stops being valid (MQTT 5
	// Message Expiry, counted from when the broker received it); later is
	// refused as expired, as Issued older than MaxCommandAge is.
	Expires time.Time `json:"expires,omitzero"`
	// Topic is the MQTT topic the command came on (for the audit line).
	Topic string `json:"topic,omitempty"`
	// Refused, when set, is a refusal the source already decided (a
	// payload it could not read: bad_payload; its command queue full:
	// too_soon) with RefusedMsg saying why. The door applies the switches
	// and the age first, then refuses with it and audits the attempt.
	Refused    Reason `json:"refused,omitempty"`
	RefusedMsg string `json:"refused_msg,omitempty"`
}

// Result is the door's answer to one Request, as replies and audit lines
// show it. OK means the device accepted the write; ReadBack is then the
// value read afterwards (absent when the read back failed: Message says
// why). A Result that is not OK has a Reason; Sent says whether the write
// reached the device (false for every refusal: they never reach the wire).
type Result struct {
	OK       bool            `json:"ok"`
	Reason   Reason          `json:"reason,omitempty"`
	Message  string          `json:"message,omitempty"`
	ID       string          `json:"id,omitempty"`
	Device   string          `json:"device"`
	Tag      string          `json:"tag"`
	Unit     string          `json:"unit,omitempty"`
	Old      json.RawMessage `json:"old,omitempty"`      // the last good value before the write
	Written  json.RawMessage `json:"v,omitempty"`        // the value written, as the tag's type
	ReadBack json.RawMessage `json:"readback,omitempty"` // the value read back after the write
	Sent     bool            `json:"sent"`
	// Ts is when the request arrived (unix ms); ReadBackTs the time of the
	// read-back sample; LatencyMs request to answer; WriteMs the device's
	// part (the write call, queueing in the lane included).
	Ts         int64   `json:"ts"`
	ReadBackTs int64   `json:"readback_ts,omitempty"`
	LatencyMs  float64 `json:"latency_ms"`
	WriteMs    float64 `json:"write_ms,omitempty"`
}

// Status is the Result's outcome in one word, for audit lines and metrics:
// ok, refused (nothing sent) or failed (sent, not confirmed).
func (r *Result) Status() string {
	switch {
	case r.OK:
		return "ok"
	case r.Sent:
		return "failed"
	}
	return "refused"
}

// Target is one writable tag of a running device, as the device host
// shows it to the door.
type Target struct {
	Spec   *mapping.Spec
	State  southbound.State
	Writer southbound.Writer // nil: the driver cannot write
	// Reader reads the tag back on demand; nil: the door waits for the
	// device's next sample batch after the write instead.
	Reader southbound.TagReader
	// Last returns the tag's newest sample and how many sample batches the
	// device has delivered so far (the door waits for the count to move to
	// read back a driver that is no TagReader).
	Last func() (mapping.Sample, uint64)
}

// Devices is what the door needs from the device host: the running tag
// named by device and tag, or an error saying why there is none.
type Devices interface {
	Target(device, tag string) (Target, error)
}

// Options are the door's policy beyond the tags' own (writable, min, max,
// write_interval) and where it audits.
type Options struct {
	// Writes is [gateway] writes: nil (not set) lets only the CLI write;
	// false refuses every write, the CLI's too; true lets every source
	// whose own switch (Allow) is on.
	Writes *bool
	// Allow says whether a source other than the CLI may write (issue 11's
	// [broker] commands and [[upstream]] commands). Nil: none may.
	Allow func(Source) bool
	// MaxCommandAge refuses requests issued longer ago; default 10s.
	MaxCommandAge time.Duration
	// DuplicateWindow is how long a command id is remembered; default 10m.
	DuplicateWindow time.Duration
	// AuditDir holds writes.jsonl and its rotations; "" audits nowhere
	// (tests of pure policy only).
	AuditDir string
	// AuditMaxBytes caps writes.jsonl before it is rotated; default 1 MiB.
	AuditMaxBytes int64
	// AuditKeep is how many rotated files are kept; default 4.
	AuditKeep int
	// OnAudit, when set, is given every attempt's audit line (JSON, no
	// newline; the file's line) after it is written to the file: the
	// daemon publishes it on [gateway] audit_topic. It must not block.
	OnAudit func(line []byte)
	// Logger receives accepted writes (info) and audit trouble (error).
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultMaxCommandAge   = 10 * time.Second
	DefaultDuplicateWindow = 10 * time.Minute
	maxRememberedIDs       = 10000
)

// Door is the write entry point of one running daemon. Its methods are
// safe for concurrent use.
type Door struct {
	devices Devices
	log     *slog.Logger
	now     func() time.Time
	audit   *Audit
	writes  *prometheus.CounterVec

	mu        sync.Mutex // guards opts, lastWrite, ids
	opts      Options
	lastWrite map[string]time.Time // device "\x00" tag → last accepted write
	ids       map[string]time.Time // command id → when it was accepted
	limits    rateLimits
}

// New returns a door over devices. The audit file is opened lazily, at the
// first write; a failure to audit is logged and does not stop writes.
func New(devices Devices, opts Options) *Door {
	d := &Door{
		devices:   devices,
		lastWrite: map[string]time.Time{},
		ids:       map[string]time.Time{},
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edged_writes_total",
			Help: "Write attempts through the write door, by result (ok, refused: nothing sent, failed: sent but not confirmed) and reason.",
		}, []string{"result", "reason"}),
	}
	d.log = opts.Logger
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.now = opts.Now
	if d.now == nil {
		d.now = time.Now
	}
	if opts.AuditDir != "" {
		d.audit = NewAudit(opts.AuditDir, opts.AuditMaxBytes, opts.AuditKeep)
	}
	d.Configure(opts)
	return d
}

// Configure replaces the policy options (a reload); the audit settings and
// the remembered write times and command ids stay.
func (d *Door) Configure(opts Options) {
	if opts.MaxCommandAge <= 0 {
		opts.MaxCommandAge = DefaultMaxCommandAge
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	d.mu.Lock()
	d.opts = opts
	d.mu.Unlock()
}

// Collector is the door's counter, edged_writes_total{result,reason}.
func (d *Door) Collector() prometheus.Collector { return d.writes }

// Close closes the audit file.
func (d *Door) Close() error {
	if d.audit == nil {
		return nil
	}
	return d.audit.Close()
}

// Write applies one request and answers it; it never panics on what a
// request holds. ctx bounds the device's part and the read back: a write
// that was sent keeps its result (ok) when only the read back runs out of
// time.
func (d *Door) Write(ctx context.Context, req Request) Result {
	start := d.now()
	res := Result{ID: req.ID, Device: req.Device, Tag: req.Tag, Ts: start.UnixMilli()}
	val := d.apply(ctx, req, &res, start)
	res.LatencyMs = ms(d.now().Sub(start))
	d.writes.WithLabelValues(res.Status(), string(res.Reason)).Inc()
	d.mu.Lock()
	onAudit := d.opts.OnAudit
	d.mu.Unlock()
	if d.audit != nil || onAudit != nil {
		line, err := MarshalLine(req, &res, val)
		switch {
		case err != nil:
			d.log.Error("write audit failed", "err", err)
		default:
			if d.audit != nil {
				if err := d.audit.write(append(line, '\n'), res.Sent); err != nil {
					d.log.Error("write audit failed", "dir", d.audit.dir, "err", err)
				}
			}
			if onAudit != nil {
				onAudit(line[:len(line):len(line)])
			}
		}
	}
	if res.Sent {
		d.log.Info("write", "device", req.Device, "tag", req.Tag, "source", req.Source.String(), "result", res.Status(),
			"reason", string(res.Reason), "value", string(res.Written), "readback", string(res.ReadBack), "latency_ms", res.LatencyMs)
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *Result) refuse(reason Reason, format string, args ...any) {
	r.OK, r.Reason, r.Message = false, reason, fmt.Sprintf(format, args...)
}

// apply fills res; it returns the requested value as given (for the audit).
func (d *Door) apply(ctx context.Context, req Request, res *Result, now time.Time) (requested string) {
	requested = requestedText(req)
	if req.Device == "" || req.Tag == "" {
		res.refuse(BadPayload, "write refused: a write names a device and a tag")
		return
	}
	d.mu.Lock()
	opts := d.opts
	d.mu.Unlock()
	if reason, msg := allowed(opts, req.Source); reason != "" {
		res.refuse(reason, "write refused: %s", msg)
		return
	}
	if !req.Issued.IsZero() {
		if age := now.Sub(req.Issued); age > opts.MaxCommandAge {
			res.refuse(Expired, "write refused: the command was issued %v ago, max_command_age = %v", age.Round(time.Millisecond), opts.MaxCommandAge)
			return
		}
	}
	if !req.Expires.IsZero() && now.After(req.Expires) {
		res.refuse(Expired, "write refused: the command expired %v ago (MQTT message expiry)", now.Sub(req.Expires).Round(time.Millisecond))
		return
	}
	if req.Source.Kind != FromCLI && !d.limits.take(req.Source, req.Device, req.Tag, now) {
		res.refuse(TooSoon, "write refused: rate limit: more than %d commands in a burst (then %g/s) from %s or to tag %s/%s", rateBurst, rateRefill, req.Source, req.Device, req.Tag)
		return
	}
	if req.Refused != "" {
		res.refuse(req.Refused, "write refused: %s", req.RefusedMsg)
		return
	}
	if req.ID != "" && d.seen(req.ID, now, opts.DuplicateWindow) {
		res.refuse(Duplicate, "write refused: command id %q was already applied (within %v)", req.ID, opts.DuplicateWindow)
		return
	}
	tgt, err := d.devices.Target(req.Device, req.Tag)
	if err != nil {
		res.refuse(NotWritable, "write refused: %v", err)
		return
	}
	spec := tgt.Spec
	res.Unit = spec.Unit
	v, err := value(spec, req)
	if err != nil {
		res.refuse(BadPayload, "write refused: %v", err)
		return
	}
	if tgt.Writer == nil {
		res.refuse(NotWritable, "write refused: device %q: its driver cannot write", req.Device)
		return
	}
	key := req.Device + "\x00" + req.Tag
	d.mu.Lock()
	err = spec.CheckWrite(v, d.lastWrite[key], now)
	if err == nil && tgt.State != southbound.StateOnline {
		err = fmt.Errorf("write refused: device %q is %s: %w", req.Device, tgt.State, southbound.ErrOffline)
	}
	if err == nil {
		// The slot is taken now, so that a concurrent write to the same
		// tag is refused as too soon rather than sent twice.
		d.lastWrite[key] = now
		if req.ID != "" {
			d.remember(req.ID, now, opts.DuplicateWindow)
		}
	}
	d.mu.Unlock()
	if err != nil {
		res.refuse(classify(err), "%v", err)
		return
	}
	res.Written = encode(v, spec)
	if tgt.Last != nil {
		old, _ := tgt.Last()
		if old.Quality == mapping.Good && old.Value.Kind != mapping.KindNone {
			res.Old = encode(old.Value, spec)
		}
	}
	t0 := d.now()
	if res.Old == nil && tgt.Reader != nil {
		// Nothing delivered yet (a subscription just started): ask.
		if old, err := tgt.Reader.ReadTag(ctx, req.Tag); err == nil && old.Quality == mapping.Good {
			res.Old = encode(old.Value, spec)
		}
	}
	err = tgt.Writer.Write(ctx, req.Tag, v)
	res.WriteMs = ms(d.now().Sub(t0))
	if err != nil {
		res.refuse(classify(err), "%v", err)
		// The driver's own policy check and a missing connection sent
		// nothing; any other failure may have reached the device.
		res.Sent = !errors.Is(err, mapping.ErrWriteRefused) && !errors.Is(err, southbound.ErrOffline)
		return
	}
	res.OK, res.Sent = true, true
	d.readBack(ctx, tgt, res)
	return
}

// allowed applies the master switch and the source's own switch.
func allowed(opts Options, src Source) (Reason, string) {
	if opts.Writes != nil && !*opts.Writes {
		return Denied, "writes are off ([gateway] writes = false)"
	}
	if src.Kind == "" {
		return BadPayload, "a write names its source"
	}
	if src.Kind == FromCLI {
		return "", ""
	}
	if opts.Writes == nil {
		return Denied, fmt.Sprintf("writes from %s are off: set [gateway] writes = true (and enable the source)", src.Kind)
	}
	if opts.Allow == nil || !opts.Allow(src) {
		return Denied, fmt.Sprintf("source %s may not write (its commands are not enabled)", src)
	}
	return "", ""
}

// seen reports whether id was accepted within window.
func (d *Door) seen(id string, now time.Time, window time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.ids[id]
	return ok && now.Sub(at) < window
}

// remember records an accepted command id, forgetting expired ones (and
// the oldest, past maxRememberedIDs). d.mu is held.
func (d *Door) remember(id string, now time.Time, window time.Duration) {
	if len(d.ids) >= maxRememberedIDs {
		var oldest string
		var at time.Time
		for k, t := range d.ids {
			if now.Sub(t) >= window {
				delete(d.ids, k)
				continue
			}
			if oldest == "" || t.Before(at) {
				oldest, at = k, t
			}
		}
		if len(d.ids) >= maxRememberedIDs {
			delete(d.ids, oldest)
		}
	}
	d.ids[id] = now
}

// readBack fills the read-back value: through the driver's TagReader, or
// from the first poll the device delivers after the write returned (a
// driver that is no TagReader runs writes and polls on one goroutine, so
// that poll started after the write).
func (d *Door) readBack(ctx context.Context, tgt Target, res *Result) {
	if tgt.Reader != nil {
		s, err := tgt.Reader.ReadTag(ctx, res.Tag)
		if err != nil {
			res.Message = fmt.Sprintf("written; read back failed: %v", err)
			return
		}
		readBackSample(res, s, tgt.Spec)
		return
	}
	if tgt.Last == nil {
		res.Message = "written; this device cannot be read back"
		return
	}
	_, after := tgt.Last()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s, n := tgt.Last()
		if n > after {
			readBackSample(res, s, tgt.Spec)
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			res.Message = "written; no poll read it back in time"
			return
		}
	}
}

func readBackSample(res *Result, s mapping.Sample, spec *mapping.Spec) {
	if s.Quality != mapping.Good {
		res.Message = fmt.Sprintf("written; read back failed: %v", s.Err)
		return
	}
	res.ReadBack = encode(s.Value, spec)
	res.ReadBackTs = s.TimeMs
}

// classify maps a policy or driver error to its reason.
func classify(err error) Reason {
	var refusal southbound.DeviceRefusal
	var ne net.Error
	switch {
	case errors.Is(err, mapping.ErrNotWritable):
		return NotWritable
	case errors.Is(err, mapping.ErrOutOfRange), errors.Is(err, mapping.ErrRange):
		return OutOfRange
	case errors.Is(err, mapping.ErrTooSoon):
		return TooSoon
	case errors.Is(err, mapping.ErrNoValue):
		return BadPayload
	case errors.Is(err, mapping.ErrWriteRefused):
		return BadPayload // the driver could not encode the value for the device
	case errors.Is(err, southbound.ErrOffline):
		return DeviceOffline
	case errors.As(err, &refusal) && refusal.DeviceRefused():
		return DeviceRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.As(err, &refusal):
		return DeviceOffline // a gateway answered for a device it cannot reach
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, net.ErrClosed):
		return DeviceOffline
	}
	return DeviceRefused
}
