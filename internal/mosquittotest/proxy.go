package mosquittotest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a target and breaks the path in the
// ways a real network does: Cut (the path is gone: connections close and
// new ones are refused), Reset (every connection gets a TCP reset, new ones
// are accepted), Blackhole (TCP stays open and new connections are
// accepted, but nothing is forwarded either way) and StopAcks (what the
// client sends still reaches the broker, nothing comes back: no CONNACK,
// PUBACK or PINGRESP). Restore ends each of them; connections that were
// blackholed or muted are closed then (their streams lost bytes).
type Proxy struct {
	target string
	ln     net.Listener

	accepted, refused atomic.Int64

	mu    sync.Mutex
	mode  proxyMode
	conns map[*proxyPair]struct{}
}

type proxyMode int

const (
	proxyForward proxyMode = iota
	proxyCut
	proxyBlackhole
	proxyNoAcks
)

// proxyPair is one proxied connection: the client's and the target's side.
type proxyPair struct {
	client, target net.Conn
	// up and down are 1 while bytes client→target (up) or target→client
	// (down) are swallowed.
	up, down atomic.Bool
}

func (c *proxyPair) close() { c.client.Close(); c.target.Close() }

// NewProxy listens on a free loopback port; it is closed in t.Cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxyPair]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted counts the TCP connections the proxy accepted (refused ones
// during a Cut excluded): the client's connection attempts.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Attempts counts every TCP connection a client tried, those refused
// during a Cut included.
func (p *Proxy) Attempts() int64 { return p.accepted.Load() + p.refused.Load() }

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = proxyCut
	p.closeAllLocked(false)
}

// Reset sends a TCP reset on every connection, both ways; new connections
// are forwarded as usual.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAllLocked(true)
}

// Blackhole keeps every connection open and accepts new ones, but
// forwards nothing either way, until Restore.
func (p *Proxy) Blackhole() { p.setMute(proxyBlackhole) }

// StopAcks forwards what clients send and nothing the target answers,
// until Restore.
func (p *Proxy) StopAcks() { p.setMute(proxyNoAcks) }

func (p *Proxy) setMute(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for c := range p.conns {
		c.up.Store(m == proxyBlackhole)
		c.down.Store(true)
	}
}

// Restore forwards new connections again and closes those that were
// blackholed or muted.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == proxyBlackhole || p.mode == proxyNoAcks {
		p.closeAllLocked(false)
	}
	p.mode = proxyForward
}

func (p *Proxy) closeAllLocked(reset bool) {
	for c := range p.conns {
		if reset {
			for _, s := range []net.Conn{c.client, c.target} {
				if tc, ok := s.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // close sends RST
				}
			}
		}
		c.close()
	}
	clear(p.conns)
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		if mode == proxyCut {
			p.refused.Add(1)
			c.Close()
			continue
		}
		p.accepted.Add(1)
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pair := &proxyPair{client: c, target: up}
		p.mu.Lock()
		switch p.mode {
		case proxyCut:
			p.mu.Unlock()
			pair.close()
			continue
		case proxyBlackhole:
			pair.up.Store(true)
			pair.down.Store(true)
		case proxyNoAcks:
			pair.down.Store(true)
		}
		p.conns[pair] = struct{}{}
		p.mu.Unlock()
		go p.pipe(pair, up, c, &pair.up)
		go p.pipe(pair, c, up, &pair.down)
	}
}

// pipe copies src to dst, dropping what it reads while mute is set.
func (p *Proxy) pipe(pair *proxyPair, dst, src net.Conn, mute *atomic.Bool) {
	defer func() {
		pair.close()
		p.mu.Lock()
		delete(p.conns, pair)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !mute.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
