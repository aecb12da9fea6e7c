package modbus

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
)

func newTestClient(t *testing.T, addr string, timeout time.Duration) *tcpClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return newTCPClient(ctx, addr, 1, timeout)
}

func TestClientWrites(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	c := newTestClient(t, sim.Addr(), time.Second)
	for name, err := range map[string]error{
		"fc6":  c.WriteSingleRegister(10, 0xBEEF),
		"fc16": c.WriteMultipleRegisters(11, []byte{0x12, 0x34, 0x56, 0x78}),
		"fc5":  c.WriteSingleCoil(3, true),
		"fc15": c.WriteMultipleCoils(4, 3, []byte{0b101}),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := sim.Holding(10, 3); !slices.Equal(got, []uint16{0xBEEF, 0x1234, 0x5678}) {
		t.Errorf("holding = %04x", got)
	}
	if got := sim.Coils(3, 4); !slices.Equal(got, []bool{true, true, false, true}) {
		t.Errorf("coils = %v", got)
	}
}

func TestClientException(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.Reject(modbussim.Input, 5, 5)
	c := newTestClient(t, sim.Addr(), time.Second)
	_, err := c.ReadInputRegisters(0, 10)
	var ex *Exception
	if !errors.As(err, &ex) || ex.Code != 2 || ex.Function != 4 {
		t.Fatalf("err = %#v, want exception 02 to function 4", err)
	}
	if got := ex.Error(); got != "modbus exception 02 (illegal data address)" {
		t.Errorf("Error() = %q", got)
	}
	if !refused(err) || refused(&Exception{Code: 0x0B}) || refused(context.DeadlineExceeded) {
		t.Error("refused() misclassifies")
	}
	// An exception is an answer: the connection stays up.
	if _, err := c.ReadInputRegisters(0, 5); err != nil {
		t.Fatal(err)
	}
}

// TestClientLateAnswer: after a timeout the late answer must not be taken
// for the next request's (the client drops the connection on errors).
func TestClientLateAnswer(t *testing.T) {
	sim := startSim(t, "127.0.0.1:0")
	sim.SetHolding(0, 1, 2)
	c := newTestClient(t, sim.Addr(), 150*time.Millisecond)
	sim.SetDelay(300 * time.Millisecond)
	if _, err := c.ReadHoldingRegisters(0, 1); err == nil {
		t.Fatal("no timeout")
	}
	sim.SetDelay(0)
	got, err := c.ReadHoldingRegisters(1, 1)
	if err != nil || !slices.Equal(got, []byte{0, 2}) {
		t.Fatalf("after a timeout: % x, %v; want 00 02", got, err)
	}
}
