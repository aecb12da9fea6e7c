package modbussim

import (
	"math/rand/v2"
	"sync"
)

// FaultAnswer is how a faulty device answers a read.
type FaultAnswer uint8

const (
	// FaultException answers with exception Code, under the request's own
	// function code: a refusal, as Reject gives, but only as often as the
	// fault's Of/Every say (a device that is busy now and then).
	FaultException FaultAnswer = iota + 1
	// FaultWrongFunctionException answers with exception Code under the
	// function code of another read (3 and 4, 1 and 2 swapped): an answer
	// that does not belong to the request.
	FaultWrongFunctionException
	// FaultWrongFunctionReply answers a normal-looking reply of the right
	// length under the function code of another read.
	FaultWrongFunctionReply
)

// Fault makes the device misbehave on reads (function codes 1..4) of Area
// that touch an address in From..To (inclusive).
type Fault struct {
	Area     Area
	From, To int
	Answer   FaultAnswer
	// Code is the exception code sent; 0 means 02 (illegal data address).
	Code byte
	// Of and Every make the fault transient: of each block of Every reads
	// touching the range, Of (chosen at random, from Seed) get the fault
	// and the others the device's normal answer. Every 0: every read.
	Of, Every int
	// Seed seeds the choice, so that a test sees the same answers for the
	// same requests.
	Seed uint64
}

// faults are the injected faults, with their state.
type faults struct {
	mu   sync.Mutex
	list []*activeFault
}

type activeFault struct {
	Fault
	rng   *rand.Rand
	block []bool // the current block: true = fault; consumed from the front
}

// Inject adds a fault; Faults already injected stay. It panics on a range
// outside the bank (a test bug).
func (s *Server) Inject(f Fault) {
	checkRange(f.From, f.To-f.From+1)
	if f.Code == 0 {
		f.Code = ExceptionIllegalDataAddress
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.list = append(s.faults.list, &activeFault{Fault: f, rng: rand.New(rand.NewPCG(f.Seed, 0x5eed))})
}

// ClearFaults removes every injected fault: the device answers normally.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.list = nil
}

// Faulted counts the reads answered with an injected fault since New.
func (s *Server) Faulted() uint64 { return s.faulted.Load() }

// fault returns the fault that answers a read of n entries of a from addr,
// or nil for a normal answer. Every matching fault counts the read.
func (s *Server) fault(a Area, addr, n int) *Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	var hit *Fault
	for _, f := range s.faults.list {
		if f.Area != a || addr > f.To || addr+n-1 < f.From {
			continue
		}
		if f.Every <= 0 {
			hit = &f.Fault
			continue
		}
		if len(f.block) == 0 {
			f.block = make([]bool, f.Every)
			for i := 0; i < min(f.Of, f.Every); i++ {
				f.block[i] = true
			}
			f.rng.Shuffle(len(f.block), func(i, j int) { f.block[i], f.block[j] = f.block[j], f.block[i] })
		}
		on := f.block[0]
		f.block = f.block[1:]
		if on && hit == nil {
			hit = &f.Fault
		}
	}
	if hit != nil {
		s.faulted.Add(1)
	}
	return hit
}

// otherRead is the read function code a confused device answers with.
func otherRead(fc byte) byte {
	switch fc {
	case fcReadCoils:
		return fcReadDiscrete
	case fcReadDiscrete:
		return fcReadCoils
	case fcReadHolding:
		return fcReadInput
	}
	return fcReadHolding
}

// faultAnswer appends the faulty answer to a read of fc with n data bytes.
func faultAnswer(out []byte, f *Fault, fc byte, n int) []byte {
	switch f.Answer {
	case FaultWrongFunctionException:
		return exception(out, otherRead(fc), f.Code)
	case FaultWrongFunctionReply:
		out = append(out, otherRead(fc), byte(n))
		for range n {
			out = append(out, 0)
		}
		return out
	}
	return exception(out, fc, f.Code)
}
