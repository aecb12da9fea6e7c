package modbussim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goburrow/modbus"

	"github.com/edged-gw/edged/mapping"
)

func start(t *testing.T) *Server {
	t.Helper()
	s := New()
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t *testing.T, addr string, unit byte) modbus.Client {
	t.Helper()
	h := modbus.NewTCPClientHandler(addr)
	h.Timeout = 2 * time.Second
	h.SlaveId = unit
	if err := h.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return modbus.NewClient(h)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// frame builds a request ADU.
func frame(tid uint16, unit byte, pdu ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tid)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(1+len(pdu)))
	b = append(b, unit)
	return append(b, pdu...)
}

func readResp(t *testing.T, c net.Conn) []byte {
	t.Helper()
	buf := make([]byte, maxADU)
	adu, err := readFrame(c, buf)
	if err != nil {
		t.Fatal(err)
	}
	return adu
}

func TestReadAndWrite(t *testing.T) {
	s := start(t)
	s.SetHolding(100, 1, 2, 0xFFFF)
	s.SetInput(65534, 7, 8)
	s.SetCoil(10, true, false, true, true, false, false, false, false, true)
	s.SetDiscrete(0, false, true)
	c := client(t, s.Addr(), 1)

	check := func(name string, got []byte, err error, want []byte) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s = % x, want % x", name, got, want)
		}
	}
	got, err := c.ReadHoldingRegisters(100, 3)
	check("holding", got, err, []byte{0, 1, 0, 2, 0xFF, 0xFF})
	got, err = c.ReadInputRegisters(65534, 2)
	check("input at the top", got, err, []byte{0, 7, 0, 8})
	got, err = c.ReadCoils(10, 9)
	check("coils", got, err, []byte{0b0000_1101, 0b1})
	got, err = c.ReadDiscreteInputs(0, 2)
	check("discrete", got, err, []byte{0b10})

	_, err = c.WriteSingleRegister(5, 0xBEEF)
	check("fc6", nil, err, nil)
	_, err = c.WriteMultipleRegisters(6, 2, []byte{0, 1, 0, 2})
	check("fc16", nil, err, nil)
	if h := s.Holding(5, 3); !slices.Equal(h, []uint16{0xBEEF, 1, 2}) {
		t.Fatalf("holding after writes = %v", h)
	}
	_, err = c.WriteSingleCoil(0, 0xFF00)
	check("fc5", nil, err, nil)
	_, err = c.WriteMultipleCoils(1, 10, []byte{0b0000_0011, 0b10})
	check("fc15", nil, err, nil)
	want := []bool{true, true, true, false, false, false, false, false, false, false, true}
	if got := s.Coils(0, 11); !slices.Equal(got, want) {
		t.Fatalf("coils after writes = %v, want %v", got, want)
	}
	if n := s.Requests(); n != 8 {
		t.Fatalf("Requests() = %d, want 8", n)
	}
}

func TestExceptions(t *testing.T) {
	s := start(t)
	s.Reject(Holding, 10, 19)
	c := client(t, s.Addr(), 1)
	tests := []struct {
		name string
		call func() ([]byte, error)
		code byte
	}{
		{"rejected start", func() ([]byte, error) { return c.ReadHoldingRegisters(10, 1) }, 2},
		{"reads into a rejected range", func() ([]byte, error) { return c.ReadHoldingRegisters(0, 11) }, 2},
		{"write into a rejected range", func() ([]byte, error) { return c.WriteSingleRegister(19, 1) }, 2},
		{"past the end", func() ([]byte, error) { return c.ReadInputRegisters(65535, 2) }, 2},
		{"coils past the end", func() ([]byte, error) { return c.ReadCoils(65535, 2) }, 2},
		{"unknown function", func() ([]byte, error) { return c.ReadFIFOQueue(0) }, 1},
		{"mask write unsupported", func() ([]byte, error) { return c.MaskWriteRegister(0, 1, 2) }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.call()
			var me *modbus.ModbusError
			if !errors.As(err, &me) || me.ExceptionCode != tt.code {
				t.Fatalf("err = %v, want exception %d", err, tt.code)
			}
		})
	}
	if _, err := c.ReadHoldingRegisters(20, 1); err != nil {
		t.Fatalf("just after the rejected range: %v", err)
	}
}

