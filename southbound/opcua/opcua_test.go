package opcua

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

func f64(f float64) mapping.Value { return mapping.Value{Kind: mapping.KindFloat, Float: f} }
func i64(i int64) mapping.Value   { return mapping.Value{Kind: mapping.KindInt, Int: i} }

// Anonymous over None: the subscription delivers every type, changes made
// with SetValue arrive, and a node the server does not have marks that one
// tag bad with its status code while the others keep flowing.
func TestSubscriptionValuesAndMissingNode(t *testing.T) {
	ts := startServer(t, map[string]any{
		"speed": 12.5, "count": int32(7), "running": true, "mode": "AUTO",
		"stamp": time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), "blob": []byte{1, 2, 3}, "profile": []float64{1, 2.5},
	})
	d := newDevice(t, ts.URL(), nil,
		tag("speed", "ns=2;s=speed"), tag("count", "ns=2;s=count"), tag("running", "ns=2;s=running"),
		tag("mode", "ns=2;s=mode"), tag("stamp", "ns=2;s=stamp"), tag("blob", "ns=2;s=blob"),
		tag("profile", "ns=2;s=profile"), tag("ghost", "ns=2;s=does.not.exist"),
		Tag{Spec: mapping.Spec{Name: "by_path"}, BrowsePath: "2:speed"},
	)
	s := start(t, d)
	s.waitState(t, southbound.StateOnline)
	s.waitValue(t, "speed", f64(12.5))
	s.waitValue(t, "count", i64(7))
	s.waitValue(t, "running", mapping.Value{Kind: mapping.KindBool, Bool: true})
	s.waitValue(t, "mode", mapping.Value{Kind: mapping.KindString, Str: "AUTO"})
	s.waitValue(t, "stamp", mapping.Value{Kind: mapping.KindString, Str: "2024-05-01T12:00:00.000Z"})
	s.waitValue(t, "blob", mapping.Value{Kind: mapping.KindString, Str: "AQID"})
	s.waitValue(t, "profile", mapping.Value{Kind: mapping.KindJSON, Str: "[1,2.5]"})

	s.waitFor(t, 10*time.Second, "ghost bad", func() bool { x, ok := s.sample("ghost"); return ok && x.Quality == mapping.Bad })
	ghost, _ := s.sample("ghost")
	if ghost.Err == nil || !strings.Contains(ghost.Err.Error(), "BadNodeIdUnknown (0x80340000)") || !errors.Is(ghost.Err, ua.StatusBadNodeIDUnknown) {
		t.Errorf("ghost err = %v, want BadNodeIdUnknown (0x80340000) kept", ghost.Err)
	}
	// gopcua's server does not implement TranslateBrowsePathsToNodeIDs: the
	// browse-path tag is bad with that reason, and nothing else suffers.
	s.waitFor(t, 10*time.Second, "by_path bad", func() bool { x, ok := s.sample("by_path"); return ok && x.Quality == mapping.Bad })
	if x, _ := s.sample("by_path"); !strings.Contains(x.Err.Error(), "BadServiceUnsupported") {
		t.Errorf("by_path err = %v", x.Err)
	}

	ts.set("speed", 99.25)
	ts.set("count", int32(-3))
	s.waitValue(t, "speed", f64(99.25))
	s.waitValue(t, "count", i64(-3))
	if st, _ := s.state(); st != southbound.StateOnline {
		t.Errorf("state %v after a bad node, want online", st)
	}
}

// The server is stopped and started again on the same port: the device
// goes offline (tags bad), then online again with a new session and new
// monitored items, and changes made after the restart arrive, all without
// restarting the driver.
func TestServerRestartResumes(t *testing.T) {
	ts := startServer(t, map[string]any{"speed": 1.0, "other": int32(1)})
	d := newDevice(t, ts.URL(), nil, tag("speed", "ns=2;s=speed"), tag("other", "ns=2;s=other"))
	s := start(t, d)
	s.waitValue(t, "speed", f64(1))
	s.waitState(t, southbound.StateOnline)

	ts.stop()
	s.waitState(t, southbound.StateOffline)
	s.waitFor(t, 10*time.Second, "speed bad", func() bool { x, _ := s.sample("speed"); return x.Quality == mapping.Bad })
	ts.restart()
	s.waitState(t, southbound.StateOnline)
	ts.set("speed", 2.0)
	s.waitValue(t, "speed", f64(2))
	ts.set("speed", 3.0)
	s.waitValue(t, "speed", f64(3))
	ts.set("other", int32(5))
	s.waitValue(t, "other", i64(5))
	if c := d.Counters().Connects; c < 2 {
		t.Errorf("connects = %d, want ≥ 2", c)
	}
}

