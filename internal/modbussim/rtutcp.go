package modbussim

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// RTUOverTCP is a serial-to-Ethernet converter in transparent mode: it
// answers raw RTU frames (with their CRC) on TCP connections, one
// responder per connection, sharing the Server's register banks.
type RTUOverTCP struct {
	s    *Server
	ln   net.Listener
	opts RTUOptions

	mu    sync.Mutex
	resps []*RTUResponder
	done  chan struct{}
}

// ServeRTUOverTCP listens on addr (":0" picks a port) and answers RTU
// frames for opts.Units on every connection, until Close. Accepted counts
// the connections.
func (s *Server) ServeRTUOverTCP(addr string, opts RTUOptions) (*RTUOverTCP, error) {
	if len(opts.Units) == 0 {
		opts.Units = []byte{1}
	}
	if opts.BitsPerChar == 0 {
		opts.BitsPerChar = 11
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	g := &RTUOverTCP{s: s, ln: ln, opts: opts, done: make(chan struct{})}
	go g.accept()
	return g, nil
}

// Addr is the listening address.
func (g *RTUOverTCP) Addr() string { return g.ln.Addr().String() }

func (g *RTUOverTCP) accept() {
	defer close(g.done)
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.s.accepted.Add(1)
		r := &RTUResponder{s: g.s, opts: g.opts, port: &connPort{Conn: c}, done: make(chan struct{}), closed: make(chan struct{})}
		r.SetUnits(g.opts.Units...)
		g.mu.Lock()
		g.resps = append(g.resps, r)
		g.mu.Unlock()
		go r.serve()
	}
}

// Close stops listening and closes every connection.
func (g *RTUOverTCP) Close() error {
	err := g.ln.Close()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.resps {
		r.Close()
	}
	g.resps = nil
	return err
}

// connPort reads a TCP connection like a serial port: a read timeout is
// a read of 0 bytes.
type connPort struct {
	net.Conn
}

func (c *connPort) SetReadTimeout(t time.Duration) error {
	if t < 0 {
		return c.SetReadDeadline(time.Time{})
	}
	return c.SetReadDeadline(time.Now().Add(t))
}

func (c *connPort) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil
	}
	return n, err
}