func TestRawExceptions(t *testing.T) {
	s := start(t)
	c := dial(t, s.Addr())
	tests := []struct {
		name string
		pdu  []byte
		want []byte // response PDU
	}{
		{"read quantity 0", []byte{3, 0, 0, 0, 0}, []byte{0x83, 3}},
		{"read quantity 126", []byte{4, 0, 0, 0, 126}, []byte{0x84, 3}},
		{"coils quantity 2001", []byte{1, 0, 0, 0x07, 0xD1}, []byte{0x81, 3}},
		{"short read", []byte{3, 0, 0}, []byte{0x83, 3}},
		{"long read", []byte{3, 0, 0, 0, 1, 9}, []byte{0x83, 3}},
		{"coil value 0x1234", []byte{5, 0, 0, 0x12, 0x34}, []byte{0x85, 3}},
		{"fc16 byte count mismatch", []byte{16, 0, 0, 0, 2, 2, 0, 1}, []byte{0x90, 3}},
		{"fc15 short data", []byte{15, 0, 0, 0, 9, 2, 1}, []byte{0x8F, 3}},
		{"function 0x2B", []byte{0x2B, 14, 1, 0}, []byte{0xAB, 1}},
		{"read 2000 coils", []byte{1, 0, 0, 0x07, 0xD0}, append([]byte{1, 250}, make([]byte, 250)...)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Write(frame(uint16(i), 9, tt.pdu...)); err != nil {
				t.Fatal(err)
			}
			adu := readResp(t, c)
			if binary.BigEndian.Uint16(adu) != uint16(i) || adu[6] != 9 {
				t.Fatalf("header % x does not echo transaction %d unit 9", adu[:7], i)
			}
			if !bytes.Equal(adu[7:], tt.want) {
				t.Fatalf("pdu = % x, want % x", adu[7:], tt.want)
			}
		})
	}
}

func TestUnitIDs(t *testing.T) {
	s := start(t)
	s.SetUnitIDs(3)
	if _, err := client(t, s.Addr(), 3).ReadHoldingRegisters(0, 1); err != nil {
		t.Fatalf("unit 3: %v", err)
	}
	_, err := client(t, s.Addr(), 4).ReadHoldingRegisters(0, 1)
	var me *modbus.ModbusError
	if !errors.As(err, &me) || me.ExceptionCode != ExceptionGatewayNoResponse {
		t.Fatalf("unit 4: err = %v, want exception 0B", err)
	}
	s.SetUnitIDs()
	if _, err := client(t, s.Addr(), 4).ReadHoldingRegisters(0, 1); err != nil {
		t.Fatalf("unit 4 after SetUnitIDs(): %v", err)
	}
}

func TestPipelined(t *testing.T) {
	s := start(t)
	s.SetHolding(0, 10, 11, 12)
	c := dial(t, s.Addr())
	var batch []byte
	for i := range 3 {
		batch = append(batch, frame(uint16(100+i), 1, 3, 0, byte(i), 0, 1)...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		adu := readResp(t, c)
		if tid := binary.BigEndian.Uint16(adu); tid != uint16(100+i) {
			t.Fatalf("response %d has transaction %d", i, tid)
		}
		if got := adu[len(adu)-1]; got != byte(10+i) {
			t.Fatalf("response %d value %d, want %d", i, got, 10+i)
		}
	}
}

func TestMalformedClosesOnlyThatConnection(t *testing.T) {
	s := start(t)
	for _, bad := range [][]byte{
		{0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1}, // protocol id 1
		{0, 1, 0, 0, 0, 1, 1},                // length 1: no function code
		{0, 1, 0, 0, 0x01, 0x00, 1, 3},       // length 256
	} {
		c := dial(t, s.Addr())
		if _, err := c.Write(bad); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 10)); err != io.EOF {
			t.Fatalf("% x: read %d bytes, err %v; want the connection closed", bad, n, err)
		}
	}
	if _, err := client(t, s.Addr(), 1).ReadHoldingRegisters(0, 1); err != nil {
		t.Fatalf("server stopped serving after malformed frames: %v", err)
	}
}

