package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/edged-gw/edged/southbound/serial"
)

// ProbeTarget is one device to read raw registers from, for installer
// tools: TCP ("host:port") or RTU (a serial port with its line settings).
type ProbeTarget struct {
	TCP     string
	RTU     string
	Mode    serial.Mode
	UnitID  int
	Timeout time.Duration
}

// ReadRegisters reads count registers of area (InputRegister or
// HoldingRegister) from address once, outside any bus scheduler: the
// caller must make sure nothing else uses a serial port meanwhile.
func ReadRegisters(ctx context.Context, tg ProbeTarget, area Area, address, count int) ([]uint16, error) {
	if area != InputRegister && area != HoldingRegister {
		return nil, fmt.Errorf("area %s: allowed are input_register and holding_register", area)
	}
	if count < 1 || count > 125 || address < 0 || address+count > 65536 {
		return nil, fmt.Errorf("read %d+%d: allowed are 1..125 registers within 0..65535", address, count)
	}
	if tg.Timeout <= 0 {
		tg.Timeout = DefaultTimeout
	}
	var cli client
	switch {
	case tg.TCP != "" && tg.RTU == "":
		addr, err := normalizeAddress(tg.TCP)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cli = newTCPClient(ctx, addr, byte(tg.UnitID), tg.Timeout)
	case tg.RTU != "" && tg.TCP == "":
		mode := tg.Mode.WithDefaults()
		if err := mode.Validate(); err != nil {
			return nil, err
		}
		line := serial.NewLine(tg.RTU, mode)
		defer line.Close()
		stop := context.AfterFunc(ctx, func() { line.Close() })
		defer stop()
		cli = newRTUClient(line, byte(tg.UnitID), tg.Timeout, 0)
	default:
		return nil, errors.New("give exactly one of a TCP address or a serial port")
	}
	defer cli.Close()
	var raw []byte
	var err error
	if area == InputRegister {
		raw, err = cli.ReadInputRegisters(uint16(address), uint16(count))
	} else {
		raw, err = cli.ReadHoldingRegisters(uint16(address), uint16(count))
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %d+%d: %w", area.short(), address, count, err)
	}
	words := make([]uint16, count)
	for i := range words {
		words[i] = binary.BigEndian.Uint16(raw[2*i:])
	}
	return words, nil
}

// FunctionCode is the read function of the area: 1 coils, 2 discrete
// inputs, 3 holding registers, 4 input registers.
func (a Area) FunctionCode() int {
	switch a {
	case Coil:
		return 1
	case DiscreteInput:
		return 2
	case InputRegister:
		return 4
	case HoldingRegister:
		return 3
	}
	return 0
}

// WireTime estimates how long the request takes on an RTU line in mode:
// the request and its answer plus the silence before each.
func (r Request) WireTime(mode serial.Mode) time.Duration {
	resp := 5 + 2*r.Count
	if r.Area.Bits() {
		resp = 5 + (r.Count+7)/8
	}
	return mode.WireTime(8+resp) + 2*mode.Silence()
}
