package modbus

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// refusingClient is a device (pure logic, for a property test) that
// refuses with exception 02 every read touching an address of refused.
type refusingClient struct {
	refused map[Area][]int
	buf     [250]byte
}

func (c *refusingClient) read(area Area, fc byte, address, quantity uint16, bytes int) ([]byte, error) {
	for _, a := range c.refused[area] {
		if a >= int(address) && a < int(address)+int(quantity) {
			return nil, &Exception{Function: fc, Code: 2}
		}
	}
	return c.buf[:bytes], nil
}
func (c *refusingClient) ReadCoils(a, n uint16) ([]byte, error) {
	return c.read(Coil, 1, a, n, (int(n)+7)/8)
}
func (c *refusingClient) ReadDiscreteInputs(a, n uint16) ([]byte, error) {
	return c.read(DiscreteInput, 2, a, n, (int(n)+7)/8)
}
func (c *refusingClient) ReadInputRegisters(a, n uint16) ([]byte, error) {
	return c.read(InputRegister, 4, a, n, 2*int(n))
}
func (c *refusingClient) ReadHoldingRegisters(a, n uint16) ([]byte, error) {
	return c.read(HoldingRegister, 3, a, n, 2*int(n))
}
func (c *refusingClient) WriteSingleCoil(uint16, bool) error       { return errors.ErrUnsupported }
func (c *refusingClient) WriteSingleRegister(uint16, uint16) error { return errors.ErrUnsupported }
func (c *refusingClient) WriteMultipleCoils(uint16, uint16, []byte) error {
	return errors.ErrUnsupported
}
func (c *refusingClient) WriteMultipleRegisters(uint16, []byte) error { return errors.ErrUnsupported }
func (c *refusingClient) Close() error                                { return nil }

// TestSavedPlanAlwaysLoads: whatever a device refuses, the plan file the
// learner saves is accepted by the loader of the next start, and gives the
// same plan. (A hole at address 0 once produced a file the loader called
// corrupt.)
func TestSavedPlanAlwaysLoads(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		lim := planLimits(t)
		tags := validTags(t, lim)
		if len(tags) == 0 {
			return
		}
		for i := range tags {
			tags[i].Spec.Name = tags[i].Name
		}
		cli := &refusingClient{refused: map[Area][]int{}}
		for range rapid.IntRange(0, 6).Draw(t, "refused registers") {
			i := rapid.IntRange(0, len(tags)-1).Draw(t, "near tag")
			a := max(0, tags[i].Address+rapid.IntRange(-2, tags[i].width()+1).Draw(t, "offset"))
			cli.refused[HoldingRegister] = append(cli.refused[HoldingRegister], a)
		}
		if rapid.Bool().Draw(t, "from address 0") { // the first tag at 0, refused
			shift := tags[0].Address
			for i := range tags {
				tags[i].Address -= shift
			}
			for i, a := range cli.refused[HoldingRegister] {
				cli.refused[HoldingRegister][i] = max(0, a-shift)
			}
			cli.refused[HoldingRegister] = append(cli.refused[HoldingRegister], 0)
		}
		name := "d" + rapid.StringMatching(`[a-z]{8}`).Draw(t, "name")
		d := Device{Name: name, UnitID: 1, MaxGap: lim.MaxGap, MaxRegisters: lim.MaxRegisters, MaxBits: lim.MaxBits}
		d.tags = tags
		d.dev.init(name, tags, lim, 0)
		d.inited = true
		d.setDataDir(dir, kindTCP)
		c := &d.dev
		c.store = d.dev.store
		c.start(slog.New(slog.DiscardHandler), cli, nil)
		for range 3 {
			if err := c.cycle(context.Background(), 0); err != nil {
				t.Fatalf("cycle: %v", err)
			}
		}
		learned := c.learned()
		if learned.Changes == 0 {
			return // nothing refused: nothing saved
		}
		saved := d.savedPlan(dir, kindTCP)
		if saved.Err != nil {
			t.Fatalf("the saved plan %s is refused: %v", filepath.Base(saved.Path), saved.Err)
		}
		if !slices.EqualFunc(saved.Learned.Plan, learned.Plan, func(a, b Request) bool { return keyOf(&a) == keyOf(&b) }) {
			t.Fatalf("loaded plan %v, learned %v", spans(saved.Learned.Plan), spans(learned.Plan))
		}
	})
}
