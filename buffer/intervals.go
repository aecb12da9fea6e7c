package buffer

import "sort"

// intervals is a set of sequence numbers kept as sorted, disjoint, closed
// ranges. Acknowledgements arrive in a few runs (live and replayed
// entries), so the set stays a handful of ranges.
type intervals []span

type span struct{ lo, hi uint64 }

// search returns the index of the first range with hi ≥ x.
func (s intervals) search(x uint64) int {
	return sort.Search(len(s), func(i int) bool { return s[i].hi >= x })
}

func (s intervals) contains(x uint64) bool {
	i := s.search(x)
	return i < len(s) && s[i].lo <= x
}

func (s *intervals) add(x uint64) {
	v := *s
	i := v.search(x)
	if i < len(v) && v[i].lo <= x {
		return
	}
	joinLeft := i > 0 && v[i-1].hi+1 == x
	joinRight := i < len(v) && v[i].lo == x+1
	switch {
	case joinLeft && joinRight:
		v[i-1].hi = v[i].hi
		v = append(v[:i], v[i+1:]...)
	case joinLeft:
		v[i-1].hi = x
	case joinRight:
		v[i].lo = x
	default:
		v = append(v, span{})
		copy(v[i+1:], v[i:])
		v[i] = span{x, x}
	}
	*s = v
}

func (s intervals) first() (lo, hi uint64, ok bool) {
	if len(s) == 0 {
		return 0, 0, false
	}
	return s[0].lo, s[0].hi, true
}

// trimBelow removes every number below x.
func (s *intervals) trimBelow(x uint64) {
	v := *s
	i := v.search(x)
	v = v[i:]
	if len(v) > 0 && v[0].lo < x {
		v[0].lo = x
	}
	*s = append((*s)[:0], v...)
}

func (s intervals) clone() intervals { return append(intervals(nil), s...) }

// addRange adds lo..hi (inclusive).
func (s *intervals) addRange(lo, hi uint64) {
	if lo > hi {
		return
	}
	v := *s
	// Ranges from i to j-1 touch or overlap lo..hi: merge them into one.
	i := sort.Search(len(v), func(k int) bool { return v[k].hi+1 >= lo })
	j := i
	for j < len(v) && v[j].lo <= hi+1 {
		lo, hi = min(lo, v[j].lo), max(hi, v[j].hi)
		j++
	}
	if i == j {
		v = append(v, span{})
		copy(v[i+1:], v[i:])
		v[i] = span{lo, hi}
	} else {
		v[i] = span{lo, hi}
		v = append(v[:i+1], v[j:]...)
	}
	*s = v
}

// countIn returns how many numbers of lo..hi are in the set.
func (s intervals) countIn(lo, hi uint64) uint64 {
	var n uint64
	for i := s.search(lo); i < len(s) && s[i].lo <= hi; i++ {
		n += min(hi, s[i].hi) - max(lo, s[i].lo) + 1
	}
	return n
}

// containsRange reports whether every number of lo..hi is in the set.
func (s intervals) containsRange(lo, hi uint64) bool {
	i := s.search(lo)
	return i < len(s) && s[i].lo <= lo && s[i].hi >= hi
}

// skip returns x, or one past the range holding x.
func (s intervals) skip(x uint64) uint64 {
	if i := s.search(x); i < len(s) && s[i].lo <= x {
		return s[i].hi + 1
	}
	return x
}
