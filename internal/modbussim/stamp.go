package modbussim

import (
	"encoding/binary"
	"time"
)

// stamps are the holding registers a benchmark reads to tell polls apart
// and to time them: see SetStamps.
type stamps struct {
	seq, clock int // addresses of two-register big-endian uint32s; -1: none
	n          uint32
}

// SetStamps makes holding registers seq..seq+1 count the reads that start
// at seq (a poll's sequence number, uint32 big-endian, from 1) and
// clock..clock+1 hold the low 32 bits of the Unix time in microseconds at
// which a read covering them is answered (uint32 big-endian): a sink that
// receives both can check every poll arrived once and how long after the
// device answered it did. -1 turns one off.
func (s *Server) SetStamps(seq, clock int) {
	s.mu.Lock()
	s.stamp = &stamps{seq: seq, clock: clock}
	s.mu.Unlock()
	s.stamped.Store(true)
}

// stampRead updates the stamps a holding-register read covers, before it
// is answered (called without s.mu).
func (s *Server) stampRead(data []byte) {
	if len(data) < 4 {
		return
	}
	addr := int(binary.BigEndian.Uint16(data))
	qty := int(binary.BigEndian.Uint16(data[2:]))
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stamp
	if st == nil {
		return
	}
	w := s.bank.words(Holding)
	if st.seq >= 0 && addr == st.seq && st.seq+1 < len(w) {
		st.n++
		w[st.seq], w[st.seq+1] = uint16(st.n>>16), uint16(st.n)
	}
	if st.clock >= 0 && addr <= st.clock && st.clock+1 < addr+qty && st.clock+1 < len(w) {
		us := uint32(time.Now().UnixMicro())
		w[st.clock], w[st.clock+1] = uint16(us>>16), uint16(us)
	}
}
