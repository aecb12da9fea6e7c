package modbus

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
)

// Tag is one value read from a Modbus device: where it lives (area and
// address) and how its raw value becomes the published one (mapping.Spec,
// whose keys sit next to area and address in the same TOML table).
type Tag struct {
	mapping.Spec
	Area Area `toml:"area"`
	// Address is 0-based, as sent on the wire: what vendor manuals call
	// holding register 40001 (or 400001) is address 0.
	Address int `toml:"address"`
	// WriteFunction is the Modbus function a write uses: 5 (default) or 15
	// for a coil; 6 (default for one register) or 16 (default for more) for
	// a holding register. Many inverters accept only 6; some devices
	// only 16. 0 means the default.
	WriteFunction int `toml:"write_function"`
}

// writeFunction is the function code a write of the tag uses.
func (t *Tag) writeFunction() byte {
	switch {
	case t.WriteFunction != 0:
		return byte(t.WriteFunction)
	case t.Area == Coil:
		return 5
	case t.width() == 1:
		return 6
	}
	return 16
}

// DeviceMap is what a device map file (maps/NAME.toml) decodes into: the
// tags of one device model, as [[tag]] tables.
type DeviceMap struct {
	Tags []Tag `toml:"tag"`
}

// where names the tag in error messages: `tag "flow" (holding_register
// 100)`, or, without a name, by its key as the error's key path counts it
// from 0 (n: its index in the map file or the device table):
// `tag[3] (holding_register 100)`.
func (t *Tag) where(n int) string {
	if t.Name == "" {
		return fmt.Sprintf("tag[%d] (%s)", n, t.loc())
	}
	return fmt.Sprintf("tag %q (%s)", t.Name, t.loc())
}

// loc is where the tag lives: "holding_register 100".
func (t *Tag) loc() string {
	if !t.Area.valid() {
		return fmt.Sprintf("address %d", t.Address)
	}
	return fmt.Sprintf("%s %d", t.Area, t.Address)
}

// check validates one tag for a device whose reads are at most maxRegisters
// long. It calls Spec.Init, which fills the spec's defaults. A problem comes
// with the tag's key it is about ("area", "write_function"), or "" when no
// single key is at fault.
func (t *Tag) check(maxRegisters int) (key string, err error) {
	if err := t.Spec.Init(); err != nil {
		var ce *configs.Error
		if errors.As(err, &ce) {
			return ce.Key, errors.New(ce.Msg) // the caller keys it to the tag
		}
		return "", err
	}
	if !t.Area.valid() {
		return "area", fmt.Errorf("area is missing: allowed are %s", AreaNames)
	}
	if t.Area.Bits() {
		if t.Type != mapping.TypeBool {
			return "type", fmt.Errorf("type = %q is not allowed in area %s: coils and discrete inputs are single bits, "+
				"so the type must be \"bool\"; numbers live in input_register or holding_register", t.Type, t.Area)
		}
		if t.Bit != nil {
			return "bit", fmt.Errorf("bit is not allowed in area %s: a %s is already a single bit; "+
				"bit selects one bit of a register in input_register or holding_register", t.Area, t.Area)
		}
	}
	if t.Address < 0 || t.Address > 65535 {
		return "address", fmt.Errorf("address = %d: allowed are 0..65535 (0-based, as on the wire: register 40001 is address 0)", t.Address)
	}
	if t.end() > 65535 {
		return "address", fmt.Errorf("address = %d with %d registers ends at %d: the last register must be at most 65535, so address is at most %d",
			t.Address, t.width(), t.end(), 65536-t.width())
	}
	if key, err := t.checkWrite(); err != nil {
		return key, err
	}
	if !t.Area.Bits() && t.width() > maxRegisters {
		// The tag's size and the device's max_registers together.
		return "", fmt.Errorf("needs %d registers but max_registers = %d: a tag is read in one request; raise max_registers (up to 125) or shorten the tag",
			t.width(), maxRegisters)
	}
	return "", nil
}

// tagKeys names the keys of a device's tags in errors: the first mapCount
// tags came from the map file, where tags[i] is [[tag]] number i; the rest
// are the device's [[device.tag]] tables.
type tagKeys struct{ mapCount int }

// index is the index of tags[i] in its own list (the map's or the table's).
func (k tagKeys) index(i int) int {
	if i < k.mapCount {
		return i
	}
	return i - k.mapCount
}

// err is a problem with key (or the whole tag, for "") of tags[i].
func (k tagKeys) err(i int, key string, format string, args ...any) *configs.Error {
	return configs.TagErrorf(i, k.mapCount, key, format, args...)
}

// checkTags validates each tag and the set: unique names and no partial
// overlaps of register tags. mapCount tags at the front came from the
// device map file mapName. It returns every problem found, joined, each a
// *configs.Error keyed to the tag's key in the map file or device table.
func checkTags(tags []Tag, mapCount int, mapName string, maxRegisters int) error {
	var errs []error
	keys := tagKeys{mapCount}
	source := func(i int) string {
		if i < mapCount {
			return fmt.Sprintf("map %q", mapName)
		}
		return "the device's inline tags"
	}
	seen := make(map[string]int, len(tags))
	var ok []int // tags that passed their own checks
	for i := range tags {
		t := &tags[i]
		if j, dup := seen[t.Name]; dup && t.Name != "" {
			if j < mapCount && i >= mapCount {
				errs = append(errs, keys.err(i, "name", "tag %q is defined in map %q and again inline in the device: "+
					"inline tags add to a map's tags but cannot replace them; give the inline tag another name", t.Name, mapName))
			} else {
				errs = append(errs, keys.err(i, "name", "tag %q is defined twice in %s (%s and %s): tag names must be unique in a device",
					t.Name, source(i), tags[j].loc(), t.loc()))
			}
		} else {
			seen[t.Name] = i
		}
		if key, err := t.check(maxRegisters); err != nil {
			errs = append(errs, keys.err(i, key, "%s: %v", t.where(keys.index(i)), err))
			continue
		}
		ok = append(ok, i)
	}
	errs = append(errs, checkOverlaps(tags, ok, keys))
	return errors.Join(errs...)
}

