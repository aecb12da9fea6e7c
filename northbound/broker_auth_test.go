package northbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/edged-gw/edged/internal/mqtttest"
	"golang.org/x/crypto/bcrypt"
)

// startBrokerWith starts a broker with opts (Listen defaults to a free
// loopback port) and stops it at cleanup.
func startBrokerWith(t *testing.T, opts BrokerOptions) *Broker {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	b := NewBroker(opts)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

func hashOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// mosq runs a mosquitto client (mosquitto_pub or mosquitto_sub) with a
// deadline and returns its combined output and exit error.
func mosq(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: run `make test-deps` (installs Debian's mosquitto-clients)", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func hostPortArgs(addr string) []string {
	i := strings.LastIndex(addr, ":")
	return []string{"-h", addr[:i], "-p", addr[i+1:]}
}

// startSub starts mosquitto_sub in the background; its output is returned
// by the function it returns, once the process ended (or was killed at
// the deadline).
func startSub(t *testing.T, args ...string) (wait func(timeout time.Duration) (string, error), kill func()) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("mosquitto_sub", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	kill = func() { _ = cmd.Process.Kill() }
	t.Cleanup(kill)
	return func(timeout time.Duration) (string, error) {
		select {
		case err := <-done:
			return out.String(), err
		case <-time.After(timeout):
			kill()
			<-done
			return out.String(), fmt.Errorf("still running after %v", timeout)
		}
	}, kill
}

// client5 is a paho MQTT 5 client that records what it receives.
type client5 struct {
	c *paho.Client
	// light keeps only the topic of what arrives (for tests that measure
	// the heap)
	light bool
	// noPing connects with keepalive 0. paho's pinger sends its first
	// PINGREQ at once, from its own goroutine, while the test writes its
	// SUBSCRIBE; paho writes a packet in several Writes (net.Buffers),
	// atomic on TCP (writev) but not on a connection that makes each
	// Write a WebSocket message: the PINGREQ could land inside the
	// SUBSCRIBE and the broker rightly drop a malformed packet.
	noPing bool
	ca     *paho.Connack
	mu     sync.Mutex
	msgs   []*paho.Publish
}

// dial5 connects an MQTT 5 client over conn (nil: TCP to addr).
func dial5(t *testing.T, addr string, conn net.Conn, user, pass, id string) (*client5, error) {
	t.Helper()
	return dial5With(t, &client5{}, addr, conn, user, pass, id)
}

func dial5With(t *testing.T, cl *client5, addr string, conn net.Conn, user, pass, id string) (*client5, error) {
	t.Helper()
	if conn == nil {
		var err error
		if conn, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cl.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			cl.mu.Lock()
			p := pr.Packet
			if cl.light {
				p = &paho.Publish{Topic: p.Topic}
			}
			cl.msgs = append(cl.msgs, p)
			cl.mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if cl.noPing {
		cp.KeepAlive = 0
	}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	ca, err := cl.c.Connect(ctx, cp)
	cl.ca = ca
	if err != nil {
		return cl, err
	}
	t.Cleanup(func() { _ = cl.c.Disconnect(&paho.Disconnect{}) })
	return cl, nil
}

func (c *client5) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil && sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

func (c *client5) publish(t *testing.T, topic, payload string, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

func (c *client5) waitTopic(t *testing.T, topic string, payload string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, m := range c.msgs {
			if m.Topic == topic && string(m.Payload) == payload {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s %q received", topic, payload)
}

func (c *client5) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if m.Topic == topic {
			n++
		}
	}
	return n
}

func (c *client5) got(topic string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if m.Topic == topic {
			out = append(out, string(m.Payload))
		}
	}
	return out
}

var testUsers = []User{
	{Name: "hmi", Publish: []string{"apps/%u/#"}, Subscribe: []string{"apps/#", "edged/gw1/#"}},
	{Name: "admin", Publish: []string{"#"}, Subscribe: []string{"#"}},
}

func usersWith(t *testing.T, pw string) []User {
	h := hashOf(t, pw)
	us := append([]User(nil), testUsers...)
	for i := range us {
		us[i].PasswordHash = h
	}
	return us
}

func TestBrokerRefusesWrongPassword(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{Access: &Access{AnonymousRead: true, Users: usersWith(t, "right-pw"), Namespace: "edged/gw1"}})
	args := hostPortArgs(b.Addr())
	out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-u", "hmi", "-P", "wrong-pw", "-t", "apps/hmi/x", "-m", "1")...)
	if err == nil || !strings.Contains(strings.ToLower(out), "not authori") && !strings.Contains(strings.ToLower(out), "password") {
		t.Fatalf("wrong password: err %v, output %q; want a refused connection", err, out)
	}
	out, err = mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-u", "nobody", "-P", "right-pw", "-t", "apps/hmi/x", "-m", "1")...)
	if err == nil {
		t.Fatalf("unknown user accepted: %q", out)
	}
	// The right password works, for a 3.1.1 and an MQTT 5 client.
	sub := mqtttest.Subscribe(t, b.Addr(), "apps/#")
	for _, v := range []string{"311", "5"} {
		if out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-V", v, "-u", "hmi", "-P", "right-pw", "-q", "1", "-t", "apps/hmi/x", "-m", "v"+v)...); err != nil {
			t.Fatalf("right password, MQTT %s: %v %q", v, err, out)
		}
		sub.WaitTopic(5*time.Second, "apps/hmi/x", func(p []byte) bool { return string(p) == "v"+v })
	}
	if s := b.Stats().Auth; s.LoginsRefused < 2 || s.PasswordChecks < 3 {
		t.Fatalf("auth stats %+v", s)
	}
}

func TestBrokerACLDeniesPublishAndSubscribe(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{Access: &Access{AnonymousRead: true, Users: usersWith(t, "pw"), Namespace: "edged/gw1"}})
	admin, err := dial5(t, b.Addr(), nil, "admin", "pw", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	admin.subscribe(t, "#")
	hmi, err := dial5(t, b.Addr(), nil, "hmi", "pw", "hmi-1")
	if err != nil {
		t.Fatal(err)
	}
	// Subscribe: inside the rules granted, outside refused.
	if rc := hmi.subscribe(t, "apps/+/x"); rc != 1 {
		t.Fatalf("allowed subscription: reason %#x", rc)
	}
	if rc := hmi.subscribe(t, "plant/#"); rc != 0x87 {
		t.Fatalf("subscribe outside the ACL: reason %#x, want 0x87 not authorized", rc)
	}
	if rc := hmi.subscribe(t, "$share/panels/apps/+/x"); rc != 1 {
		t.Fatalf("shared subscription inside the rules: reason %#x", rc)
	}
	if rc := hmi.subscribe(t, "$share/panels/plant/#"); rc != 0x87 {
		t.Fatalf("shared subscription outside the rules: reason %#x, want 0x87", rc)
	}
	if rc := hmi.subscribe(t, "#"); rc != 0x87 {
		t.Fatalf("subscribe to # with narrower rules: reason %#x, want 0x87", rc)
	}
	// Publish: %u is the user's own name only.
	if rc := hmi.publish(t, "apps/admin/x", "spoof", false); rc != 0x87 {
		t.Fatalf("publish outside the ACL: reason %#x, want 0x87", rc)
	}
	if rc := hmi.publish(t, "apps/hmi/x", "ok", false); rc != 0 {
		t.Fatalf("allowed publish: reason %#x", rc)
	}
	admin.waitTopic(t, "apps/hmi/x", "ok")
	if got := admin.got("apps/admin/x"); len(got) != 0 {
		t.Fatalf("a denied publish was delivered: %q", got)
	}
	// A 3.1.1 client's denied publish is acknowledged and dropped (no
	// DISCONNECT, which 3.1.1 does not have); its next allowed one arrives.
	args := append(hostPortArgs(b.Addr()), "-V", "311", "-u", "hmi", "-P", "pw", "-q", "1")
	if out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-t", "apps/admin/y", "-m", "spoof311")...); err != nil {
		t.Fatalf("3.1.1 denied publish: %v %q (want acknowledged and dropped)", err, out)
	}
	if out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-t", "apps/hmi/y", "-m", "ok311")...); err != nil {
		t.Fatal(err, out)
	}
	admin.waitTopic(t, "apps/hmi/y", "ok311")
	if got := admin.got("apps/admin/y"); len(got) != 0 {
		t.Fatalf("a denied 3.1.1 publish was delivered: %q", got)
	}
	// A 3.1.1 subscription outside the rules is refused in the SUBACK.
	out, _ := mosq(t, 10*time.Second, "mosquitto_sub", append(hostPortArgs(b.Addr()), "-V", "311", "-u", "hmi", "-P", "pw", "-t", "plant/#", "-W", "2")...)
	if !strings.Contains(out, "denied") {
		t.Fatalf("3.1.1 subscription outside the ACL: %q, want it denied", out)
	}
}

