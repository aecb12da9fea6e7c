package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/testwait"
	"golang.org/x/crypto/bcrypt"
)

// countingSource is a fixed gateway whose Devices calls are counted: the
// console's cost when nobody looks is the number of those calls.
type countingSource struct {
	calls atomic.Int64
	mu    sync.Mutex
	value string
}

func (s *countingSource) Gateway() GatewayInfo { return GatewayInfo{ID: "gw", Started: time.Now()} }
func (s *countingSource) Devices() []Device {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return []Device{{Name: "plc", State: "online", PollSeconds: 0.01}}
}
func (s *countingSource) Tags(...string) map[string][]Tag {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string][]Tag{"plc": {{Name: "t", Value: s.value, Quality: "good", TimeMs: 1}}}
}
func (s *countingSource) Device(string) (DeviceDetail, bool) { return DeviceDetail{}, true }
func (s *countingSource) Uplinks() []Uplink                  { return nil }
func (s *countingSource) Config() ConfigInfo                 { return ConfigInfo{} }

func (s *countingSource) set(v string) { s.mu.Lock(); s.value = v; s.mu.Unlock() }

// TestNoWorkWhileNobodyLooks: with no browser connected the console reads
// the gateway once per plot sample only; an event stream makes it read
// every LiveEvery and send only what changed; when the browser leaves, the
// reads stop again.
func TestNoWorkWhileNobodyLooks(t *testing.T) {
	src := &countingSource{value: "1"}
	c := New(Options{Source: src, SampleEvery: time.Hour, LiveEvery: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Start(ctx)
	testwait.For(t, testwait.Timeout, "the first plot sample", func() bool { return src.calls.Load() == 1 })
	time.Sleep(200 * time.Millisecond) // twenty live intervals with nobody connected
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d reads of the gateway with no browser connected, want 1 (the plot sample)", n)
	}

	srv := httptest.NewServer(c)
	defer srv.Close()
	rctx, rcancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/console/events?device=plc", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan map[string]string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]string
				if json.Unmarshal([]byte(data), &m) == nil {
					events <- m
				}
			}
		}
		close(events)
	}()
	first := <-events
	if first["d:plc:state"] != "online" || first["t:plc:t:v"] != "1" {
		t.Fatalf("first event lacks the values: %v", first)
	}
	src.set("2")
	var next map[string]string
	for next = range events {
		if next["t:plc:t:v"] != "" {
			break
		}
	}
	if next["t:plc:t:v"] != "2" {
		t.Fatalf("no event with the changed value: %v", next)
	}
	if _, again := next["d:plc:state"]; again {
		t.Errorf("an unchanged value was sent again: %v", next)
	}
	if n := src.calls.Load(); n < 3 {
		t.Fatalf("only %d reads while a browser is connected", n)
	}

	rcancel()
	resp.Body.Close()
	testwait.For(t, testwait.Timeout, "the stream to unsubscribe", func() bool { return !c.rec.connected() })
	after := src.calls.Load()
	time.Sleep(200 * time.Millisecond)
	if n := src.calls.Load(); n > after+1 {
		t.Fatalf("%d reads after the browser left, want at most one more", n-after)
	}
}

func TestBcryptUsers(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u := NewBcryptUsers(map[string]string{"ann": string(h)})
	for _, tc := range []struct {
		user, pass string
		want       bool
	}{{"ann", "right", true}, {"ann", "right", true}, {"ann", "wrong", false}, {"bob", "right", false}, {"ann", "", false}, {"", "", false}} {
		if got := u.Authenticate(tc.user, tc.pass); got != tc.want {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", tc.user, tc.pass, got, tc.want)
		}
	}
	u.Set(map[string]string{})
	if u.Authenticate("ann", "right") {
		t.Error("a removed user still logs in (remembered login not forgotten)")
	}
}