// checkOverlaps refuses register tags that share some but not all of their
// registers: two views of the same registers (raw and scaled) are fine, as
// is a bit tag inside any register, but a tag straddling another one is
// almost always an address typo. Each problem is keyed to the address of
// the tag that starts later.
func checkOverlaps(tags []Tag, ok []int, keys tagKeys) error {
	var idx []int
	for _, i := range ok {
		if !tags[i].Area.Bits() && tags[i].Bit == nil {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		return cmp.Or(cmp.Compare(tags[a].Area, tags[b].Area),
			cmp.Compare(tags[a].Address, tags[b].Address),
			cmp.Compare(tags[a].end(), tags[b].end()),
			cmp.Compare(a, b))
	})
	// Sorted by start, the tags of a valid set form runs of identical
	// ranges, each run after the previous one; a tag that overlaps any
	// earlier tag without matching it overlaps the latest run.
	var errs []error
	last := -1
	for _, i := range idx {
		t := &tags[i]
		if last >= 0 {
			p := &tags[last]
			if p.Area == t.Area && t.Address <= p.end() {
				if t.Address == p.Address && t.end() == p.end() {
					continue
				}
				errs = append(errs, keys.err(i, "address", "tag %q (%s %d..%d) overlaps tag %q (%s %d..%d): "+
					"tags may share registers only if they cover exactly the same ones (a tag with bit = N may sit in any register); "+
					"check the addresses and types", t.Name, t.Area, t.Address, t.end(), p.Name, p.Area, p.Address, p.end()))
				continue
			}
		}
		last = i
	}
	return errors.Join(errs...)
}

// checkWrite validates writable and write_function; a problem comes with
// the key it is about.
func (t *Tag) checkWrite() (key string, err error) {
	if t.Writable && (t.Area == DiscreteInput || t.Area == InputRegister) {
		return "writable", fmt.Errorf("writable = true in area %s: discrete inputs and input registers are read-only; "+
			"only coil and holding_register tags can be written", t.Area)
	}
	switch f := t.WriteFunction; {
	case f == 0:
	case t.Area == Coil && (f == 5 || f == 15):
	case t.Area == HoldingRegister && f == 16:
	case t.Area == HoldingRegister && f == 6:
		if t.width() != 1 {
			return "write_function", fmt.Errorf("write_function = 6 writes one register but a %s takes %d: use 16 (or leave write_function out)", t.Type, t.width())
		}
	case t.Area == Coil:
		return "write_function", fmt.Errorf("write_function = %d: allowed for a coil are 5 (write single coil, default) and 15 (write multiple coils)", f)
	case t.Area == HoldingRegister:
		return "write_function", fmt.Errorf("write_function = %d: allowed for a holding register are 6 (write single register, default for one register) "+
			"and 16 (write multiple registers, default for more)", f)
	default:
		return "write_function", fmt.Errorf("write_function = %d: area %s cannot be written; write_function applies to coil and holding_register", f, t.Area)
	}
	if t.Writable && t.Area == HoldingRegister && t.width() > 123 {
		return "writable", fmt.Errorf("writable = true but the tag takes %d registers: one write carries at most 123", t.width())
	}
	return "", nil
}

// settingErr is a problem with the device setting key.

// checkLimits checks the request settings TCP and RTU devices share.
func checkLimits(retries, maxRegisters, maxBits, maxGap, defaultGap int) []error {
	var errs []error
	if retries < 0 || retries > 10 {
		errs = append(errs, configs.Errorf("retries", "retries = %d: allowed are 0..10 extra attempts per request (default %d)", retries, DefaultRetries))
	}
	if maxRegisters < 1 || maxRegisters > 125 {
		errs = append(errs, configs.Errorf("max_registers", "max_registers = %d: allowed are 1..125 registers per read (Modbus allows at most 125)", maxRegisters))
	}
	if maxBits < 1 || maxBits > 2000 {
		errs = append(errs, configs.Errorf("max_bits", "max_bits = %d: allowed are 1..2000 coils or discrete inputs per read (Modbus allows at most 2000)", maxBits))
	}
	if maxGap < 0 || maxGap > 125 {
		errs = append(errs, configs.Errorf("max_gap", "max_gap = %d: allowed are 0..125 unused registers a merged read may span (default %d)", maxGap, defaultGap))
	}
	return errs
}

// mergeTags puts a device's map tags and inline tags together (map first)
// and checks them as one set.
func mergeTags(fromMap, inline []Tag, mapName string, maxRegisters int) ([]Tag, error) {
	tags := make([]Tag, 0, len(fromMap)+len(inline))
	tags = append(append(tags, fromMap...), inline...)
	if err := checkTags(tags, len(fromMap), mapName, maxRegisters); err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, errors.New("no tags: add [[device.tag]] tables or a map = \"name\" whose maps/name.toml has [[tag]] tables")
	}
	return tags, nil
}