func TestAnonymousReadOnlyOnLoopbackAndRefusedBeyond(t *testing.T) {
	// The default: anonymous clients may read, not publish.
	b := startBrokerWith(t, BrokerOptions{})
	anon, err := dial5(t, b.Addr(), nil, "", "", "anon-1")
	if err != nil {
		t.Fatal(err)
	}
	if rc := anon.subscribe(t, "#"); rc != 1 {
		t.Fatalf("anonymous subscribe: reason %#x", rc)
	}
	if rc := anon.publish(t, "apps/x", "1", false); rc != 0x87 {
		t.Fatalf("anonymous publish: reason %#x, want 0x87", rc)
	}
	if err := b.Publish("edged/gw1/d/t", []byte("42"), false, 0); err != nil {
		t.Fatal(err)
	}
	anon.waitTopic(t, "edged/gw1/d/t", "42")

	// A listener on every interface (0.0.0.0) is not loopback: anonymous
	// clients are refused there, even when they come from 127.0.0.1.
	wide := startBrokerWith(t, BrokerOptions{Listen: "0.0.0.0:0", Access: &Access{AnonymousRead: true, Users: usersWith(t, "pw")}})
	port := wide.Addr()[strings.LastIndex(wide.Addr(), ":"):]
	if c, err := dial5(t, "127.0.0.1"+port, nil, "", "", "anon-2"); err == nil && c.ca.ReasonCode == 0 {
		t.Fatal("anonymous client accepted on a listener beyond loopback")
	}
	out, err := mosq(t, 10*time.Second, "mosquitto_sub", "-h", "127.0.0.1", "-p", port[1:], "-t", "#", "-W", "2")
	if err == nil || !strings.Contains(strings.ToLower(out), "refused") {
		t.Fatalf("mosquitto_sub anonymous beyond loopback: %v %q, want refused", err, out)
	}
	if _, err := dial5(t, "127.0.0.1"+port, nil, "hmi", "pw", "hmi-2"); err != nil {
		t.Fatalf("user refused on the wide listener: %v", err)
	}
	// allow_anonymous opens it on purpose.
	open := startBrokerWith(t, BrokerOptions{Listen: "0.0.0.0:0", Access: &Access{AnonymousRead: true, AllowAnonymous: true}})
	port = open.Addr()[strings.LastIndex(open.Addr(), ":"):]
	if _, err := dial5(t, "127.0.0.1"+port, nil, "", "", "anon-3"); err != nil {
		t.Fatalf("allow_anonymous: %v", err)
	}
}

