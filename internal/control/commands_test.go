package control

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound/door"
)

type sentReply struct {
	topic string
	corr  string
	rep   Reply
}

type replies struct {
	got chan sentReply
}

func (r *replies) publish(topic string, payload, corr []byte) error {
	var rep Reply
	if err := json.Unmarshal(payload, &rep); err != nil {
		return err
	}
	r.got <- sentReply{topic, string(corr), rep}
	return nil
}

func (r *replies) next(t *testing.T) sentReply {
	t.Helper()
	select {
	case s := <-r.got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
	}
	return sentReply{}
}

// TestCommandsRouting: topics are read into device and tag, replies go to
// the Response Topic with the correlation data or to …/set/reply, the
// payload's id and ts and the message expiry reach the door, and what
// cannot be read is refused (and audited) as bad_payload.
func TestCommandsRouting(t *testing.T) {
	on := true
	hi := 100.0
	dev := &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true, Max: &hi}}
	d := door.New(dev, door.Options{Writes: &on, Allow: func(s door.Source) bool { return s.Kind == door.FromLocal }})
	r := &replies{got: make(chan sentReply, 10)}
	c := NewCommands(d, dev, "edged", "gw", r.publish, nil)
	defer c.Close()
	src := door.Source{Kind: door.FromLocal, Name: "cl", User: "u"}

	c.Handle(Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`{"v": 9, "id": "a"}`), Source: src, ResponseTopic: "resp/x", CorrelationData: []byte("k1")})
	s := r.next(t)
	if s.topic != "resp/x" || s.corr != "k1" || !s.rep.OK || s.rep.ID != "a" || string(s.rep.ReadBack) != "9" {
		t.Fatalf("MQTT 5 request: %+v", s)
	}
	c.Handle(Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`10`), Source: src})
	if s := r.next(t); s.topic != "edged/gw/dev/sp/set/reply" || s.corr != "" || !s.rep.OK || s.rep.ID != "" {
		t.Fatalf("3.1.1 request: %+v", s)
	}
	cases := []struct {
		cmd    Command
		reason door.Reason
		msg    string
	}{
		{Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`{"v": 1, "id": "a"}`)}, door.Duplicate, `"a"`},
		{Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`{"v": 1, "ts": 1000}`)}, door.Expired, "max_command_age"},
		{Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`1`), MessageExpiry: time.Second, Received: time.Now().Add(-2 * time.Second)}, door.Expired, "message expiry"},
		{Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`500`)}, door.OutOfRange, "above max = 100"},
		{Command{Topic: "edged/gw/dev/sp/set", Payload: []byte(`{"v":`)}, door.BadPayload, `key "v"`},
		{Command{Topic: "edged/gw/dev/sp/set", Payload: nil}, door.BadPayload, "empty payload"},
		{Command{Topic: "edged/gw/dev/nope/set", Payload: []byte(`1`)}, door.NotWritable, `no tag dev/nope`},
		{Command{Topic: "edged/other/dev/sp/set", Payload: []byte(`1`)}, door.BadPayload, "is not edged/gw/{device}/{tag}/set"},
	}
	for _, tc := range cases {
		tc.cmd.Source = src
		c.Handle(tc.cmd)
		s := r.next(t)
		if s.rep.OK || s.rep.Reason != tc.reason || !strings.Contains(s.rep.Message, tc.msg) {
			t.Errorf("%s %q: %+v, want %s mentioning %q", tc.cmd.Topic, tc.cmd.Payload, s.rep, tc.reason, tc.msg)
		}
	}
	dev.mu.Lock()
	n := dev.batches
	dev.mu.Unlock()
	if n != 2 {
		t.Errorf("%d writes reached the device, want 2", n)
	}
}

// TestDoorOptionsSources: local commands are allowed only with [broker]
// commands = true (and [gateway] writes = true, which the door checks).
func TestDoorOptionsSources(t *testing.T) {
	local := door.Source{Kind: door.FromLocal, Name: "c", User: "u"}
	cfg := &configs.Config{}
	if DoorOptions(cfg, nil).Allow(local) {
		t.Fatal("local commands allowed without [broker] commands")
	}
	cfg.Broker.Commands = true
	if !DoorOptions(cfg, nil).Allow(local) {
		t.Fatal("local commands refused with [broker] commands = true")
	}
	if DoorOptions(cfg, nil).Allow(door.Source{Kind: door.FromUpstream, Name: "cloud"}) {
		t.Fatal("an upstream may write")
	}
}

