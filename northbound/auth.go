package northbound

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// User is one account of the local broker.
type User struct {
	Name string
	// PasswordHash is a bcrypt hash; empty: the user logs in only with a
	// client certificate whose identity is Name.
	PasswordHash string
	// Publish and Subscribe are the user's ACL (see acl).
	Publish, Subscribe []string
}

// Access is who may connect to the local broker and what each client may
// do.
type Access struct {
	Users []User
	// AnonymousRead lets clients without a user name subscribe to every
	// topic (and publish nothing) on loopback listeners, and on every
	// listener with AllowAnonymous.
	AnonymousRead  bool
	AllowAnonymous bool
	// Namespace is edged's own topic space, "{prefix}/{gateway}": no client
	// may publish under it, except command topics (IsCommand) when
	// Commands is on and the client's publish ACL allows the topic; no
	// client may retain anything under it.
	Namespace string
	Commands  bool
	// IsCommand tells a command topic; default: a topic under Namespace
	// whose last level is "set".
	IsCommand func(topic string) bool
}

// Defaults of the password-check limits.
const (
	// loginBurst password checks may fail from one address before it must
	// wait; then one more is allowed every loginRefill.
	loginBurst  = 5
	loginRefill = 10 * time.Second
	// hashShare is the most of one core that password hashing may use:
	// after a check that took d, the next starts no sooner than
	// d/hashShare after it started (whoever asks). A check refused by this
	// or the per-address limit costs no hashing at all.
	hashShare = 0.10
	// maxHashWait is how long a login may wait for its turn to hash;
	// beyond, it is refused at once.
	maxHashWait = 2 * time.Second
	// maxTrackedAddrs bounds the per-address state.
	maxTrackedAddrs = 4096
)

// auth is the broker's authentication, authorization and namespace guard:
// one mochi hook, the only one that answers OnConnectAuthenticate and
// OnACLCheck (mochi allows what any hook allows).
type auth struct {
	mqtt.HookBase

	cfg   atomic.Pointer[authConfig]
	log   *slog.Logger
	limit *Limits // delivery byte budget, consulted on ACL read checks

	// listeners whose address is loopback (anonymous clients may read).
	loopback sync.Map // listener id → bool
	// certUser marks listeners whose verified client certificates name
	// the user.
	certListener sync.Map // listener id → bool

	// Password checks.
	hmacKey   []byte
	mu        sync.Mutex
	addrs     map[string]*loginBucket
	nextHash  time.Time     // when the next password hash may start
	hashGap   time.Duration // time between two hash starts (the last hash's time / hashShare)
	hashes    atomic.Uint64 // bcrypt comparisons run
	refused   atomic.Uint64 // logins refused
	throttled atomic.Uint64 // password checks refused by a limit, without hashing
	now       func() time.Time

	// refusedCommand is told of every command-topic publish the rules
	// refused (Broker.OnRefusedCommand), so it is audited and answered.
	refusedCommand atomic.Pointer[func(*mqtt.Client, packets.Packet, string)]
}

type authConfig struct {
	Access
	users map[string]*authUser
}

type authUser struct {
	User
	hash              []byte
	publish, subscrib acl
	// good is an HMAC of the last password that passed bcrypt, so a
	// client that reconnects costs one HMAC, not one bcrypt.
	good atomic.Pointer[[]byte]
}

type loginBucket struct {
	tokens float64
	last   time.Time
}

// dummyHash is compared against when the user name is unknown, so that an
// unknown name costs (and takes) what a wrong password does. Made on first
// use: hashing at start would slow every edged command.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("edged-no-such-user"), bcrypt.DefaultCost)
	return h
})

func newAuth(a Access, limit *Limits, log *slog.Logger) *auth {
	h := &auth{log: log, limit: limit, addrs: map[string]*loginBucket{}, now: time.Now}
	h.hmacKey = make([]byte, 32)
	_, _ = rand.Read(h.hmacKey)
	h.set(a)
	return h
}

// set replaces users and rules; connected clients keep their session and
// are checked against the new rules from their next packet on.
func (h *auth) set(a Access) {
	c := &authConfig{Access: a, users: map[string]*authUser{}}
	if c.IsCommand == nil {
		ns := a.Namespace
		c.IsCommand = func(topic string) bool {
			return ns != "" && strings.HasPrefix(topic, ns+"/") && strings.HasSuffix(topic, "/set")
		}
	}
	old := h.cfg.Load()
	for _, u := range a.Users {
		au := &authUser{User: u, hash: []byte(u.PasswordHash), publish: acl(u.Publish), subscrib: acl(u.Subscribe)}
		if old != nil {
			if prev := old.users[u.Name]; prev != nil && prev.PasswordHash == u.PasswordHash {
				au.good.Store(prev.good.Load())
			}
		}
		c.users[u.Name] = au
	}
	h.cfg.Store(c)
}

func (h *auth) ID() string { return "edged-auth" }

