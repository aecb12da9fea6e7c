package modbus

import "slices"

// Limits bound the read requests Plan makes.
type Limits struct {
	// MaxGap is how many unused registers a request may read through to
	// save a request. In the bit areas (coils, discrete inputs) it counts
	// 16 bits per register: the same bytes on the wire.
	MaxGap int
	// MaxRegisters is the most registers one read may ask for (Modbus: 125).
	MaxRegisters int
	// MaxBits is the most coils or discrete inputs one read may ask for
	// (Modbus: 2000).
	MaxBits int
}

// bitsPerRegister scales MaxGap for the bit areas.
const bitsPerRegister = 16

// Request is one read: Count registers (or bits) of Area from Start, and
// the tags (indexes into the slice given to Plan) it carries, ordered by
// address.
type Request struct {
	Area  Area
	Start int
	Count int
	Tags  []int
}

// Plan merges the tags into the fewest reads such that no read asks for
// more than the area's limit, none reads through more than MaxGap unused
// registers in a row, and no tag is split across reads. Every tag is in
// exactly one request. Requests are ordered by area, then start address.
//
// A tag wider than the limit (which TCP.Init refuses) gets a request of its
// own that exceeds the limit.
//
// For tags TCP.Init accepts, no two requests of an area overlap, so each
// register is read once per poll.
//
// Plan is optimal. Taking the tags of an area by start address (the wider
// first on a tie), a request takes the next tag unless that tag would break
// a limit; a tag that breaks one cannot share a read with the first tag of
// the request, and starting the next read at it serves every later tag at
// least as well as any other choice would (a rapid test checks the count
// against brute force).
func Plan(tags []Tag, lim Limits) []Request { return plan(tags, lim, nil, nil) }

// cuts are learned boundaries: for each area, sorted addresses c such that
// no read may contain both c-1 and c (the device refused such reads).
type cuts [HoldingRegister + 1][]int

// across reports whether a read of area from lo to hi (inclusive) would
// contain a cut.
func (c *cuts) across(area Area, lo, hi int) bool {
	if c == nil {
		return false
	}
	s := c[area]
	i, _ := slices.BinarySearch(s, lo+1)
	return i < len(s) && s[i] <= hi
}

// add records a cut; it reports whether it is new.
func (c *cuts) add(area Area, at int) bool {
	i, found := slices.BinarySearch(c[area], at)
	if found {
		return false
	}
	c[area] = slices.Insert(c[area], i, at)
	return true
}

// plan is Plan leaving out the tags skip reports and never reading across
// a cut. It stays optimal: a cut is one more limit of the same kind.
func plan(tags []Tag, lim Limits, skip func(int) bool, cut *cuts) []Request {
	type key struct{ area, start, end, index int }
	keys := make([]key, 0, len(tags))
	for i := range tags {
		if skip == nil || !skip(i) {
			keys = append(keys, key{int(tags[i].Area), tags[i].Address, tags[i].end(), i})
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.area != b.area {
			return a.area - b.area
		}
		if a.start != b.start {
			return a.start - b.start
		}
		if a.end != b.end {
			return b.end - a.end // a register tag before the bit tags inside it
		}
		return a.index - b.index
	})
	order := make([]int, len(keys)) // the requests' Tags share it
	for i, k := range keys {
		order[i] = k.index
	}
	var out []Request
	for lo := 0; lo < len(keys); {
		area := Area(keys[lo].area)
		maxLen, maxGap := lim.MaxRegisters, lim.MaxGap
		if area.Bits() {
			maxLen, maxGap = lim.MaxBits, lim.MaxGap*bitsPerRegister
		}
		// One request per pass: keys[lo:hi] are its tags.
		start, end := keys[lo].start, keys[lo].end
		hi := lo + 1
		for ; hi < len(keys); hi++ {
			k := &keys[hi]
			if Area(k.area) != area || k.start-end-1 > maxGap || max(end, k.end)-start+1 > maxLen ||
				cut.across(area, start, max(end, k.end)) {
				break
			}
			end = max(end, k.end)
		}
		out = append(out, Request{Area: area, Start: start, Count: end - start + 1, Tags: order[lo:hi:hi]})
		lo = hi
	}
	return out
}

// width is how many registers (or bits) the tag occupies in its area.
func (t *Tag) width() int {
	if t.Area.Bits() {
		return 1
	}
	return max(1, t.Words()) // 0 only for a tag Init would refuse
}

// end is the last address the tag occupies.
func (t *Tag) end() int { return t.Address + t.width() - 1 }
