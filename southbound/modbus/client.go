package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/goburrow/modbus"
)

// client is the Modbus master the driver talks through. Results are valid
// until the next call; calls are not concurrent. A request the device
// refused returns an *Exception; any other error leaves the client
// disconnected, and the next call connects again.
type client interface {
	ReadCoils(address, quantity uint16) ([]byte, error)
	ReadDiscreteInputs(address, quantity uint16) ([]byte, error)
	ReadInputRegisters(address, quantity uint16) ([]byte, error)
	ReadHoldingRegisters(address, quantity uint16) ([]byte, error)
	WriteSingleCoil(address uint16, on bool) error
	WriteSingleRegister(address, value uint16) error
	// WriteMultipleCoils writes quantity coils from packed (LSB first).
	WriteMultipleCoils(address, quantity uint16, packed []byte) error
	// WriteMultipleRegisters writes len(raw)/2 registers (wire order).
	WriteMultipleRegisters(address uint16, raw []byte) error
	// Close drops the connection at once, failing a call in flight.
	Close() error
}

// Exception is a Modbus exception response: the device understood the
// request and refused it.
type Exception struct {
	Function byte // function code of the request
	Code     byte
}

var exceptionNames = map[byte]string{
	1: "illegal function", 2: "illegal data address", 3: "illegal data value",
	4: "server device failure", 5: "acknowledge", 6: "server device busy",
	8: "memory parity error", 10: "gateway path unavailable",
	11: "gateway target device failed to respond",
}

func (e *Exception) Error() string {
	name, ok := exceptionNames[e.Code]
	if !ok {
		name = "unknown exception"
	}
	return fmt.Sprintf("modbus exception %02X (%s)", e.Code, name)
}

// FunctionMismatch is a reply under another function code than the
// request's: not an answer to it (a confused device or gateway), so
// neither data nor a refusal. The driver tries the request again like one
// that failed on the connection, and never learns from it.
type FunctionMismatch struct {
	Request byte // function code of the request
	Reply   byte // function code of the reply (bit 7 set: an exception)
	Code    byte // the exception code, if Reply is an exception
}

func (e *FunctionMismatch) Error() string {
	if e.Reply&0x80 != 0 {
		return fmt.Sprintf("reply to function code %02X is an exception for function code %02X (code %02X): not an answer to this request",
			e.Request, e.Reply&^0x80, e.Code)
	}
	return fmt.Sprintf("reply to function code %02X has function code %02X: not an answer to this request", e.Request, e.Reply)
}

// Refused implements host.Refusal: the device answered (an exception is
// counted as one, whatever its code).
func (e *Exception) Refused() bool { return true }

// unreachable reports whether the exception comes from a gateway that
// cannot reach the device (codes 0A, 0B): the device is offline, not
// refusing one request.
func (e *Exception) unreachable() bool { return e.Code == 0x0A || e.Code == 0x0B }

// DeviceRefused implements southbound.DeviceRefusal: the device answered
// (a gateway's "no path" or "no answer" exceptions say it did not).
func (e *Exception) DeviceRefused() bool { return !e.unreachable() }

// tcpClient is goburrow's client on our own transport: goburrow's
// TCPClientHandler holds a mutex across a whole request, so closing it
// cannot unblock a stuck read, and it keeps a late answer after a timeout
// in the stream. Its packager (MBAP framing, transaction IDs) is reused.
type tcpClient = libClient

// libClient is goburrow's client on one of our transports (TCP, or a
// device's view of an RTU line).
type libClient struct {
	mb modbus.Client
	tr io.Closer // closed after an error that may leave a late answer behind
}

// newTCPClient makes a client that connects on first use. Cancelling ctx
// closes the connection and makes every later call fail.
func newTCPClient(ctx context.Context, address string, unit byte, timeout time.Duration) *tcpClient {
	return newTCPClientOn(ctx, &tcpLink{address: address}, unit, timeout)
}

// newTCPClientOn makes a client for one unit ID on a connection that other
// units (behind the same gateway) may share.
func newTCPClientOn(ctx context.Context, link *tcpLink, unit byte, timeout time.Duration) *tcpClient {
	h := modbus.NewTCPClientHandler(link.address) // packager only; its transport is never used
	h.SlaveId = unit
	tr := &tcpTransport{ctx: ctx, link: link, timeout: timeout}
	context.AfterFunc(ctx, func() { tr.Close() })
	return &libClient{mb: modbus.NewClient2(h, tr), tr: tr}
}

func (c *libClient) ReadCoils(address, quantity uint16) ([]byte, error) {
	b, err := c.mb.ReadCoils(address, quantity)
	return c.check(modbus.FuncCodeReadCoils, b, (int(quantity)+7)/8, err)
}

func (c *libClient) ReadDiscreteInputs(address, quantity uint16) ([]byte, error) {
	b, err := c.mb.ReadDiscreteInputs(address, quantity)
	return c.check(modbus.FuncCodeReadDiscreteInputs, b, (int(quantity)+7)/8, err)
}

