package modbussim

import (
	"bytes"
	"io"
	"testing"
)

// FuzzServe feeds arbitrary bytes to a connection's read loop: it must end
// with an error or EOF, never panic, and every response must be a
// well-formed MBAP frame.
func FuzzServe(f *testing.F) {
	f.Add(frame(1, 1, 3, 0, 0, 0, 2))
	f.Add(frame(2, 1, 1, 0xFF, 0xFF, 0, 1))
	f.Add(append(frame(3, 1, 16, 0, 0, 0, 1, 2, 0xAB, 0xCD), frame(4, 1, 15, 0, 0, 0, 3, 1, 5)...))
	f.Add(frame(5, 1, 5, 0, 1, 0xFF, 0))
	f.Add([]byte{0, 1, 0, 0, 0, 2, 1})
	f.Add([]byte{0, 0, 0, 0, 0xFF, 0xFF})
	s := New()
	s.Reject(Holding, 100, 200)
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		err := s.serve(rw{bytes.NewReader(in), &out}, nil)
		if err == nil {
			t.Fatal("serve returned nil at the end of input")
		}
		buf := make([]byte, maxADU)
		for out.Len() > 0 {
			adu, err := readFrame(&out, buf)
			if err != nil {
				t.Fatalf("bad response frame: %v", err)
			}
			if len(adu) < mbapLen+2 {
				t.Fatalf("response without PDU: % x", adu)
			}
		}
	})
}

type rw struct {
	io.Reader
	io.Writer
}