func (h *auth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

// OnConnectAuthenticate decides who the client is: the identity of a
// verified client certificate (on a listener with client_ca_file), a user
// name with its password, or anonymous where allowed.
func (h *auth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if !h.authenticate(cl, pk) {
		return false
	}
	// A will is published by the broker on the client's behalf, past the
	// ACL: check it now, as a publish, and refuse the connection if the
	// client could not publish it itself.
	if pk.Connect.WillFlag && !h.mayWill(cl, pk.Connect.WillTopic, pk.Connect.WillRetain) {
		h.refuse(cl, "will message not allowed: the client may not publish it (or retain it under edged's namespace)", string(cl.Properties.Username))
		return false
	}
	return true
}

func (h *auth) mayWill(cl *mqtt.Client, topic string, retain bool) bool {
	if !h.mayPublish(cl, topic) {
		return false
	}
	ns := h.cfg.Load().Namespace
	return !retain || ns == "" || (topic != ns && !strings.HasPrefix(topic, ns+"/"))
}

func (h *auth) authenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := h.cfg.Load()
	if name, ok := h.certIdentity(cl); ok {
		if _, known := c.users[name]; !known {
			h.refuse(cl, "client certificate names no [[broker.user]]", "", "certificate_identity", name)
			return false
		}
		cl.Properties.Username = []byte(name)
		return true
	}
	user := string(pk.Connect.Username)
	if user == "" && !pk.Connect.UsernameFlag {
		if c.AnonymousRead && (c.AllowAnonymous || h.isLoopback(cl.Net.Listener)) {
			return true
		}
		h.refuse(cl, "anonymous clients are not allowed on this listener", "")
		return false
	}
	if !h.checkPassword(c, cl, user, pk.Connect.Password) {
		return false
	}
	return true
}

// refuse counts and logs (at debug) a refused login. A user name that is
// not configured is not logged: people type passwords into the wrong field.
func (h *auth) refuse(cl *mqtt.Client, why, user string, attrs ...any) {
	h.refused.Add(1)
	if _, known := h.cfg.Load().users[user]; !known && user != "" {
		user = "(not a configured user)"
	}
	h.log.Debug("local client refused", append([]any{"reason", why, "client", cl.ID, "user", user, "remote", cl.Net.Remote}, attrs...)...)
}

// checkPassword verifies a password. The per-address and the global
// hashing limits are applied before any hashing: a refused attempt costs
// a map lookup.
func (h *auth) checkPassword(c *authConfig, cl *mqtt.Client, user string, password []byte) bool {
	u := c.users[user]
	if u != nil && len(u.hash) > 0 {
		if good := u.good.Load(); good != nil && hmac.Equal(*good, h.mac(user, password)) {
			return true
		}
	}
	addr := remoteHost(cl.Net.Remote)
	if !h.takeAttempt(addr) {
		h.throttled.Add(1)
		h.refuse(cl, "too many failed logins from this address", user)
		return false
	}
	hash := dummyHash()
	if u != nil && len(u.hash) > 0 {
		hash = u.hash
	}
	start := h.now()
	err := bcrypt.CompareHashAndPassword(hash, password)
	h.hashes.Add(1)
	h.spent(start)
	if err != nil || u == nil || len(u.hash) == 0 {
		h.refuse(cl, "wrong user name or password", user)
		return false
	}
	m := h.mac(user, password)
	u.good.Store(&m)
	h.forgive(addr)
	return true
}

func (h *auth) mac(user string, password []byte) []byte {
	m := hmac.New(sha256.New, h.hmacKey)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(password)
	return m.Sum(nil)
}

// takeAttempt takes a password check from addr's bucket and a slot of the
// global hashing budget, waiting for the slot when it is near; false
// means refuse without hashing.
func (h *auth) takeAttempt(addr string) bool {
	h.mu.Lock()
	now := h.now()
	b := h.addrs[addr]
	if b == nil {
		if len(h.addrs) >= maxTrackedAddrs {
			h.evict(now)
		}
		b = &loginBucket{tokens: loginBurst, last: now}
		h.addrs[addr] = b
	}
	b.tokens = min(loginBurst, b.tokens+now.Sub(b.last).Seconds()/loginRefill.Seconds())
	b.last = now
	start := now
	if h.nextHash.After(start) {
		start = h.nextHash
	}
	if b.tokens < 1 || start.Sub(now) > maxHashWait {
		h.mu.Unlock()
		return false
	}
	b.tokens--
	h.nextHash = start.Add(h.hashGap)
	h.mu.Unlock()
	if d := start.Sub(now); d > 0 {
		time.Sleep(d)
	}
	return true
}

// spent records the time a hash took: the gap kept between the starts of
// two hashes is what keeps hashing within hashShare of one core.
func (h *auth) spent(start time.Time) {
	d := h.now().Sub(start)
	h.mu.Lock()
	h.hashGap = time.Duration(float64(d) / hashShare)
	h.mu.Unlock()
}

// forgive refills an address's bucket after a good login.
func (h *auth) forgive(addr string) {
	h.mu.Lock()
	delete(h.addrs, addr)
	h.mu.Unlock()
}

