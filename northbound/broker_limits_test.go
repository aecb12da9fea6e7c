package northbound

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rawConnect opens a TCP connection and sends an MQTT 3.1.1 CONNECT
// (clean session, no keepalive), with a user name and password when user
// is not empty. It returns the connection and the CONNACK return code.
func rawConnect(t *testing.T, addr, id, user, pass string) (net.Conn, byte) {
	t.Helper()
	return rawConnectSession(t, addr, id, user, pass, true)
}

func rawConnectSession(t *testing.T, addr, id, user, pass string, clean bool) (net.Conn, byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	flags := byte(0x00)
	if clean {
		flags = 0x02
	}
	body := append(str("MQTT"), 4)
	payload := str(id)
	if user != "" {
		flags |= 0xC0
		payload = append(append(payload, str(user)...), str(pass)...)
	}
	body = append(append(body, flags, 0, 0), payload...)
	pkt := append([]byte{0x10, byte(len(body))}, body...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, 0xff
	}
	_ = c.SetDeadline(time.Time{})
	return c, ack[3]
}

func TestWrongPasswordFloodHashesAtARateLimit(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{Access: &Access{Users: usersWith(t, "right-pw"), Namespace: "edged/gw1"}})
	good, rc := rawConnect(t, b.Addr(), "hmi-1", "hmi", "right-pw")
	if rc != 0 {
		t.Fatalf("right password: CONNACK %d", rc)
	}
	good.Close()
	before := b.Stats().Auth
	start := time.Now()
	for i := range 1000 {
		c, rc := rawConnect(t, b.Addr(), "attacker", "hmi", "guess-"+string(rune('a'+i%26)))
		if rc == 0 {
			t.Fatalf("attempt %d: a wrong password was accepted", i)
		}
		if c != nil {
			c.Close()
		}
	}
	elapsed := time.Since(start)
	after := b.Stats().Auth
	hashed := after.PasswordChecks - before.PasswordChecks
	// At most the burst, then one per refill interval.
	if max := uint64(loginBurst) + uint64(elapsed/loginRefill) + 1; hashed > max {
		t.Fatalf("1000 wrong passwords cost %d bcrypt comparisons in %v; the limit allows %d", hashed, elapsed, max)
	}
	if after.LoginThrottled-before.LoginThrottled < 990 || after.LoginsRefused-before.LoginsRefused != 1000 {
		t.Fatalf("auth stats before %+v after %+v", before, after)
	}
	// The client that logged in before still does: its last good password
	// is remembered, so the flood from its address does not lock it out.
	c, rc := rawConnect(t, b.Addr(), "hmi-1", "hmi", "right-pw")
	if rc != 0 {
		t.Fatalf("known client after the flood: CONNACK %d", rc)
	}
	c.Close()
	t.Logf("1000 wrong passwords in %v: %d hashed", elapsed, hashed)
}

