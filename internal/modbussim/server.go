// Package modbussim is an in-process Modbus TCP server and RTU responder for
// tests, benchmarks and `edged demo`: four 65536-entry areas (coils, discrete inputs, input and
// holding registers), function codes 1, 2, 3, 4, 5, 6, 15 and 16, exception
// responses, refused address ranges, injected faults (transient exceptions,
// answers under the wrong function code) and slow answers on demand. It knows
// nothing about edged's drivers, tags or configuration; it is a device.
package modbussim

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a simulated Modbus TCP device. Its methods are safe for
// concurrent use; it serves any number of connections, each answered in
// order (pipelined requests are fine).
type Server struct {
	mu      sync.RWMutex // guards bank, units and wlog
	bank    bank
	units   map[byte]bool // nil: answer every unit ID
	wlog    []WriteRecord
	stamp   *stamps     // see SetStamps; nil: none
	stamped atomic.Bool // stamp is set (read without s.mu)

	delay    atomic.Int64 // time.Duration before each response
	requests atomic.Uint64
	writes   atomic.Uint64
	faults   faults // see Inject
	faulted  atomic.Uint64
	accepted atomic.Uint64 // TCP connections accepted

	lmu   sync.Mutex // guards ln, conns, done
	ln    net.Listener
	conns map[net.Conn]struct{}
	done  chan struct{} // closed by Close to abort delays
	wg    sync.WaitGroup
}

// New returns a server with all areas zeroed. It does not listen yet.
func New() *Server {
	return &Server{bank: newBank(), conns: map[net.Conn]struct{}{}}
}

// Listen starts serving on addr (":0" picks a free port; see Addr). A
// closed server may listen again and keeps its data.
func (s *Server) Listen(addr string) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.ln != nil {
		return errors.New("modbussim: already listening on " + s.ln.Addr().String())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.done = make(chan struct{})
	s.wg.Add(1)
	go s.accept(ln, s.done)
	return nil
}

// Addr is the address the server listens on, "" when it does not.
func (s *Server) Addr() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Requests counts the request frames received since New.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Writes counts the write requests (function codes 5, 6, 15, 16) received
// since New, over TCP and RTU, including those answered with an exception.
func (s *Server) Writes() uint64 { return s.writes.Load() }

// WriteRecord is one write request as it arrived: the unit ID it was
// addressed to, the function code and the request data after it (address,
// quantity or value, byte count, values).
type WriteRecord struct {
	Unit     byte
	Function byte
	Data     []byte
}

// WriteLog returns every write request received since New, in order.
func (s *Server) WriteLog() []WriteRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]WriteRecord(nil), s.wlog...)
}

// Accepted counts the TCP connections accepted since New (Modbus TCP and
// RTU over TCP).
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

// Close stops listening, closes every connection and waits until all of
// the server's goroutines have ended. It is safe to call more than once.
func (s *Server) Close() error {
	s.lmu.Lock()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
		s.ln = nil
		close(s.done)
	}
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
	s.lmu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept(ln net.Listener, done chan struct{}) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		s.lmu.Lock()
		if s.ln != ln { // Close ran between Accept and here
			s.lmu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.accepted.Add(1)
		s.wg.Add(1)
		s.lmu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c, done)
			c.Close()
			s.lmu.Lock()
			delete(s.conns, c)
			s.lmu.Unlock()
		}()
	}
}

// serve answers the requests read from rw until it fails or done closes.
// A malformed frame ends it: there is no way to find the next frame.
func (s *Server) serve(rw io.ReadWriter, done <-chan struct{}) error {
	r := bufio.NewReader(rw)
	var in, out [maxADU]byte
	for {
		req, err := readFrame(r, in[:])
		if err != nil {
			return err
		}
		s.requests.Add(1)
		if len(req) > mbapLen && s.silenced(req[mbapLen:]) {
			continue
		}
		resp := s.respond(req, out[:])
		if d := time.Duration(s.delay.Load()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-done:
				t.Stop()
				return net.ErrClosed
			}
		}
		if _, err := rw.Write(resp); err != nil {
			return err
		}
	}
}
