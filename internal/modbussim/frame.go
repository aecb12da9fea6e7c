package modbussim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Function codes the server answers.
const (
	fcReadCoils          = 1
	fcReadDiscrete       = 2
	fcReadHolding        = 3
	fcReadInput          = 4
	fcWriteSingleCoil    = 5
	fcWriteSingleHolding = 6
	fcWriteCoils         = 15
	fcWriteHoldings      = 16
)

// Exception codes the server sends.
const (
	ExceptionIllegalFunction    byte = 0x01
	ExceptionIllegalDataAddress byte = 0x02
	ExceptionIllegalDataValue   byte = 0x03
	ExceptionGatewayNoResponse  byte = 0x0B
)

const (
	mbapLen   = 7   // transaction(2) protocol(2) length(2) unit(1)
	maxADU    = 260 // MBAP + 253-byte PDU
	maxLength = 254 // largest MBAP length field: unit + PDU
)

// errMalformed means the byte stream is not Modbus TCP; the connection is
// closed because the next frame boundary cannot be found.
var errMalformed = errors.New("malformed MBAP frame")

// readFrame reads one request ADU into buf (at least maxADU bytes).
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf[:mbapLen]); err != nil {
		return nil, err
	}
	protocol := binary.BigEndian.Uint16(buf[2:])
	length := int(binary.BigEndian.Uint16(buf[4:]))
	if protocol != 0 {
		return nil, fmt.Errorf("%w: protocol id %d, want 0", errMalformed, protocol)
	}
	if length < 2 || length > maxLength {
		return nil, fmt.Errorf("%w: length %d, want 2..%d", errMalformed, length, maxLength)
	}
	n := mbapLen - 1 + length
	if _, err := io.ReadFull(r, buf[mbapLen:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// respond builds the response ADU to req in out (at least maxADU bytes).
func (s *Server) respond(req, out []byte) []byte {
	copy(out[:mbapLen], req[:mbapLen])
	pdu := s.handle(req[6], true, req[mbapLen:], out[mbapLen:mbapLen])
	binary.BigEndian.PutUint16(out[4:], uint16(1+len(pdu)))
	return out[:mbapLen+len(pdu)]
}

func exception(out []byte, fc, code byte) []byte {
	return append(out, fc|0x80, code)
}

// handle answers one request PDU, appending the response PDU to out. With
// gateway set, it answers as a Modbus TCP gateway would for a unit ID it
// does not serve (see SetUnitIDs).
func (s *Server) handle(unit byte, gateway bool, req, out []byte) []byte {
	fc := req[0]
	data := req[1:]
	if fc == fcReadHolding && s.stamped.Load() {
		s.stampRead(data)
	}
	switch fc {
	case fcReadCoils, fcReadDiscrete, fcReadHolding, fcReadInput:
		s.mu.RLock()
		defer s.mu.RUnlock()
	case fcWriteSingleCoil, fcWriteSingleHolding, fcWriteCoils, fcWriteHoldings:
		s.mu.Lock()
		defer s.mu.Unlock()
	default:
		return exception(out, fc, ExceptionIllegalFunction)
	}
	if fc >= fcWriteSingleCoil {
		s.writes.Add(1)
		s.wlog = append(s.wlog, WriteRecord{Unit: unit, Function: fc, Data: append([]byte(nil), data...)})
	}
	if gateway && s.units != nil && !s.units[unit] {
		return exception(out, fc, ExceptionGatewayNoResponse)
	}
	if len(data) < 4 {
		return exception(out, fc, ExceptionIllegalDataValue)
	}
	addr := int(binary.BigEndian.Uint16(data))
	qty := int(binary.BigEndian.Uint16(data[2:]))
	switch fc {
	case fcReadCoils, fcReadDiscrete:
		area := Coil
		if fc == fcReadDiscrete {
			area = Discrete
		}
		if len(data) != 4 || qty < 1 || qty > 2000 {
			return exception(out, fc, ExceptionIllegalDataValue)
		}
		if addr+qty > BankSize || s.bank.rejected(area, addr, qty) {
			return exception(out, fc, ExceptionIllegalDataAddress)
		}
		n := (qty + 7) / 8
		if f := s.fault(area, addr, qty); f != nil {
			return faultAnswer(out, f, fc, n)
		}
		out = append(out, fc, byte(n))
		bits := s.bank.bitsOf(area)[addr : addr+qty]
		for i := 0; i < n; i++ {
			var b byte
			for j := 0; j < 8 && 8*i+j < qty; j++ {
				if bits[8*i+j] {
					b |= 1 << j
				}
			}
			out = append(out, b)
		}
		return out
	case fcReadHolding, fcReadInput:
		area := Holding
		if fc == fcReadInput {
			area = Input
		}
		if len(data) != 4 || qty < 1 || qty > 125 {
			return exception(out, fc, ExceptionIllegalDataValue)
		}
		if addr+qty > BankSize || s.bank.rejected(area, addr, qty) {
			return exception(out, fc, ExceptionIllegalDataAddress)
		}
		if f := s.fault(area, addr, qty); f != nil {
			return faultAnswer(out, f, fc, 2*qty)
		}
		out = append(out, fc, byte(2*qty))
		for _, w := range s.bank.words(area)[addr : addr+qty] {
			out = binary.BigEndian.AppendUint16(out, w)
		}
		return out
	case fcWriteSingleCoil:
		if len(data) != 4 || (qty != 0xFF00 && qty != 0) {
			return exception(out, fc, ExceptionIllegalDataValue)
		}
		if s.bank.rejected(Coil, addr, 1) {
			return exception(out, fc, ExceptionIllegalDataAddress)
		}
		s.bank.coils[addr] = qty == 0xFF00
		return append(out, req...)
	case fcWriteSingleHolding:
		if len(data) != 4 {
			return exception(out, fc, ExceptionIllegalDataValue)
		}
		if s.bank.rejected(Holding, addr, 1) {
			return exception(out, fc, ExceptionIllegalDataAddress)
		}
		s.bank.holding[addr] = uint16(qty)
		return append(out, req...)
	case fcWriteCoils:
		if len(data) < 5 || qty < 1 || qty > 1968 || int(data[4]) != (qty+7)/8 || len(data) != 5+int(data[4]) {
			return exception(out, fc, ExceptionIllegalDataValue)
		}
		if addr+qty > BankSize || s.bank.rejected(Coil, addr, qty) {
			return exception(out, fc, ExceptionIllegalDataAddress)
		}
		for i := 0; i < qty; i++ {
			s.bank.coils[addr+i] = data[5+i/8]>>(i%8)&1 == 1
		}
		return append(out, req[:5]...)
	default: // fcWriteHoldings
		if len(data) < 5 || qty < 1 || qty > 123 || int(data[4]) != 2*qty || len(data) != 5+2*qty {
			return exception(out, fc, ExceptionIllegalDataValue)
		}
		if addr+qty > BankSize || s.bank.rejected(Holding, addr, qty) {
			return exception(out, fc, ExceptionIllegalDataAddress)
		}
		for i := 0; i < qty; i++ {
			s.bank.holding[addr+i] = binary.BigEndian.Uint16(data[5+2*i:])
		}
		return append(out, req[:5]...)
	}
}