// TestEventJSON: the event stream's hand-written JSON is valid, one line,
// and decodes to the same strings whatever a device or config puts in them.
func TestEventJSON(t *testing.T) {
	m := map[string]string{"plain": "21.5", "quote": `say "hi"\`, "ctl": "a\nb\r\x00\x1f", "utf8": "°C µs ✓", "sep": "\u2028\u2029", "": ""}
	var buf bytes.Buffer
	appendJSONObject(&buf, m)
	if bytes.ContainsAny(buf.Bytes(), "\r\n") {
		t.Fatalf("event data breaks the line: %q", buf.String())
	}
	var got map[string]string
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", buf.String(), err)
	}
	for k, v := range m {
		if got[k] != v {
			t.Errorf("%q: got %q, want %q", k, got[k], v)
		}
	}
}

// uplinkSource is one device and one uplink whose state ("" is online),
// backlog and the device's poll time the test sets.
type uplinkSource struct {
	countingSource
	state string
	depth int64
}

func (s *uplinkSource) Uplinks() []Uplink {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := s.state
	if state == "" {
		state = "online"
	}
	return []Uplink{{Name: "cloud", State: state, Depth: s.depth}}
}

// TestPlotsKeepTheLastHistory: the plots keep one point per SampleEvery
// for History and no more (memory stays bounded however long edged runs),
// span what they hold, scale to the largest value held, and the overview
// and device pages draw them.
func TestPlotsKeepTheLastHistory(t *testing.T) {
	src := &uplinkSource{}
	c := New(Options{Source: src, SampleEvery: time.Second, History: 10 * time.Second})
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 30 {
		src.mu.Lock()
		src.depth = int64(100 - i) // the backlog drains: the oldest points are the largest
		src.mu.Unlock()
		c.rec.sample(t0.Add(time.Duration(i) * time.Second))
	}
	p := c.rec.plot("backlog:cloud")
	if n := strings.Count(p.D, "M") + strings.Count(p.D, "L"); n != 10 {
		t.Errorf("backlog plot holds %d points after 30 samples, want 10 (History/SampleEvery): %q", n, p.D)
	}
	if p.Max != "80 messages" || p.Span != "9s" {
		t.Errorf("backlog plot top %q span %q, want the largest value still held (80) over 9s", p.Max, p.Span)
	}
	if !strings.HasPrefix(p.D, "M0.0 4.0") || !strings.HasSuffix(p.D, "L600.0 14.8") {
		t.Errorf("backlog plot %q: want the oldest point at the left top, the newest (71 of 80) at the right edge", p.D)
	}
	if len(c.rec.backlog["cloud"].t) != 10 || len(c.rec.poll["plc"].t) != 10 {
		t.Errorf("series sizes %d and %d, want 10", len(c.rec.backlog["cloud"].t), len(c.rec.poll["plc"].t))
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	for path, want := range map[string]string{"/console/": `data-p="p:backlog:cloud" d="` + p.D + `"`,
		"/console/device/plc": `data-p="p:poll:plc" d="M0.0 4.0L`} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if !strings.Contains(body.String(), want) {
			t.Errorf("GET %s does not draw the plot %s:\n%s", path, want, body.String())
		}
	}
}

// TestUplinksPageHistoryIsCurrent: the connection history is observed
// every plot sample and while an event stream is open; the uplinks page
// must not show a history whose newest entry contradicts the state above
// it (connecting, while the uplink is online) because no sample came
// since the uplink connected.
func TestUplinksPageHistoryIsCurrent(t *testing.T) {
	src := &uplinkSource{state: "connecting"}
	c := New(Options{Source: src, SampleEvery: time.Hour})
	c.rec.sample(time.Now())
	src.mu.Lock()
	src.state = "online"
	src.mu.Unlock()
	srv := httptest.NewServer(c)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/console/uplinks")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	_, hist, _ := strings.Cut(body.String(), `class="history"`)
	on, conn := strings.Index(hist, `data-v="online"`), strings.Index(hist, `data-v="connecting"`)
	if on < 0 || conn < 0 || on > conn {
		t.Errorf("the history (newest first) does not end in online after connecting:\n%s", hist)
	}
}