func (c *libClient) ReadInputRegisters(address, quantity uint16) ([]byte, error) {
	b, err := c.mb.ReadInputRegisters(address, quantity)
	return c.check(modbus.FuncCodeReadInputRegisters, b, 2*int(quantity), err)
}

func (c *libClient) ReadHoldingRegisters(address, quantity uint16) ([]byte, error) {
	b, err := c.mb.ReadHoldingRegisters(address, quantity)
	return c.check(modbus.FuncCodeReadHoldingRegisters, b, 2*int(quantity), err)
}

func (c *libClient) WriteSingleCoil(address uint16, on bool) error {
	v := uint16(0)
	if on {
		v = 0xFF00
	}
	_, err := c.mb.WriteSingleCoil(address, v)
	_, err = c.check(modbus.FuncCodeWriteSingleCoil, nil, 0, err)
	return err
}

func (c *libClient) WriteSingleRegister(address, value uint16) error {
	_, err := c.mb.WriteSingleRegister(address, value)
	_, err = c.check(modbus.FuncCodeWriteSingleRegister, nil, 0, err)
	return err
}

func (c *libClient) WriteMultipleCoils(address, quantity uint16, packed []byte) error {
	_, err := c.mb.WriteMultipleCoils(address, quantity, packed)
	_, err = c.check(modbus.FuncCodeWriteMultipleCoils, nil, 0, err)
	return err
}

func (c *libClient) WriteMultipleRegisters(address uint16, raw []byte) error {
	_, err := c.mb.WriteMultipleRegisters(address, uint16(len(raw)/2), raw)
	_, err = c.check(modbus.FuncCodeWriteMultipleRegisters, nil, 0, err)
	return err
}

func (c *libClient) Close() error { return c.tr.Close() }

// check turns goburrow's exception into ours, refuses short answers and
// replies to another function code, and drops the connection after any
// other error: after a timeout a late answer may still arrive and would be
// taken for the next one's. fc is the request's function code.
func (c *libClient) check(fc byte, b []byte, want int, err error) ([]byte, error) {
	if err == nil && len(b) != want {
		err = fmt.Errorf("response has %d data bytes, want %d", len(b), want)
	}
	if err == nil {
		return b, nil
	}
	var me *modbus.ModbusError
	if errors.As(err, &me) {
		// goburrow reports any reply whose function code differs from the
		// request's as an exception, taking the first data byte for the
		// code: a reply for another function is no answer to this request.
		if me.FunctionCode != fc|0x80 {
			c.tr.Close()
			return nil, &FunctionMismatch{Request: fc, Reply: me.FunctionCode, Code: me.ExceptionCode}
		}
		return nil, &Exception{Function: fc, Code: me.ExceptionCode}
	}
	c.tr.Close()
	return nil, err
}

// tcpLink is one TCP connection to a Modbus TCP device or gateway, shared
// by every configured unit ID at its address: their lane sends one request
// at a time on it. Close drops the connection; the next request dials.
type tcpLink struct {
	address string

	mu   sync.Mutex // guards conn
	conn net.Conn

	buf [260]byte // the last response; only Send touches it (one at a time)
}

// Close drops the connection, failing a Send in flight.
func (l *tcpLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	err := l.conn.Close()
	l.conn = nil
	return err
}

// tcpTransport is one unit's view of a link: it sends one MBAP frame with
// the unit's timeout and reads the answer; it implements goburrow's
// Transporter. Close may be called at any time, from any goroutine, and
// fails a Send in flight.
type tcpTransport struct {
	ctx     context.Context
	link    *tcpLink
	timeout time.Duration
}

const mbapLen = 7

// Send implements modbus.Transporter.
func (t *tcpTransport) Send(req []byte) ([]byte, error) {
	conn, err := t.connect()
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return nil, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	buf := t.link.buf[:]
	if _, err := io.ReadFull(conn, buf[:mbapLen]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf[4:]))
	if n < 2 || n > len(buf)-mbapLen+1 {
		return nil, fmt.Errorf("response length %d in MBAP header, want 2..%d", n, len(buf)-mbapLen+1)
	}
	if _, err := io.ReadFull(conn, buf[mbapLen:mbapLen-1+n]); err != nil {
		return nil, err
	}
	return buf[:mbapLen-1+n], nil
}

func (t *tcpTransport) connect() (net.Conn, error) {
	l := t.link
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: t.timeout}
	c, err := d.DialContext(t.ctx, "tcp", l.address)
	if err != nil {
		return nil, err
	}
	if c.LocalAddr().String() == c.RemoteAddr().String() {
		// Dialling a free local port can pick that very port as the source
		// and connect to itself (TCP simultaneous open), blocking the
		// device's server from binding it again.
		c.Close()
		return nil, fmt.Errorf("dial %s: connected to itself: nothing listens there", l.address)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := t.ctx.Err(); err != nil { // closed while dialling
		c.Close()
		return nil, err
	}
	l.conn = c
	return c, nil
}

// Close implements client.Close: it drops the shared connection.
func (t *tcpTransport) Close() error { return t.link.Close() }