// Poll mode with more tags than the server's MaxNodesPerRead (32): every
// Read carries at most 32 nodes (the test server refuses larger ones), and
// all values arrive.
func TestPollChunksByServerLimit(t *testing.T) {
	data := map[string]any{}
	var tags []Tag
	for i := range 100 {
		k := fmt.Sprintf("v%03d", i)
		data[k] = int32(i)
		tags = append(tags, tag(k, "ns=2;s="+k))
	}
	ts := startServer(t, data)
	d := newDevice(t, ts.URL(), func(d *Device) { d.Mode = "poll"; d.PollInterval = 50 * 1e6 }, tags...)
	s := start(t, d)
	s.waitValue(t, "v099", i64(99))
	s.waitValue(t, "v000", i64(0))
	ts.set("v050", int32(5000))
	s.waitValue(t, "v050", i64(5000))
	if m := ts.maxRead.Load(); m > serverMaxNodesPerRead {
		t.Errorf("a Read carried %d nodes, server limit %d", m, serverMaxNodesPerRead)
	}
	if r := ts.reads.Load(); r < 4 {
		t.Errorf("%d Reads for 100 nodes, want ≥ 4 per cycle", r)
	}
	if st, _ := s.state(); st != southbound.StateOnline {
		t.Errorf("state %v", st)
	}
}

// Writes go through the Write service; refused writes never reach it.
func TestWrites(t *testing.T) {
	ts := startServer(t, map[string]any{"setpoint": 10.0, "locked": 1.0, "count": int32(1)})
	lo, hi := 0.0, 100.0
	d := newDevice(t, ts.URL(), nil,
		Tag{Spec: mapping.Spec{Name: "setpoint", Writable: true, Min: &lo, Max: &hi, WriteInterval: 0}, Node: "ns=2;s=setpoint"},
		Tag{Spec: mapping.Spec{Name: "count", Writable: true, Type: mapping.TypeInt32, Scale: 0.1}, Node: "ns=2;s=count"},
		tag("locked", "ns=2;s=locked"),
	)
	s := start(t, d)
	s.waitState(t, southbound.StateOnline)
	ctx := context.Background()

	if err := d.Write(ctx, "setpoint", f64(42.5)); err != nil {
		t.Fatalf("write setpoint: %v", err)
	}
	if got := ts.get("setpoint"); got != 42.5 {
		t.Errorf("server setpoint = %v (%T), want 42.5", got, got)
	}
	s.waitValue(t, "setpoint", f64(42.5))
	// scale 0.1: 12.3 engineering units is raw 123, sent as Int32.
	if err := d.Write(ctx, "count", f64(12.3)); err != nil {
		t.Fatalf("write count: %v", err)
	}
	if got := ts.get("count"); got != int32(123) {
		t.Errorf("server count = %v (%T), want int32 123", got, got)
	}

	for _, c := range []struct {
		tag string
		v   mapping.Value
	}{
		{"locked", f64(2)},     // not writable
		{"setpoint", f64(101)}, // above max
		{"setpoint", f64(-1)},  // below min
		{"count", mapping.Value{Kind: mapping.KindString, Str: "x"}},
	} {
		err := d.Write(ctx, c.tag, c.v)
		if !errors.Is(err, mapping.ErrWriteRefused) {
			t.Errorf("write %s = %+v: err %v, want a refusal", c.tag, c.v, err)
		}
	}
	if got := ts.get("locked"); got != 1.0 {
		t.Errorf("refused write reached the server: locked = %v", got)
	}
	if got := ts.get("setpoint"); got != 42.5 {
		t.Errorf("refused write reached the server: setpoint = %v", got)
	}
	if err := d.Write(ctx, "nope", f64(1)); err == nil {
		t.Error("write to an unknown tag succeeded")
	}
}

