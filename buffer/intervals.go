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
	for x := lo; x <= hi; x++ { // gaps are rare and short (out-of-order acks before a restart)
		s.add(x)
	}
}

// containsRange reports whether every number of lo..hi is in the set.
func (s intervals) containsRange(lo, hi uint64) bool {
	i := s.search(lo)
	return i < len(s) && s[i].lo <= lo && s[i].hi >= hi
}