func TestClientsCannotWriteIntoEdgedNamespace(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{Access: &Access{AnonymousRead: true, Users: usersWith(t, "pw"), Namespace: "edged/gw1"}})
	if err := b.Publish("edged/gw1/status", []byte("online"), true, 1); err != nil {
		t.Fatal(err)
	}
	admin, err := dial5(t, b.Addr(), nil, "admin", "pw", "admin-1") // publish = ["#"]
	if err != nil {
		t.Fatal(err)
	}
	admin.subscribe(t, "edged/#")
	admin.waitTopic(t, "edged/gw1/status", "online")
	for _, topic := range []string{"edged/gw1/status", "edged/gw1/d/t", "edged/gw1", "edged/gw1/d/t/set"} {
		if rc := admin.publish(t, topic, `{"v":99999}`, false); rc != 0x87 {
			t.Fatalf("publish on %s: reason %#x, want 0x87 (commands are off)", topic, rc)
		}
	}
	// A retained status planted by a 3.1.1 client is dropped.
	args := append(hostPortArgs(b.Addr()), "-V", "311", "-u", "admin", "-P", "pw", "-q", "1")
	if out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-r", "-t", "edged/gw1/status", "-m", "offline")...); err != nil {
		t.Fatal(err, out)
	}
	// Other gateways' or apps' topics stay the ACL's business.
	if rc := admin.publish(t, "edged/other-gw/x", "1", false); rc != 0 {
		t.Fatalf("publish beside the namespace: reason %#x", rc)
	}
	admin.waitTopic(t, "edged/other-gw/x", "1")
	late := mqtttest.Subscribe(t, b.Addr(), "edged/gw1/#")
	late.WaitTopic(5*time.Second, "edged/gw1/status", nil)
	for _, m := range late.Messages() {
		if string(m.Payload) != "online" {
			t.Fatalf("a client planted %s %q in edged's namespace", m.Topic, m.Payload)
		}
	}
	// Nor through a will, which the broker would publish on its behalf.
	if out, err := mosq(t, 10*time.Second, "mosquitto_sub", append(hostPortArgs(b.Addr()), "-u", "admin", "-P", "pw",
		"--will-topic", "edged/gw1/status", "--will-payload", "offline", "--will-retain", "-t", "x", "-W", "1")...); err == nil || !strings.Contains(strings.ToLower(out), "refused") {
		t.Fatalf("a client with a will on edged's status was accepted: %v %q", err, out)
	}
	// A will the client may publish is fine (-W ends the connected client
	// with a timeout, exit 27; a refused one exits at once otherwise).
	out, err := mosq(t, 10*time.Second, "mosquitto_sub", append(hostPortArgs(b.Addr()), "-u", "admin", "-P", "pw",
		"--will-topic", "apps/admin/gone", "--will-payload", "bye", "-t", "x", "-W", "1")...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 27 || strings.Contains(strings.ToLower(out), "refused") {
		t.Fatalf("a client with an allowed will: %v %q", err, out)
	}
	if got := admin.got("edged/gw1/status"); len(got) != 1 {
		t.Fatalf("status messages seen: %q, want only edged's own", got)
	}

	// With commands on, /set topics are open to users whose ACL allows them
	// (never retained), and nothing else under the namespace is.
	b.auth.set(Access{AnonymousRead: true, Users: usersWith(t, "pw"), Namespace: "edged/gw1", Commands: true})
	if rc := admin.publish(t, "edged/gw1/d/t/set", "42", false); rc != 0 {
		t.Fatalf("command with commands on: reason %#x", rc)
	}
	if rc := admin.publish(t, "edged/gw1/d/t", "42", false); rc != 0x87 {
		t.Fatalf("value topic with commands on: reason %#x", rc)
	}
	hmi, err := dial5(t, b.Addr(), nil, "hmi", "pw", "hmi-1") // publish = ["apps/%u/#"]
	if err != nil {
		t.Fatal(err)
	}
	if rc := hmi.publish(t, "edged/gw1/d/t/set", "42", false); rc != 0x87 {
		t.Fatalf("command outside the user's ACL: reason %#x", rc)
	}
}

func waitClients(t *testing.T, b *Broker, n int64) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c := b.Stats().Clients; c >= n {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d clients never connected", n)
	return 0
}

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAllowAnonymousWarnsAndNoPasswordIsLogged(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := startBrokerWith(t, BrokerOptions{Listen: "0.0.0.0:0", Logger: log,
		Access: &Access{AnonymousRead: true, AllowAnonymous: true, Users: usersWith(t, "right-secret-pw")}})
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "allow_anonymous = true") {
		t.Fatalf("no start-up warning for allow_anonymous:\n%s", logs.String())
	}
	port := b.Addr()[strings.LastIndex(b.Addr(), ":")+1:]
	for _, pw := range []string{"wrong-secret-pw", "right-secret-pw"} {
		_, _ = mosq(t, 10*time.Second, "mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-u", "hmi", "-P", pw, "-t", "apps/hmi/x", "-m", "1")
	}
	if s := b.Stats().Auth; s.PasswordChecks < 2 {
		t.Fatalf("the logins did not reach the password check: %+v", s)
	}
	if out := logs.String(); strings.Contains(out, "secret-pw") || !strings.Contains(out, "local client refused") {
		t.Fatalf("logs leak a password or miss the refusal:\n%s", out)
	}
}
