package serial

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bug "go.bug.st/serial"
)

// Stats are a line's counters since it was made. Busy is the wire time of
// every frame sent and received at the line's baud rate, so Busy divided by
// the wall time is the bus utilisation.
type Stats struct {
	Transactions uint64 // requests sent
	Timeouts     uint64 // requests without a complete answer in time
	CRCErrors    uint64 // answers with a bad CRC
	FrameErrors  uint64 // answers that do not fit the request
	Exceptions   uint64 // exception answers (the slave refused the request)
	Opens        uint64 // successful opens of the port (1 + reconnects)
	PortErrors   uint64 // failed opens and I/O errors of the port itself
	Busy         time.Duration
}

// Line is one serial port used as a Modbus RTU master. It opens the port on
// first use and again after the port failed (a USB adapter unplugged and
// plugged back). Transact must not be called concurrently (the bus
// scheduler owns the line); Close may be called at any time from any
// goroutine and fails a Transact in flight.
type Line struct {
	path string
	mode Mode

	mu     sync.Mutex // guards port and closed
	port   bug.Port
	closed bool

	lastEnd time.Time // when the line last carried a frame; only Transact touches it
	buf     [MaxFrame]byte

	transactions, timeouts, crcErrors, frameErrors, exceptions, opens, portErrors atomic.Uint64
	busy                                                                          atomic.Int64
}

// NewLine returns a line for the port at path (e.g. /dev/ttyUSB0 or a
// /dev/serial/by-id/… link). It does no I/O. mode must be valid.
func NewLine(path string, mode Mode) *Line { return &Line{path: path, mode: mode} }

// Path is the port's path as given.
func (l *Line) Path() string { return l.path }

// Mode is the line setting.
func (l *Line) Mode() Mode { return l.mode }

// Stats returns the line's counters.
func (l *Line) Stats() Stats {
	return Stats{
		Transactions: l.transactions.Load(), Timeouts: l.timeouts.Load(), CRCErrors: l.crcErrors.Load(),
		FrameErrors: l.frameErrors.Load(), Exceptions: l.exceptions.Load(), Opens: l.opens.Load(),
		PortErrors: l.portErrors.Load(), Busy: time.Duration(l.busy.Load()),
	}
}

// Open opens the port now if it is not open. Transact opens it too; Open
// lets a caller report a missing port before the first request.
func (l *Line) Open() error {
	_, err := l.open()
	return err
}

func (l *Line) open() (bug.Port, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("%w: %s: line closed", ErrPort, l.path)
	}
	if l.port != nil {
		return l.port, nil
	}
	p, err := bug.Open(l.path, l.mode.bugMode())
	if err != nil {
		l.portErrors.Add(1)
		return nil, fmt.Errorf("%w: open %s (%s): %w", ErrPort, l.path, l.mode, err)
	}
	l.opens.Add(1)
	l.port = p
	return p, nil
}

// drop closes the port after an I/O error so the next Transact reopens it.
func (l *Line) drop(p bug.Port) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.port == p {
		l.port = nil
	}
	p.Close()
}

// Close closes the port for good; Transact then fails with ErrPort.
func (l *Line) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.port == nil {
		return nil
	}
	err := l.port.Close()
	l.port = nil
	return err
}

// Transact sends one RTU request frame (with its CRC) and returns the
// complete answer: the normal answer, whose length follows from the
// request, or a 5-byte exception answer. It keeps the inter-frame silence
// before sending, drops stale input, and waits at most timeout (plus the
// request's own wire time) for the answer. The answer is valid until the
// next call. Errors wrap ErrTimeout, ErrCRC, ErrFrame or ErrPort.
func (l *Line) Transact(req []byte, timeout time.Duration) ([]byte, error) {
	want, err := ResponseLength(req)
	if err != nil {
		return nil, err
	}
	p, err := l.open()
	if err != nil {
		return nil, err
	}
	if wait := time.Until(l.lastEnd.Add(l.mode.Silence())); wait > 0 {
		time.Sleep(wait)
	}
	// Whatever is in the input now is a late answer to an earlier request.
	if err := p.ResetInputBuffer(); err != nil {
		return nil, l.portFailed(p, "flush", err)
	}
	l.transactions.Add(1)
	start := time.Now()
	if _, err := p.Write(req); err != nil {
		return nil, l.portFailed(p, "write", err)
	}
	deadline := start.Add(l.mode.WireTime(len(req)) + timeout)
	got := 0
	defer func() {
		l.lastEnd = time.Now()
		l.busy.Add(int64(l.mode.WireTime(len(req) + got)))
	}()
	for got < want {
		remain := time.Until(deadline)
		if remain <= 0 {
			l.timeouts.Add(1)
			if got > 0 {
				return nil, fmt.Errorf("%w: %s: %d of %d bytes after %v", ErrTimeout, l.path, got, want, timeout)
			}
			return nil, fmt.Errorf("%w: %s: silent for %v", ErrTimeout, l.path, timeout)
		}
		if err := p.SetReadTimeout(remain); err != nil {
			return nil, l.portFailed(p, "set read timeout", err)
		}
		n, err := p.Read(l.buf[got:want])
		if err != nil {
			return nil, l.portFailed(p, "read", err)
		}
		got += n
		if got >= 2 && l.buf[1] == req[1]|0x80 {
			want = ExceptionLength
		}
	}
	resp := l.buf[:got]
	if err := CheckResponse(req, resp); err != nil {
		if errors.Is(err, ErrCRC) {
			l.crcErrors.Add(1)
		} else {
			l.frameErrors.Add(1)
		}
		return nil, fmt.Errorf("%s: %w", l.path, err)
	}
	if resp[1]&0x80 != 0 {
		l.exceptions.Add(1)
	}
	return resp, nil
}

func (l *Line) portFailed(p bug.Port, op string, err error) error {
	l.portErrors.Add(1)
	l.drop(p)
	return fmt.Errorf("%w: %s %s: %w", ErrPort, op, l.path, err)
}
