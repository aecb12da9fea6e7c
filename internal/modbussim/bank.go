package modbussim

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/edged-gw/edged/mapping"
)

// Area is one of the four Modbus data areas.
type Area uint8

// The four areas of a Modbus device, each 65536 entries.
const (
	Coil     Area = iota + 1 // read/write bits, FC 1, 5, 15
	Discrete                 // read-only bits, FC 2
	Input                    // read-only registers, FC 4
	Holding                  // read/write registers, FC 3, 6, 16
)

func (a Area) String() string {
	switch a {
	case Coil:
		return "coil"
	case Discrete:
		return "discrete"
	case Input:
		return "input"
	case Holding:
		return "holding"
	}
	if a == 0 {
		return "(no area)"
	}
	return fmt.Sprintf("(unknown area %d)", uint8(a))
}

// BankSize is the number of entries in each area.
const BankSize = 65536

// bank is the device's memory. The Server's mutex guards it.
type bank struct {
	coils, discrete []bool
	input, holding  []uint16
	reject          [Holding + 1][]span
	silent          [Holding + 1][]span
}

type span struct{ from, to int }

func newBank() bank {
	return bank{
		coils:    make([]bool, BankSize),
		discrete: make([]bool, BankSize),
		input:    make([]uint16, BankSize),
		holding:  make([]uint16, BankSize),
	}
}

func (b *bank) words(a Area) []uint16 {
	switch a {
	case Input:
		return b.input
	case Holding:
		return b.holding
	}
	panic(fmt.Sprintf("modbussim: %s is not a register area", a))
}

func (b *bank) bitsOf(a Area) []bool {
	switch a {
	case Coil:
		return b.coils
	case Discrete:
		return b.discrete
	}
	panic(fmt.Sprintf("modbussim: %s is not a bit area", a))
}

// rejected reports whether any address of [from, from+n) is refused.
func (b *bank) rejected(a Area, from, n int) bool { return touches(b.reject[a], from, n) }

// touches reports whether any address of [from, from+n) is in spans.
func touches(spans []span, from, n int) bool {
	for _, s := range spans {
		if from <= s.to && from+n-1 >= s.from {
			return true
		}
	}
	return false
}

func checkRange(addr, n int) {
	if addr < 0 || n < 0 || addr+n > BankSize {
		panic(fmt.Sprintf("modbussim: address %d+%d outside 0..%d", addr, n, BankSize-1))
	}
}

// SetHolding stores words at holding registers addr, addr+1, …
func (s *Server) SetHolding(addr int, words ...uint16) { s.setWords(Holding, addr, words) }

// SetInput stores words at input registers addr, addr+1, …
func (s *Server) SetInput(addr int, words ...uint16) { s.setWords(Input, addr, words) }

// SetCoil stores v at coils addr, addr+1, …
func (s *Server) SetCoil(addr int, v ...bool) { s.setBits(Coil, addr, v) }

// SetDiscrete stores v at discrete inputs addr, addr+1, …
func (s *Server) SetDiscrete(addr int, v ...bool) { s.setBits(Discrete, addr, v) }

func (s *Server) setWords(a Area, addr int, words []uint16) {
	checkRange(addr, len(words))
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.bank.words(a)[addr:], words)
}

func (s *Server) setBits(a Area, addr int, v []bool) {
	checkRange(addr, len(v))
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.bank.bitsOf(a)[addr:], v)
}

// Holding returns a copy of n holding registers from addr, to check writes.
func (s *Server) Holding(addr, n int) []uint16 {
	checkRange(addr, n)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]uint16(nil), s.bank.holding[addr:addr+n]...)
}

// Coils returns a copy of n coils from addr, to check writes.
func (s *Server) Coils(addr, n int) []bool {
	checkRange(addr, n)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]bool(nil), s.bank.coils[addr:addr+n]...)
}

// SetBytes stores raw register bytes (two per register, high byte first, as
// on the wire) at register addr of a register area; an odd last byte is
// padded with 0.
func (s *Server) SetBytes(a Area, addr int, raw []byte) {
	words := make([]uint16, (len(raw)+1)/2)
	for i := range words {
		hi := raw[2*i]
		var lo byte
		if 2*i+1 < len(raw) {
			lo = raw[2*i+1]
		}
		words[i] = uint16(hi)<<8 | uint16(lo)
	}
	s.setWords(a, addr, words)
}