func TestManyConnections(t *testing.T) {
	s := start(t)
	s.SetInput(0, 42)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		c := client(t, s.Addr(), 1)
		wg.Go(func() {
			for range 50 {
				got, err := c.ReadInputRegisters(0, 1)
				if err != nil || got[1] != 42 {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent read: %v", err)
	}
	if n := s.Requests(); n != 32*50 {
		t.Fatalf("Requests() = %d, want %d", n, 32*50)
	}
}

func TestCloseAndListenAgain(t *testing.T) {
	s := start(t)
	s.SetHolding(7, 77)
	addr := s.Addr()
	c := dial(t, addr)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Addr() != "" {
		t.Fatalf("Addr() after Close = %q", s.Addr())
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
	if err := s.Listen(addr); err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	if err := s.Listen(addr); err == nil {
		t.Fatal("second Listen while listening succeeded")
	}
	got, err := client(t, addr, 1).ReadHoldingRegisters(7, 1)
	if err != nil || got[1] != 77 {
		t.Fatalf("after listening again: % x, %v", got, err)
	}
}

func TestDelayAndCloseDuringDelay(t *testing.T) {
	s := start(t)
	s.SetDelay(100 * time.Millisecond)
	c := client(t, s.Addr(), 1)
	t0 := time.Now()
	if _, err := c.ReadHoldingRegisters(0, 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 100*time.Millisecond {
		t.Fatalf("answered after %v, want ≥ 100ms", d)
	}
	s.SetDelay(time.Hour)
	go c.ReadHoldingRegisters(0, 1)
	deadline := time.Now().Add(5 * time.Second)
	for s.Requests() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("second request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	t0 = time.Now()
	s.Close()
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Close took %v while a response was delayed", d)
	}
}

func TestValueHelpers(t *testing.T) {
	s := New()
	const f = float32(-12.5) // 0xC148_0000
	for _, tt := range []struct {
		order mapping.Order
		want  []uint16
	}{
		{mapping.OrderABCD, []uint16{0xC148, 0x0000}},
		{mapping.OrderCDAB, []uint16{0x0000, 0xC148}},
		{mapping.OrderBADC, []uint16{0x48C1, 0x0000}},
		{mapping.OrderDCBA, []uint16{0x0000, 0x48C1}},
	} {
		s.SetFloat32(Holding, 0, f, tt.order)
		if got := s.Holding(0, 2); !slices.Equal(got, tt.want) {
			t.Errorf("SetFloat32 %s = %04x, want %04x", tt.order, got, tt.want)
		}
	}
	s.SetFloat64(Holding, 10, math.Pi, mapping.OrderABCD)
	if got := s.Holding(10, 4); !slices.Equal(got, []uint16{0x4009, 0x21FB, 0x5444, 0x2D18}) {
		t.Errorf("SetFloat64 = %04x", got)
	}
	s.SetString(Holding, 20, "ABC", 3)
	if got := s.Holding(20, 3); !slices.Equal(got, []uint16{0x4142, 0x4300, 0}) {
		t.Errorf("SetString = %04x", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("SetHolding past the end did not panic")
		}
	}()
	s.SetHolding(65535, 1, 2)
}

// TestFaults: injected faults answer reads of their range as configured;
// a transient fault hits exactly Of of each Every reads; other ranges and
// a cleared server answer normally.
func TestFaults(t *testing.T) {
	s := start(t)
	s.SetHolding(0, 1, 2, 3)
	s.Inject(Fault{Area: Holding, From: 100, To: 100, Answer: FaultWrongFunctionException})
	s.Inject(Fault{Area: Input, From: 0, To: 9, Answer: FaultWrongFunctionReply})
	s.Inject(Fault{Area: Holding, From: 0, To: 9, Answer: FaultException, Of: 2, Every: 5, Seed: 1})
	c := dial(t, s.Addr())
	ask := func(pdu ...byte) []byte {
		t.Helper()
		if _, err := c.Write(frame(1, 1, pdu...)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, maxADU)
		resp, err := readFrame(c, buf)
		if err != nil {
			t.Fatal(err)
		}
		return resp[mbapLen:]
	}
	if got := ask(fcReadHolding, 0, 99, 0, 2); !bytes.Equal(got, []byte{0x84, 2}) {
		t.Errorf("wrong-function exception: % x, want 84 02", got)
	}
	if got := ask(fcReadInput, 0, 0, 0, 2); !bytes.Equal(got, []byte{fcReadHolding, 4, 0, 0, 0, 0}) {
		t.Errorf("wrong-function reply: % x, want 03 04 00 00 00 00", got)
	}
	refused := 0
	for range 20 {
		got := ask(fcReadHolding, 0, 0, 0, 3)
		switch {
		case bytes.Equal(got, []byte{0x83, 2}):
			refused++
		case !bytes.Equal(got, []byte{3, 6, 0, 1, 0, 2, 0, 3}):
			t.Fatalf("transient fault: answer % x", got)
		}
	}
	if refused != 8 {
		t.Errorf("%d of 20 reads refused, want 2 of each 5 = 8", refused)
	}
	if got := ask(fcReadHolding, 0, 10, 0, 1); !bytes.Equal(got, []byte{3, 2, 0, 0}) {
		t.Errorf("outside the faults: % x", got)
	}
	if s.Faulted() != 10 {
		t.Errorf("Faulted() = %d, want 10", s.Faulted())
	}
	s.ClearFaults()
	if got := ask(fcReadHolding, 0, 99, 0, 2); !bytes.Equal(got, []byte{3, 4, 0, 0, 0, 0}) {
		t.Errorf("after ClearFaults: % x", got)
	}
}

// SetStamps: the sequence number counts the reads that start at it, the
// clock holds when a read covering it was answered; other reads change
// neither.
func TestStamps(t *testing.T) {
	s := start(t)
	s.SetStamps(0, 10)
	c := client(t, s.Addr(), 1)
	u32 := func(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
	for want := uint32(1); want <= 3; want++ {
		b, err := c.ReadHoldingRegisters(0, 4)
		if err != nil {
			t.Fatal(err)
		}
		if got := u32(b); got != want {
			t.Errorf("seq = %d, want %d", got, want)
		}
	}
	before := uint32(time.Now().UnixMicro())
	b, err := c.ReadHoldingRegisters(8, 4) // covers the clock, not the seq
	if err != nil {
		t.Fatal(err)
	}
	after := uint32(time.Now().UnixMicro())
	if clock := u32(b[4:]); clock-before > after-before {
		t.Errorf("clock %d not within [%d, %d]", clock, before, after)
	}
	if b, _ := c.ReadHoldingRegisters(1, 1); binary.BigEndian.Uint16(b) != 3 {
		t.Errorf("a read inside the seq counted: low word %d, want 3", binary.BigEndian.Uint16(b))
	}
}