// TestStalledSubscriberIsBoundedByBytes: a subscriber that stops reading
// gets at most client_queue_bytes held for it; the rest is dropped and
// counted, and the heap does not grow with what it misses.
func TestStalledSubscriberIsBoundedByBytes(t *testing.T) {
	const perClient, total = 2 << 20, 4 << 20
	b := startBrokerWith(t, BrokerOptions{ClientQueueBytes: perClient, QueueBytes: total})
	stalled, rc := rawConnect(t, b.Addr(), "stuck-hmi", "", "")
	if rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	defer stalled.Close()
	_ = stalled.(*net.TCPConn).SetReadBuffer(4096)
	sub := []byte{0x82, 6, 0, 1, 0, 1, '#', 1} // SUBSCRIBE id 1, "#" at QoS 1
	if _, err := stalled.Write(sub); err != nil {
		t.Fatal(err)
	}
	suback := make([]byte, 5)
	if _, err := io.ReadFull(stalled, suback); err != nil || suback[0] != 0x90 {
		t.Fatalf("SUBACK %x %v", suback, err)
	}
	// From here on the stalled client reads nothing. A healthy one keeps up.
	healthy, err := dial5With(t, &client5{light: true}, b.Addr(), nil, "", "", "healthy-hmi")
	if err != nil {
		t.Fatal(err)
	}
	healthy.subscribe(t, "plant/#")

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	payload := bytes.Repeat([]byte("x"), 26<<10)
	const n = 3000 // 78 MB of messages
	for i := range n {
		payload[0] = byte(i)
		if err := b.Publish("plant/big", payload, false, 1); err != nil {
			t.Fatal(err)
		}
		if s := b.Stats().Held; s.HeldBytes > total+int64(len(payload))+messageOverhead {
			t.Fatalf("after %d messages the broker holds %d bytes, bound %d", i, s.HeldBytes, total)
		}
		if i%20 == 19 { // a healthy subscriber keeps up with a plant, not with a tight loop
			// ... and to acknowledge: then only the stalled client holds bytes.
			deadline := time.Now().Add(10 * time.Second)
			for (healthy.count("plant/big") < i+1 || b.limits.heldBy("healthy-hmi") > 0) && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	if err := b.Publish("plant/last", []byte("end"), false, 1); err != nil {
		t.Fatal(err)
	}
	healthy.waitTopic(t, "plant/last", "")
	if got := healthy.count("plant/big"); got != n {
		t.Fatalf("the healthy subscriber got %d of %d messages", got, n)
	}
	if held := b.limits.heldBy("stuck-hmi"); held > perClient {
		t.Fatalf("held for the stalled client: %d bytes, bound %d", held, perClient)
	}
	s := b.Stats()
	if s.Held.DroppedByUser[""] < n/2 || s.Held.Dropping < 1 || s.MessagesDropped < n/2 {
		t.Fatalf("drops not counted: %+v", s)
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	if grew := int64(m1.HeapInuse) - int64(m0.HeapInuse); grew > 24<<20 {
		t.Fatalf("heap grew by %d MiB for a stalled subscriber (bound %d MiB per client)", grew>>20, perClient>>20)
	}
	t.Logf("heap %d → %d MiB; dropped for the stalled client: %d", m0.HeapInuse>>20, m1.HeapInuse>>20, s.Held.DroppedByUser[""])
}

// TestStalledSubscribersAreBoundedInTotal: three subscribers that stop
// reading could each hold client_queue_bytes; together they get at most
// queue_bytes, the bound on everything the broker holds. Each is named in
// a warn line when dropping starts for it, and the drops are counted.
func TestStalledSubscribersAreBoundedInTotal(t *testing.T) {
	const perClient, total = 2 << 20, 4 << 20 // three clients could hold 6 MiB
	var logs logCapture
	b := startBrokerWith(t, BrokerOptions{ClientQueueBytes: perClient, QueueBytes: total, Logger: logs.logger()})
	ids := []string{"stuck-hmi-1", "stuck-hmi-2", "stuck-hmi-3"}
	for _, id := range ids {
		c, rc := rawConnect(t, b.Addr(), id, "", "")
		if rc != 0 {
			t.Fatalf("%s: CONNACK %d", id, rc)
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := c.Write([]byte{0x82, 6, 0, 1, 0, 1, '#', 1}); err != nil { // SUBSCRIBE "#" at QoS 1
			t.Fatal(err)
		}
		suback := make([]byte, 5)
		if _, err := io.ReadFull(c, suback); err != nil || suback[0] != 0x90 {
			t.Fatalf("%s: SUBACK %x %v", id, suback, err)
		}
	}
	payload := bytes.Repeat([]byte("z"), 26<<10)
	const n = 600 // 15.6 MB of messages for each client
	bound := int64(total) + int64(len(payload)) + messageOverhead
	var most int64
	for i := range n {
		payload[0] = byte(i)
		if err := b.Publish("plant/big", payload, false, 1); err != nil {
			t.Fatal(err)
		}
		held := b.Stats().Held.HeldBytes
		most = max(most, held)
		if held > bound {
			t.Fatalf("after %d messages the broker holds %d bytes for its stalled clients, queue_bytes %d", i, held, int64(total))
		}
	}
	var sum int64
	for _, id := range ids {
		h := b.limits.heldBy(id)
		if h > perClient {
			t.Errorf("%s: %d bytes held, client_queue_bytes %d", id, h, perClient)
		}
		sum += h
	}
	if sum > bound {
		t.Errorf("%d bytes held for the three clients, queue_bytes %d", sum, int64(total))
	}
	s := b.Stats().Held
	if s.Dropped < 3*n/2 || s.DroppedByUser[""] != s.Dropped {
		t.Errorf("drops not counted: %+v", s)
	}
	for _, id := range ids {
		named := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `msg="local client too slow: dropping messages for it"`) && strings.Contains(line, " client="+id+" ") {
				named++
			}
		}
		if named != 1 {
			t.Errorf("no single warn line names %s as dropped for:\n%s", id, logs.String())
		}
	}
	t.Logf("held at most %d bytes (queue_bytes %d, 3 × client_queue_bytes %d); %d drops", most, int64(total), 3*perClient, s.Dropped)
}

// TestVanishedPersistentSessionIsBoundedByBytes: a client with a
// persistent session that went away keeps getting QoS 1 messages stored
// for it (until its session expires); they are bounded like a stalled
// client's.
func TestVanishedPersistentSessionIsBoundedByBytes(t *testing.T) {
	const perClient, total = 2 << 20, 4 << 20
	b := startBrokerWith(t, BrokerOptions{ClientQueueBytes: perClient, QueueBytes: total})
	c, rc := rawConnectSession(t, b.Addr(), "gone-hmi", "", "", false)
	if rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	if _, err := c.Write([]byte{0x82, 6, 0, 1, 0, 1, '#', 1}); err != nil {
		t.Fatal(err)
	}
	suback := make([]byte, 5)
	if _, err := io.ReadFull(c, suback); err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Clients > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	payload := bytes.Repeat([]byte("y"), 26<<10)
	for range 1500 {
		if err := b.Publish("plant/big", payload, false, 1); err != nil {
			t.Fatal(err)
		}
	}
	if held := b.limits.heldBy("gone-hmi"); held > perClient || held == 0 {
		t.Fatalf("held for the vanished session: %d bytes, bound %d (0: the session was not kept)", held, perClient)
	}
	if s := b.Stats().Held; s.DroppedByUser[""] < 1000 {
		t.Fatalf("drops not counted: %+v", s)
	}
}

func TestMaxClientsAndMaxPacketSize(t *testing.T) {
	b := startBrokerWith(t, BrokerOptions{MaxClients: 2, MaxPacketSize: 1024,
		Access: &Access{AnonymousRead: true, Users: usersWith(t, "pw")}})
	sub, err := dial5(t, b.Addr(), nil, "admin", "pw", "sub-1")
	if err != nil {
		t.Fatal(err)
	}
	sub.subscribe(t, "apps/#")
	args := append(hostPortArgs(b.Addr()), "-u", "admin", "-P", "pw", "-q", "1", "-t", "apps/x")
	// A packet beyond max_packet_size is not delivered.
	_, _ = mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-m", strings.Repeat("z", 2048))...)
	if out, err := mosq(t, 10*time.Second, "mosquitto_pub", append(args, "-m", "small")...); err != nil {
		t.Fatal(err, out)
	}
	sub.waitTopic(t, "apps/x", "small")
	for _, p := range sub.got("apps/x") {
		if len(p) > 1024 {
			t.Fatalf("a %d-byte message passed max_packet_size 1024", len(p))
		}
	}
	// The third client is refused while two are connected.
	if _, err := dial5(t, b.Addr(), nil, "admin", "pw", "sub-2"); err != nil {
		t.Fatal(err)
	}
	waitClients(t, b, 2)
	if c, err := dial5(t, b.Addr(), nil, "admin", "pw", "sub-3"); err == nil && c.ca != nil && c.ca.ReasonCode == 0 {
		t.Fatal("a client beyond max_clients was accepted")
	}
}

// TestStalledSubscriberNeverBlocksEdgedsPublishes: the library writes to a
// client's socket holding the client's lock, which a QoS 1 delivery to it
// needs: a subscriber that stops reading must not block edged's own
// publishes (a device status is QoS 1) nor the shutdown.
func TestStalledSubscriberNeverBlocksEdgedsPublishes(t *testing.T) {
	b := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"}) // default byte bounds: larger than the socket buffers
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	stalled, rc := rawConnect(t, b.Addr(), "stuck-hmi", "", "")
	if rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	defer stalled.Close()
	_ = stalled.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := stalled.Write([]byte{0x82, 6, 0, 1, 0, 1, '#', 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(stalled, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		payload := bytes.Repeat([]byte("s"), 26<<10)
		for range 3000 {
			if err := b.Publish("edged/gw1/d/_status", payload, false, 1); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("edged's publishes are blocked by a subscriber that stopped reading")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop() }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop is blocked by a subscriber that stopped reading")
	}
}