// A secure endpoint (Basic256Sha256 + SignAndEncrypt, username): the
// server's certificate is refused until it is trusted, saved to rejected/
// with a message that says what to do (including edged's own certificate
// path and thumbprint); moving it to trusted/ is picked up by the next
// reconnect attempt without restarting the device.
//
// gopcua's server v0.8.0 cannot complete a secure channel (it answers the
// asymmetric OpenSecureChannel with BadServiceUnsupported, and its
// ActivateSession does not check user tokens), so this test proves the
// trust decision up to the secure channel: after the move, attempts get
// past the trust check and fail later, at the channel.
func TestUntrustedServerCertificate(t *testing.T) {
	var logs lockedBuffer
	sid := testServerIdentity(t)
	ts := startServer(t, map[string]any{"speed": 7.0},
		server.PrivateKey(sid.key), server.Certificate(sid.cert),
		server.EnableSecurity("None", ua.MessageSecurityModeNone), // GetEndpoints
		server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt),
		server.EnableAuthMode(ua.UserTokenTypeUserName),
	)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, ts.URL(), func(d *Device) {
		d.SecurityPolicy, d.SecurityMode = "Basic256Sha256", "SignAndEncrypt"
		d.Auth, d.Username, d.PasswordFile = "username", "edged", pwFile
		d.Logger = slogTo(&logs)
	}, tag("speed", "ns=2;s=speed"))
	s := start(t, d)
	s.waitState(t, southbound.StateOffline)
	_, err := s.state()
	var ue *UntrustedError
	if !errors.As(err, &ue) {
		t.Fatalf("offline because of %v, want an UntrustedError", err)
	}
	// The saved file's name can be pasted into a shell as it is.
	if name := filepath.Base(ue.SavedTo); !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.der$`).MatchString(name) {
		t.Errorf("rejected file name %q needs quoting in a shell", name)
	}
	sha1hex, sha256hex := Thumbprints(sid.cert)
	msg := err.Error()
	for _, want := range []string{sha1hex, sha256hex, "trusted", "trusted_thumbprints", filepath.Join("pki", "own", "cert.der")} {
		if !strings.Contains(msg, want) {
			t.Errorf("guidance %q does not mention %q", msg, want)
		}
	}
	if b, err := os.ReadFile(ue.SavedTo); err != nil || string(b) != string(sid.cert) {
		t.Fatalf("rejected copy %s: %v", ue.SavedTo, err)
	}
	if filepath.Base(filepath.Dir(ue.SavedTo)) != "rejected" {
		t.Errorf("saved to %s, want pki/rejected/", ue.SavedTo)
	}
	if x, ok := s.sample("speed"); ok && x.Quality != mapping.Bad {
		t.Errorf("value delivered from an untrusted server: %+v", x)
	}

	// The installer moves the file; the running device picks it up.
	trusted := filepath.Join(filepath.Dir(filepath.Dir(ue.SavedTo)), "trusted", filepath.Base(ue.SavedTo))
	if err := os.Rename(ue.SavedTo, trusted); err != nil {
		t.Fatal(err)
	}
	before := d.Counters().Failures
	s.waitFor(t, 20*time.Second, "an attempt past the trust check", func() bool {
		c := d.Counters()
		return c.Failures > before+1 && !errors.As(c.LastError, &ue)
	})
	// What is left is shown where the operator looks: the state's error
	// (the _status message and /readyz show it) and a warn line, no
	// longer the advice to move the file.
	s.waitFor(t, 20*time.Second, "the device's error saying the certificate is trusted now", func() bool {
		_, err := s.state()
		var tn *TrustedNowError
		return errors.As(err, &tn)
	})
	_, err = s.state()
	for _, want := range []string{"is trusted now", "the server must trust edged's certificate", filepath.Join("pki", "own", "cert.der")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error after the move %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "to trust it, move") {
		t.Errorf("error after the move still says to move the file: %q", err)
	}
	s.waitFor(t, 10*time.Second, "a warn line with the new reason", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "still offline") && strings.Contains(l, "is trusted now") {
				return true
			}
		}
		return false
	})
	if _, err := os.Stat(filepath.Join(filepath.Dir(ue.SavedTo), filepath.Base(ue.SavedTo))); err == nil {
		t.Error("the certificate was rejected again after it was trusted")
	}
}

// A thumbprint pinned in the config (any case, with or without colons)
// trusts the server without a file in trusted/.
func TestPinnedThumbprint(t *testing.T) {
	sid := testServerIdentity(t)
	ts := startServer(t, map[string]any{"speed": 3.0},
		server.PrivateKey(sid.key), server.Certificate(sid.cert),
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSign),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
	)
	_, sha256hex := Thumbprints(sid.cert)
	d := newDevice(t, ts.URL(), func(d *Device) {
		d.SecurityPolicy, d.SecurityMode = "Basic256Sha256", "Sign"
		d.TrustedThumbprints = []string{strings.ToUpper(sha256hex)}
	}, tag("speed", "ns=2;s=speed"))
	start(t, d)
	deadline := time.Now().Add(20 * time.Second)
	for d.Counters().Failures == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var ue *UntrustedError
	if c := d.Counters(); c.Failures == 0 || errors.As(c.LastError, &ue) {
		t.Errorf("pinned thumbprint: failures %d, last error %v; want an attempt past the trust check", c.Failures, c.LastError)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.dataDir, "pki", "rejected")); len(entries) > 0 {
		t.Errorf("a pinned certificate was saved to rejected/: %v", entries)
	}
}

// The default policy needs a secure endpoint: against a None-only server
// the device stays offline and says what the server offers.
func TestDefaultSecurityRefusesNoneOnlyServer(t *testing.T) {
	ts := startServer(t, map[string]any{"speed": 1.0})
	d := newDevice(t, ts.URL(), func(d *Device) { d.SecurityPolicy, d.SecurityMode = "", "" }, tag("speed", "ns=2;s=speed"))
	s := start(t, d)
	s.waitState(t, southbound.StateOffline)
	if _, err := s.state(); err == nil || !strings.Contains(err.Error(), "it offers: None/None") {
		t.Errorf("err = %v", err)
	}
}

// Stop is safe without Start and twice; the sink is quiet afterwards.
func TestStopLifecycle(t *testing.T) {
	d := newDevice(t, "opc.tcp://127.0.0.1:1", nil, tag("a", "ns=2;s=a"))
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := newSink()
	if err := d.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background(), s); err == nil {
		t.Error("second Start succeeded")
	}
	s.waitState(t, southbound.StateOffline)
	for range 2 {
		if err := d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := s.state(); st != southbound.StateStopped {
		t.Errorf("last state %v, want stopped", st)
	}
	if err := d.Write(context.Background(), "a", f64(1)); err == nil {
		t.Error("write while stopped succeeded")
	}
}

// An OPC UA Float (float32) is published with the shortest digits that
// read back as that float32, exactly as the same float32 read from Modbus
// registers: 3.14159, not 3.141590118408203; a float32 array likewise.
func TestFloat32PrintsLikeModbus(t *testing.T) {
	ts := startServer(t, map[string]any{"pi": float32(3.14159), "pis": []float32{3.14159, 0.1}, "wide": 3.14159})
	d := newDevice(t, ts.URL(), nil, tag("pi", "ns=2;s=pi"), tag("pis", "ns=2;s=pis"), tag("wide", "ns=2;s=wide"))
	s := start(t, d)
	s.waitFor(t, 20*time.Second, "pi, pis and wide good", func() bool {
		for _, n := range []string{"pi", "pis", "wide"} {
			if x, ok := s.sample(n); !ok || x.Quality != mapping.Good {
				return false
			}
		}
		return true
	})
	value := func(x mapping.Sample) string {
		b := mapping.AppendJSON(nil, &x)
		v, _, _ := strings.Cut(strings.TrimPrefix(string(b), `{"v":`), `,"ts":`)
		return v
	}
	// The same float32 as a Modbus tag decodes it from two registers.
	raw := binary.BigEndian.AppendUint32(nil, math.Float32bits(3.14159))
	mb := &mapping.Spec{Name: "pi", Type: mapping.TypeFloat32}
	if err := mb.Init(); err != nil {
		t.Fatal(err)
	}
	mv, err := mb.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	modbus := value(mapping.Sample{Tag: mb, Value: mv})

	pi, _ := s.sample("pi")
	pis, _ := s.sample("pis")
	wide, _ := s.sample("wide")
	for _, c := range []struct{ name, got, want string }{
		{"pi (Float)", value(pi), "3.14159"},
		{"pi from Modbus", modbus, "3.14159"},
		{"pis (Float array)", value(pis), "[3.14159,0.1]"},
		{"wide (Double)", value(wide), "3.14159"},
	} {
		if c.got != c.want {
			t.Errorf("%s published as %s, want %s", c.name, c.got, c.want)
		}
	}
}

// An OPC UA value's ts is its source timestamp when the server sends one
// (as the README says), the time it was received when it does not.
func TestTimestampIsTheSourceTimestamp(t *testing.T) {
	ts := startServer(t, map[string]any{"speed": 1.5})
	d := newDevice(t, ts.URL(), func(d *Device) { d.Mode = "poll"; d.PollInterval = 50 * 1e6 }, tag("speed", "ns=2;s=speed"))
	s := start(t, d)
	before := time.Now().Add(-time.Second).UnixMilli()
	s.waitValue(t, "speed", f64(1.5))
	if x, _ := s.sample("speed"); x.TimeMs < before || x.TimeMs > time.Now().Add(time.Second).UnixMilli() {
		t.Errorf("no source timestamp: ts %d, want the time of the read", x.TimeMs)
	}
	src := time.Date(2024, 5, 1, 12, 0, 0, 123e6, time.UTC)
	ts.sourceTime.Store(&src)
	s.waitFor(t, 20*time.Second, "ts = the source timestamp", func() bool {
		x, _ := s.sample("speed")
		return x.TimeMs == src.UnixMilli()
	})
}

// Node ids by namespace URI (nsu=URI;s=…) are resolved against the
// server's namespace array at every connect: after a restart that moved
// the namespace to another index, the nsu= tag still reads its node while
// a tag bound to the old index reads whatever is there now. A URI the
// server does not have marks that tag bad with a clear error; the others
// keep flowing.
func TestNamespaceURINodeIDs(t *testing.T) {
	ts := startServer(t, map[string]any{"speed": 12.5, "count": int32(7)})
	d := newDevice(t, ts.URL(), nil,
		tag("speed", "nsu="+testNamespaceURI+";s=speed"), tag("count", "nsu=urn%3Aedged-test%3Adata;s=count"),
		tag("by_index", "ns=2;s=speed"), tag("ghost", "nsu=urn:no-such-namespace;s=speed"))
	s := start(t, d)
	s.waitState(t, southbound.StateOnline)
	s.waitValue(t, "speed", f64(12.5))
	s.waitValue(t, "count", i64(7))
	s.waitValue(t, "by_index", f64(12.5))
	s.waitFor(t, 10*time.Second, "ghost bad", func() bool { x, ok := s.sample("ghost"); return ok && x.Quality == mapping.Bad })
	ghost, _ := s.sample("ghost")
	for _, want := range []string{`namespace "urn:no-such-namespace" is not on the server`, strconvQuote(testNamespaceURI)} {
		if ghost.Err == nil || !strings.Contains(ghost.Err.Error(), want) {
			t.Errorf("ghost err = %v, want it to say %s", ghost.Err, want)
		}
	}

	// The server comes back with two namespaces ahead of the test's: its
	// index moves from 2 to 4, and ns=2 is now another namespace's node.
	ts.before = []string{"urn:other:a", "urn:other:b"}
	connects := d.Counters().Connects
	ts.stop()
	s.waitState(t, southbound.StateOffline)
	ts.restart()
	s.waitFor(t, 20*time.Second, "a new session", func() bool { return d.Counters().Connects > connects })
	s.waitState(t, southbound.StateOnline)
	s.waitValue(t, "by_index", f64(-1)) // the index-bound tag reads the wrong node now
	s.waitValue(t, "speed", f64(12.5))
	ts.set("speed", 20.0)
	s.waitValue(t, "speed", f64(20))
	s.waitValue(t, "count", i64(7))
	if st, _ := s.state(); st != southbound.StateOnline {
		t.Errorf("state %v, want online (an unknown namespace is a bad tag, not a dead device)", st)
	}
}

func strconvQuote(s string) string { return `"` + s + `"` }
