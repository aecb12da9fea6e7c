package modbussim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
)

// RTUOptions configure an RTU responder.
type RTUOptions struct {
	// Units are the unit (slave) IDs answered, each with the server's one
	// set of register banks; requests to other IDs are ignored, as a real
	// bus does: no answer at all. Empty means unit 1.
	Units []byte
	// Baud paces answers to the wire time at this baud rate (BitsPerChar
	// per character): the request's own time on the wire, 3.5 characters of
	// silence, then the answer's time, as a real slave on a real line would
	// take. A pty has no baud rate of its own. 0 answers at once.
	Baud int
	// BitsPerChar is the character length for pacing; 0 means 11 (8E1).
	BitsPerChar int
}

// RTUResponder is a Modbus RTU slave (or several, one per unit ID) on a
// serial port, sharing the register banks of its Server.
type RTUResponder struct {
	s    *Server
	opts RTUOptions
	port rtuPort

	mu    sync.Mutex // guards units
	units map[byte]bool

	requests atomic.Uint64 // frames addressed to one of our units
	damaged  atomic.Uint64 // frames with a bad CRC, and bytes thrown away resynchronising
	done     chan struct{}
	closed   chan struct{}
}

// rtuPort is what a responder reads frames from: a serial port, or a TCP
// connection carrying raw RTU frames.
type rtuPort interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
	SetReadTimeout(t time.Duration) error
}

// ServeRTU answers Modbus RTU requests on the serial port at path (one end
// of a socat pty pair, or a real port) until Close. It opens the port at
// opts.Baud 8E1 (9600 when 0); on a pty the setting has no effect.
func (s *Server) ServeRTU(path string, opts RTUOptions) (*RTUResponder, error) {
	if len(opts.Units) == 0 {
		opts.Units = []byte{1}
	}
	if opts.BitsPerChar == 0 {
		opts.BitsPerChar = 11
	}
	baud := opts.Baud
	if baud == 0 {
		baud = 9600
	}
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.EvenParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("modbussim: open %s: %w", path, err)
	}
	r := &RTUResponder{s: s, opts: opts, port: p, done: make(chan struct{}), closed: make(chan struct{})}
	r.SetUnits(opts.Units...)
	go r.serve()
	return r, nil
}

// SetUnits changes the unit IDs answered; none makes every slave silent (a
// dead bus).
func (r *RTUResponder) SetUnits(units ...byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.units = map[byte]bool{}
	for _, u := range units {
		r.units[u] = true
	}
}

// Requests counts the request frames addressed to a unit this responder
// answers (also counted in the Server's Requests).
func (r *RTUResponder) Requests() uint64 { return r.requests.Load() }

// Damaged counts request frames with a bad CRC and runs of bytes that were
// no frame at all (thrown away until the next silence): on a healthy bus
// with one master, zero.
func (r *RTUResponder) Damaged() uint64 { return r.damaged.Load() }

// Close stops answering, closes the port and waits for the responder's
// goroutine. Safe to call more than once.
func (r *RTUResponder) Close() error {
	select {
	case <-r.closed:
		<-r.done
		return nil
	default:
	}
	close(r.closed)
	err := r.port.Close()
	<-r.done
	return err
}

func (r *RTUResponder) wire(chars int) time.Duration {
	if r.opts.Baud <= 0 {
		return 0
	}
	return time.Duration(chars*r.opts.BitsPerChar) * time.Second / time.Duration(r.opts.Baud)
}

// silence is the inter-frame gap: 3.5 characters, 1.75 ms above 19200 baud.
func (r *RTUResponder) silence() time.Duration {
	if r.opts.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return r.wire(7) / 2
}

func (r *RTUResponder) serve() {
	defer close(r.done)
	var in []byte
	buf := make([]byte, 512)
	out := make([]byte, 0, 260)
	for {
		// With data pending, a short read timeout finds the end of a
		// frame cut short (the master gave up); without, block.
		if len(in) > 0 {
			r.port.SetReadTimeout(50 * time.Millisecond)
		} else {
			r.port.SetReadTimeout(serial.NoTimeout)
		}
		n, err := r.port.Read(buf)
		if err != nil {
			var pe *serial.PortError
			if errors.As(err, &pe) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || r.isClosed() {
				return
			}
			select {
			case <-r.closed:
				return
			case <-time.After(10 * time.Millisecond): // e.g. EIO while the other end is being reopened
			}
			continue
		}
		if n == 0 { // silence: what is pending is garbage or a torn frame
			if len(in) > 0 {
				r.damaged.Add(1)
			}
			in = in[:0]
			continue
		}
		in = append(in, buf[:n]...)
		for len(in) > 0 {
			size, ok := requestLength(in)
			if !ok {
				r.damaged.Add(1)
				in = in[:0] // unknown function: resynchronise on the next silence
				break
			}
			if len(in) < size {
				break
			}
			req := in[:size]
			r.answer(req, &out)
			in = append(in[:0], in[size:]...)
		}
	}
}

func (r *RTUResponder) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// requestLength is the length of the request frame at the start of in, or
// false when in cannot be the start of a request this responder knows. It
// needs 7 bytes for functions 15 and 16 and reports 9 (the minimum) before.
func requestLength(in []byte) (int, bool) {
	if len(in) < 2 {
		return 8, true
	}
	switch in[1] {
	case fcReadCoils, fcReadDiscrete, fcReadHolding, fcReadInput, fcWriteSingleCoil, fcWriteSingleHolding:
		return 8, true
	case fcWriteCoils, fcWriteHoldings:
		if len(in) < 7 {
			return 9, true
		}
		return 9 + int(in[6]), true
	}
	return 0, false
}

func (r *RTUResponder) answer(req []byte, out *[]byte) {
	if !rtuCRCOK(req) {
		r.damaged.Add(1)
		return // a slave ignores a damaged frame
	}
	unit := req[0]
	r.mu.Lock()
	mine := r.units[unit]
	r.mu.Unlock()
	if !mine && unit != 0 {
		return
	}
	r.requests.Add(1)
	r.s.requests.Add(1)
	resp := append((*out)[:0], unit)
	resp = r.s.handle(unit, false, req[1:len(req)-2], resp)
	if unit == 0 { // broadcast: executed, never answered
		return
	}
	resp = binary.LittleEndian.AppendUint16(resp, rtuCRC(resp))
	*out = resp
	if d := r.wire(len(req)) + r.silence() + r.wire(len(resp)); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.closed:
			t.Stop()
			return
		}
	}
	if d := time.Duration(r.s.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.closed:
			t.Stop()
			return
		}
	}
	r.port.Write(resp)
}

// rtuCRC is the Modbus CRC-16, written here again so that the simulator
// checks edged's framing instead of sharing its bugs.
func rtuCRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for i := 0; i < 8; i++ {
			lsb := crc & 1
			crc >>= 1
			if lsb == 1 {
				crc ^= 0xA001
			}
		}
	}
	return crc
}

func rtuCRCOK(frame []byte) bool {
	n := len(frame) - 2
	return n > 0 && binary.LittleEndian.Uint16(frame[n:]) == rtuCRC(frame[:n])
}
