package modbus

import (
	"fmt"

	"github.com/edged-gw/edged/configs"
)

var (
	_ configs.Warner = (*TCP)(nil)
	_ configs.Warner = (*RTU)(nil)
)

// modiconRanges are the 1-based register numbers of Modicon's convention,
// which manuals print and edged does not use: holding register 40001 is
// address 0 on the wire, input register 30001 is address 0.
var modiconRanges = []struct {
	area  Area
	first int // the number of address 0
	digit string
}{
	{HoldingRegister, 40001, "4"},
	{InputRegister, 30001, "3"},
}

// Warnings implements configs.Warner: tags whose address looks like a
// 1-based Modicon number (holding 40001..49999, input 30001..39999), one
// warning per device and area naming the likely 0-based address. A device
// with a tag at 40000 (30000) or beyond 49999 (39999) in that area numbers
// its registers that high for real (SunSpec starts at 40000) and gets none.
// Valid after a successful Init.
func (d *Device) Warnings() []error {
	keys := tagKeys{d.nMap} // d.tags: the map's tags, then the inline ones
	var out []error
	for _, r := range modiconRanges {
		last := r.first + 9998
		first, n, real := -1, 0, false
		for i := range d.tags {
			t := &d.tags[i]
			switch {
			case t.Area != r.area:
			case t.Address >= r.first && t.Address <= last:
				if first < 0 {
					first = i
				}
				n++
			case t.Address == r.first-1 || t.Address > last:
				real = true
			}
		}
		if first < 0 || real {
			continue
		}
		t := &d.tags[first]
		more := ""
		if n > 1 {
			more = fmt.Sprintf(" and %d more %s tags at %d..%d", n-1, r.area, r.first, last)
		}
		out = append(out, keys.err(first, "address",
			"%s%s: address = %d looks like a 1-based register number (%sxxxx = %s); edged wants the 0-based address sent on the wire, "+
				"probably address = %d (%d - %d). If the device's manual gives %d as the 0-based address, ignore this",
			t.where(keys.index(first)), more, t.Address, r.digit, r.area, t.Address-r.first, t.Address, r.first, t.Address))
	}
	return out
}
