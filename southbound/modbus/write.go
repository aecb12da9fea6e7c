package modbus

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/edged-gw/edged/mapping"
)

// writeOp is one checked and encoded write, ready for the wire.
type writeOp struct {
	tag  int
	fc   byte
	raw  []byte // register bytes in wire order (6, 16)
	mask uint16 // a bit tag: read-modify-write of these bits
	on   bool   // coils and bit tags
}

// PrepareWrite implements host.WritePreparer: the host has applied the
// tag's write policy; this encodes v for the wire without I/O, so an
// unencodable write never reaches the device, and returns the write for
// the lane to run between polls.
func (d *Device) PrepareWrite(k int, v mapping.Value) (func(context.Context) error, error) {
	op, err := d.dev.encodeWrite(k, v)
	if err != nil {
		return nil, err
	}
	return func(context.Context) error { return d.dev.write(op) }, nil
}

// encodeWrite encodes v for tag k.
func (c *core) encodeWrite(k int, v mapping.Value) (writeOp, error) {
	t := &c.tags[k]
	name := t.Name
	op := writeOp{tag: k, fc: t.writeFunction()}
	enc, err := t.Encode(v, nil)
	if err != nil {
		return writeOp{}, fmt.Errorf("device %q: write %q (%s): %w", c.name, name, t.loc(), err)
	}
	switch {
	case t.Area == Coil:
		op.on = binary.BigEndian.Uint16(enc) != 0
	case t.Bit != nil:
		on, err := t.Encode(mapping.Value{Kind: mapping.KindBool, Bool: true}, nil)
		if err != nil {
			return writeOp{}, fmt.Errorf("device %q: write %q: %w", c.name, name, err)
		}
		op.mask = binary.BigEndian.Uint16(on)
		op.on = binary.BigEndian.Uint16(enc) != 0
	default:
		op.raw = enc
	}
	return op, nil
}

// write sends a prepared write: function 5 or 15 for a coil; 6 or 16 for
// registers; a bit tag reads its holding register, changes the bit and
// writes the register back (the bus is ours meanwhile, but the device's
// own logic could change other bits in between: Modbus has no atomic bit
// write except function 22, which few devices support).
func (c *core) write(op writeOp) error {
	t := &c.tags[op.tag]
	addr := uint16(t.Address)
	var err error
	switch {
	case t.Area == Coil && op.fc == 15:
		var b byte
		if op.on {
			b = 1
		}
		err = c.cli.WriteMultipleCoils(addr, 1, []byte{b})
	case t.Area == Coil:
		err = c.cli.WriteSingleCoil(addr, op.on)
	default:
		raw := op.raw
		if op.mask != 0 {
			var cur []byte
			if cur, err = c.cli.ReadHoldingRegisters(addr, 1); err != nil {
				return fmt.Errorf("device %q: write %q (%s): read the register to change one bit: %w", c.name, t.Name, t.loc(), err)
			}
			w := binary.BigEndian.Uint16(cur) &^ op.mask
			if op.on {
				w |= op.mask
			}
			raw = binary.BigEndian.AppendUint16(nil, w)
		}
		if op.fc == 6 {
			err = c.cli.WriteSingleRegister(addr, binary.BigEndian.Uint16(raw))
		} else {
			err = c.cli.WriteMultipleRegisters(addr, raw)
		}
	}
	if err != nil {
		return fmt.Errorf("device %q: write %q (%s, function %d): %w", c.name, t.Name, t.loc(), op.fc, err)
	}
	c.log.Info("tag written", "tag", t.Name, "function", op.fc)
	return nil
}