// TestCommandTopics: the command topic template gives the subscription
// filter and reads device and tag back from a topic; anything else is not
// a command topic.
func TestCommandTopics(t *testing.T) {
	cases := []struct {
		tmpl, prefix, filter string
		good                 map[string][2]string // topic → device, tag
		bad                  []string
	}{
		{"", "edged", "edged/gw/+/+/set",
			map[string][2]string{"edged/gw/plc/sp/set": {"plc", "sp"}},
			[]string{"edged/gw/plc/sp", "edged/gw/plc/sp/set/reply", "edged/gw//sp/set", "edged/gx/plc/sp/set", "x/edged/gw/plc/sp/set", "edged/gw/plc/a/b/set"}},
		{"cmd/{gateway}/{tag}/of/{device}", "edged", "cmd/gw/+/of/+",
			map[string][2]string{"cmd/gw/sp/of/plc": {"plc", "sp"}},
			[]string{"cmd/gw/sp/of/plc/set", "cmd/gw/sp/off/plc", "cmd/gw/sp/of/", "edged/gw/plc/sp/set"}},
		{"{prefix}/{gateway}/{device}/{tag}/set", "acme/plant7", "acme/plant7/gw/+/+/set",
			map[string][2]string{"acme/plant7/gw/d/t/set": {"d", "t"}},
			[]string{"acme/gw/d/t/set"}},
		{"{prefix}/w/{device}/{tag}", "", "w/+/+", // an empty prefix drops its level
			map[string][2]string{"w/d/t": {"d", "t"}}, []string{"/w/d/t"}},
	}
	for _, c := range cases {
		ct, err := NewCommandTopics(c.tmpl, c.prefix, "gw")
		if err != nil {
			t.Fatalf("%q: %v", c.tmpl, err)
		}
		if ct.Filter() != c.filter {
			t.Errorf("%q: filter %q, want %q", c.tmpl, ct.Filter(), c.filter)
		}
		for topic, want := range c.good {
			if d, tg, ok := ct.Parse(topic); !ok || d != want[0] || tg != want[1] {
				t.Errorf("%q: Parse(%q) = %q, %q, %v; want %q", c.tmpl, topic, d, tg, ok, want)
			}
		}
		for _, topic := range c.bad {
			if d, tg, ok := ct.Parse(topic); ok {
				t.Errorf("%q: Parse(%q) = %q, %q: not a command topic", c.tmpl, topic, d, tg)
			}
		}
	}
	for _, bad := range []string{"{prefix}/{device}-{tag}", "{prefix}/{device}", "{prefix}/{device}/{tag}/{tag}"} {
		if _, err := NewCommandTopics(bad, "edged", "gw"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestCommandsFollowTheTemplate: with Topics set, device and tag come
// from the template's levels, and a topic outside it is bad_payload.
func TestCommandsFollowTheTemplate(t *testing.T) {
	on := true
	dev := &oneTag{spec: mapping.Spec{Name: "sp", Type: mapping.TypeUint16, Writable: true}}
	d := door.New(dev, door.Options{Writes: &on, Allow: func(door.Source) bool { return true }})
	r := &replies{got: make(chan sentReply, 10)}
	c := NewCommands(d, dev, "edged", "gw", r.publish, nil)
	defer c.Close()
	ct, err := NewCommandTopics("plant/{gateway}/write/{device}/{tag}", "edged", "gw")
	if err != nil {
		t.Fatal(err)
	}
	src := door.Source{Kind: door.FromLocal, Name: "cl"}
	c.Handle(Command{Topic: "plant/gw/write/dev/sp", Payload: []byte("7"), Source: src, Topics: ct})
	if s := r.next(t); s.topic != "plant/gw/write/dev/sp/reply" || !s.rep.OK || string(s.rep.ReadBack) != "7" {
		t.Fatalf("templated command: %+v", s)
	}
	c.Handle(Command{Topic: "edged/gw/dev/sp/set", Payload: []byte("8"), Source: src, Topics: ct})
	if s := r.next(t); s.rep.OK || s.rep.Reason != door.BadPayload || !strings.Contains(s.rep.Message, "plant/gw/write/{device}/{tag}") {
		t.Fatalf("a topic outside the template: %+v", s)
	}
}
