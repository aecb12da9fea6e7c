package sparkplug

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want State
		err  string
	}{
		{in: `{"online":true,"timestamp":1700000000000}`, want: State{Online: true, Timestamp: 1700000000000}},
		{in: ` {"timestamp": 5, "online": false, "extra": 1} `, want: State{Timestamp: 5}},
		{in: `{"online":true}`, err: "missing"},
		{in: `{"timestamp":1}`, err: "missing"},
		{in: `ONLINE`, err: "2.2 form"},
		{in: `OFFLINE`, err: "2.2 form"},
		{in: `{"online":"yes","timestamp":1}`, err: "STATE"},
		{in: `{"online":true,"timestamp":-1}`, err: "STATE"},
		{in: ``, err: "STATE"},
	} {
		got, err := ParseState([]byte(tt.in))
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseState(%q) error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseState(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestPrimaryHost: births wait for online on each connection; offline says
// disconnect; a stale (older) STATE is ignored.
func TestPrimaryHost(t *testing.T) {
	h, err := NewPrimaryHost("scada")
	if err != nil {
		t.Fatal(err)
	}
	if h.Topic() != "spBv1.0/STATE/scada" {
		t.Errorf("Topic %q", h.Topic())
	}
	if _, err := NewPrimaryHost("a/b"); err == nil {
		t.Error("NewPrimaryHost(a/b) = nil error")
	}
	st := func(online bool, ts int) []byte {
		if online {
			return []byte(`{"online":true,"timestamp":` + strconv.Itoa(ts) + `}`)
		}
		return []byte(`{"online":false,"timestamp":` + strconv.Itoa(ts) + `}`)
	}
	steps := []struct {
		do     func() (HostEvent, error)
		want   HostEvent
		online bool
	}{
		{func() (HostEvent, error) { return h.Observe(st(false, 10)) }, HostUnchanged, false},
		{func() (HostEvent, error) { return h.Observe(st(true, 20)) }, HostOnline, true},
		{func() (HostEvent, error) { return h.Observe(st(true, 20)) }, HostUnchanged, true},
		{func() (HostEvent, error) { return h.Observe(st(false, 15)) }, HostUnchanged, true}, // stale
		{func() (HostEvent, error) { return h.Observe([]byte("junk")) }, HostUnchanged, true},
		{func() (HostEvent, error) { return h.Observe(st(false, 30)) }, HostOffline, false},
		{func() (HostEvent, error) { return h.Observe(st(true, 25)) }, HostUnchanged, false}, // stale
		{func() (HostEvent, error) { return h.Observe(st(true, 40)) }, HostOnline, true},
		{func() (HostEvent, error) { h.NewConnection(); return HostUnchanged, nil }, HostUnchanged, false},
		{func() (HostEvent, error) { return h.Observe(st(true, 40)) }, HostOnline, true}, // the retained one again
	}
	for i, s := range steps {
		got, _ := s.do()
		if got != s.want || h.Online() != s.online {
			t.Errorf("step %d: event %v online %v, want %v %v", i, got, h.Online(), s.want, s.online)
		}
	}
}