// evict drops the buckets that are full again (h.mu held), or, if none
// is, every bucket: a flood of addresses must not grow memory.
func (h *auth) evict(now time.Time) {
	for a, b := range h.addrs {
		if b.tokens+now.Sub(b.last).Seconds()/loginRefill.Seconds() >= loginBurst {
			delete(h.addrs, a)
		}
	}
	if len(h.addrs) >= maxTrackedAddrs {
		clear(h.addrs)
	}
}

func remoteHost(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

func (h *auth) isLoopback(listener string) bool {
	v, ok := h.loopback.Load(listener)
	return ok && v.(bool)
}

// certIdentity returns the Common Name of a verified client certificate.
func (h *auth) certIdentity(cl *mqtt.Client) (string, bool) {
	if v, ok := h.certListener.Load(cl.Net.Listener); !ok || !v.(bool) {
		return "", false
	}
	conn := cl.Net.Conn
	if g, ok := conn.(*guardedConn); ok {
		conn = g.Unwrap()
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := st.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// OnACLCheck answers publishes (write) and subscriptions and deliveries
// (read). A 3.1.1 client's refused publish is answered in OnPublish
// instead: mochi would otherwise disconnect it with a DISCONNECT packet,
// which 3.1.1 does not have.
func (h *auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write {
		if cl.Properties.ProtocolVersion < 5 {
			return true // decided in OnPublish
		}
		if h.refusedCommand.Load() != nil && h.cfg.Load().IsCommand(topic) {
			return true // decided in OnPublish, which has the payload to audit
		}
		return h.mayPublish(cl, topic)
	}
	if !h.maySubscribe(cl, topic) {
		return false
	}
	if h.limit != nil && !strings.ContainsAny(topic, "+#") {
		return h.limit.admit(cl, topic)
	}
	return true
}

func (h *auth) mayPublish(cl *mqtt.Client, topic string) bool {
	c := h.cfg.Load()
	user := string(cl.Properties.Username)
	u := c.users[user]
	if u == nil {
		return false // anonymous clients only read
	}
	if c.Namespace != "" && (topic == c.Namespace || strings.HasPrefix(topic, c.Namespace+"/")) {
		if !c.Commands || !c.IsCommand(topic) {
			return false
		}
	}
	return u.publish.allows(topic, user, cl.ID)
}

// whyRefused says why a client may not publish on a command topic.
func (h *auth) whyRefused(cl *mqtt.Client, c *authConfig) string {
	user := string(cl.Properties.Username)
	switch {
	case c.users[user] == nil:
		return "anonymous clients may not publish commands"
	case !c.Commands && c.Namespace != "":
		return "the local broker takes no commands ([broker] commands = false)"
	}
	return "the publish ACL of user " + user + " does not cover this topic"
}

func (h *auth) maySubscribe(cl *mqtt.Client, filter string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		// A shared subscription is checked as its topic filter.
		if _, f, ok := strings.Cut(rest, "/"); ok {
			filter = f
		}
	}
	c := h.cfg.Load()
	user := string(cl.Properties.Username)
	if user == "" {
		return c.AnonymousRead
	}
	u := c.users[user]
	return u != nil && u.subscrib.allows(filter, user, cl.ID)
}

// OnPublish drops what a client may not publish (3.1.1 clients: the
// message is acknowledged and dropped, as mosquitto does; MQTT 5 clients
// got the reason code 0x87 from OnACLCheck already) and any retained
// message under edged's namespace, acknowledged and dropped: a client
// must not plant a status or value there.
func (h *auth) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	c := h.cfg.Load()
	if !h.mayPublish(cl, pk.TopicName) {
		h.log.Debug("local publish refused", "client", cl.ID, "user", string(cl.Properties.Username), "topic", pk.TopicName)
		if fn := h.refusedCommand.Load(); fn != nil && c.IsCommand(pk.TopicName) && !pk.FixedHeader.Retain {
			(*fn)(cl, pk, h.whyRefused(cl, c))
		}
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
			// PUBACK 0x87, as OnACLCheck answers other topics (the library
			// would answer QoS 2 with a PUBACK too: that one is dropped).
			return pk, packets.ErrNotAuthorized
		}
		return pk, packets.CodeSuccessIgnore
	}
	if pk.FixedHeader.Retain && c.Namespace != "" && (pk.TopicName == c.Namespace || strings.HasPrefix(pk.TopicName, c.Namespace+"/")) {
		h.log.Debug("local retained publish refused in edged's namespace", "client", cl.ID, "topic", pk.TopicName)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// AuthStats are the login figures of the local broker.
type AuthStats struct {
	PasswordChecks uint64 // bcrypt comparisons run
	LoginsRefused  uint64
	LoginThrottled uint64 // refused by a rate limit, without hashing
}

func (h *auth) stats() AuthStats {
	return AuthStats{PasswordChecks: h.hashes.Load(), LoginsRefused: h.refused.Load(), LoginThrottled: h.throttled.Load()}
}