// SetFloat32 stores f at register addr (two registers) in the given order.
func (s *Server) SetFloat32(a Area, addr int, f float32, order mapping.Order) {
	s.SetUint32(a, addr, math.Float32bits(f), order)
}

// SetUint32 stores v at register addr (two registers) in the given order.
func (s *Server) SetUint32(a Area, addr int, v uint32, order mapping.Order) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	s.SetBytes(a, addr, wire(b[:], order))
}

// SetFloat64 stores f at register addr (four registers) in the given order.
func (s *Server) SetFloat64(a Area, addr int, f float64, order mapping.Order) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(f))
	s.SetBytes(a, addr, wire(b[:], order))
}

// SetString stores str at register addr, two characters per register,
// high byte first, padded with NUL to n registers (n = 0: just long enough).
func (s *Server) SetString(a Area, addr int, str string, n int) {
	if n == 0 {
		n = (len(str) + 1) / 2
	}
	raw := make([]byte, 2*n)
	copy(raw, str)
	s.SetBytes(a, addr, raw)
}

// wire lays out a big-endian value (A B C D …) as a device with order would.
func wire(be []byte, o mapping.Order) []byte {
	words := len(be) / 2
	out := make([]byte, len(be))
	for w := 0; w < words; w++ {
		src := w
		if o == mapping.OrderCDAB || o == mapping.OrderDCBA {
			src = words - 1 - w
		}
		hi, lo := be[2*src], be[2*src+1]
		if o == mapping.OrderBADC || o == mapping.OrderDCBA {
			hi, lo = lo, hi
		}
		out[2*w], out[2*w+1] = hi, lo
	}
	return out
}

// Reject makes the device answer exception 02 (illegal data address) to any
// read or write in area that touches an address in from..to (inclusive), to
// simulate holes in a device's register map.
func (s *Server) Reject(a Area, from, to int) {
	checkRange(from, to-from+1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bank.reject[a] = append(s.bank.reject[a], span{from, to})
}

// Silence makes the device leave unanswered any read or write in area that
// touches an address in from..to (inclusive), as a device that hangs on
// some registers does; Unsilence answers again.
func (s *Server) Silence(a Area, from, to int) {
	checkRange(from, to-from+1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bank.silent[a] = append(s.bank.silent[a], span{from, to})
}

// Unsilence answers every request again.
func (s *Server) Unsilence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a := range s.bank.silent {
		s.bank.silent[a] = nil
	}
}

// silenced reports whether the request PDU touches a silenced address.
func (s *Server) silenced(pdu []byte) bool {
	if len(pdu) < 5 {
		return false
	}
	var a Area
	switch pdu[0] {
	case fcReadCoils, fcWriteSingleCoil, fcWriteCoils:
		a = Coil
	case fcReadDiscrete:
		a = Discrete
	case fcReadInput:
		a = Input
	case fcReadHolding, fcWriteSingleHolding, fcWriteHoldings:
		a = Holding
	default:
		return false
	}
	addr, n := int(binary.BigEndian.Uint16(pdu[1:])), int(binary.BigEndian.Uint16(pdu[3:]))
	if pdu[0] == fcWriteSingleCoil || pdu[0] == fcWriteSingleHolding {
		n = 1
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return touches(s.bank.silent[a], addr, n)
}

// SetDelay delays every response by d, to simulate a slow device.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// SetUnitIDs makes the server answer only these unit IDs; requests to others
// get exception 0B (gateway target device failed to respond), as a Modbus
// TCP gateway answers for a serial device that is not there. No IDs: answer
// every unit ID (the default).
func (s *Server) SetUnitIDs(ids ...byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.units = nil
	if len(ids) > 0 {
		s.units = make(map[byte]bool, len(ids))
		for _, id := range ids {
			s.units[id] = true
		}
	}
}

// Unreject answers every address again: the refused ranges of Reject are
// forgotten (a firmware update that filled the holes).
func (s *Server) Unreject() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a := range s.bank.reject {
		s.bank.reject[a] = nil
	}
}
