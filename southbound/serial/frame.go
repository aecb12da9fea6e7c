// Package serial is edged's Modbus RTU transport on a serial line (RS-485
// through a USB or on-board adapter): the line settings, RTU framing (CRC,
// the length of the expected answer), inter-frame silence, timeouts and
// reopening a port that disappeared. It moves whole RTU frames; it does not
// know devices, tags, polling or the Modbus client library on top of it.
package serial

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame limits of Modbus RTU.
const (
	MaxFrame        = 256 // address + PDU (≤ 253) + CRC
	ExceptionLength = 5   // address, function|0x80, code, CRC
	minFrame        = 4
)

// Errors of a transaction; test with errors.Is.
var (
	// ErrTimeout: no complete answer within the timeout (the slave is
	// silent, absent, or answered too slowly).
	ErrTimeout error = timeoutError("no answer within the timeout")
	// ErrCRC: an answer arrived whose CRC does not match (noise on the
	// line, wrong baud rate or parity, or two slaves with one unit ID).
	ErrCRC = errors.New("CRC mismatch")
	// ErrFrame: an answer arrived that is not the answer to the request
	// (other unit ID or function, impossible length).
	ErrFrame = errors.New("malformed answer")
	// ErrPort: the port cannot be opened or disappeared (USB adapter
	// unplugged); the next transaction tries to open it again.
	ErrPort = errors.New("serial port unavailable")
)

// CRC is the Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF) of
// b. On the wire it is sent low byte first.
func CRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// AppendCRC appends the CRC of b to b, low byte first.
func AppendCRC(b []byte) []byte { return binary.LittleEndian.AppendUint16(b, CRC(b)) }

// CheckCRC reports whether frame (at least 3 bytes) ends with the CRC of
// what precedes it.
func CheckCRC(frame []byte) bool {
	if len(frame) < 3 {
		return false
	}
	n := len(frame) - 2
	return binary.LittleEndian.Uint16(frame[n:]) == CRC(frame[:n])
}

// ResponseLength is the length of the complete normal answer (address to
// CRC) to the RTU request req, computed from its function code and count.
// An exception answer is ExceptionLength bytes instead. It returns an error
// for a request it cannot size: a function code edged does not send, or a
// count outside what Modbus allows.
func ResponseLength(req []byte) (int, error) {
	if len(req) < minFrame {
		return 0, fmt.Errorf("%w: request of %d bytes, want at least %d", ErrFrame, len(req), minFrame)
	}
	count := func() (int, error) {
		if len(req) < 8 {
			return 0, fmt.Errorf("%w: function %d request of %d bytes, want at least 8", ErrFrame, req[1], len(req))
		}
		return int(binary.BigEndian.Uint16(req[4:])), nil
	}
	switch fc := req[1]; fc {
	case 1, 2: // read coils, discrete inputs: unit fc bytes data… crc
		n, err := count()
		if err != nil {
			return 0, err
		}
		if n < 1 || n > 2000 {
			return 0, fmt.Errorf("%w: read of %d bits, Modbus allows 1..2000", ErrFrame, n)
		}
		return 5 + (n+7)/8, nil
	case 3, 4:
		n, err := count()
		if err != nil {
			return 0, err
		}
		if n < 1 || n > 125 {
			return 0, fmt.Errorf("%w: read of %d registers, Modbus allows 1..125", ErrFrame, n)
		}
		return 5 + 2*n, nil
	case 5, 6, 15, 16: // echo of address and value or count
		return 8, nil
	default:
		return 0, fmt.Errorf("%w: function code %d: the RTU transport sizes answers to functions 1-6, 15, 16", ErrFrame, fc)
	}
}

// CheckResponse checks that resp is a complete, intact answer to req: the
// CRC, the unit ID, the function (or its exception) and the length.
func CheckResponse(req, resp []byte) error {
	want, err := ResponseLength(req)
	if err != nil {
		return err
	}
	if len(resp) >= 2 && resp[1] == req[1]|0x80 {
		want = ExceptionLength
	}
	if len(resp) != want {
		return fmt.Errorf("%w: answer of %d bytes, want %d", ErrFrame, len(resp), want)
	}
	if !CheckCRC(resp) {
		return fmt.Errorf("%w: answer % x", ErrCRC, resp)
	}
	if resp[0] != req[0] {
		return fmt.Errorf("%w: answer from unit %d to a request to unit %d", ErrFrame, resp[0], req[0])
	}
	if resp[1]&^0x80 != req[1] {
		return fmt.Errorf("%w: answer to function %d, request was function %d", ErrFrame, resp[1]&^0x80, req[1])
	}
	if (req[1] <= 4) && resp[1] == req[1] && int(resp[2]) != want-5 {
		return fmt.Errorf("%w: byte count %d, want %d", ErrFrame, resp[2], want-5)
	}
	return nil
}

// timeoutError is ErrTimeout's type: it says Timeout(), as net errors do,
// so that the host counts it as a timeout.
type timeoutError string

func (e timeoutError) Error() string { return string(e) }

// Timeout reports true.
func (timeoutError) Timeout() bool { return true }
