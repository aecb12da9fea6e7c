package modbus

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/edged-gw/edged/mapping"
)

// mk makes a tag of area at addr that is words registers wide (one bit in
// the bit areas).
func mk(area Area, addr, words int) Tag {
	t := Tag{Area: area, Address: addr}
	t.Name = fmt.Sprintf("%s_%d_%d", area.short(), addr, words)
	switch {
	case area.Bits():
		t.Type = mapping.TypeBool
	case words == 1:
		t.Type = mapping.TypeUint16
	case words == 2:
		t.Type = mapping.TypeUint32
	case words == 4:
		t.Type = mapping.TypeFloat64
	default:
		t.Type, t.Length = mapping.TypeString, words
	}
	return t
}

func bitTag(addr, bit int) Tag {
	t := Tag{Area: HoldingRegister, Address: addr}
	t.Name, t.Type, t.Bit = fmt.Sprintf("bit_%d_%d", addr, bit), mapping.TypeBool, &bit
	return t
}

type span struct {
	Area         Area
	Start, Count int
}

func spans(reqs []Request) []span {
	var out []span
	for _, r := range reqs {
		out = append(out, span{r.Area, r.Start, r.Count})
	}
	return out
}

func TestPlanExamples(t *testing.T) {
	lim := Limits{MaxGap: 16, MaxRegisters: 125, MaxBits: 2000}
	tests := []struct {
		name string
		tags []Tag
		lim  Limits
		want []span
	}{
		{"nothing", nil, lim, nil},
		{"gap of exactly max_gap merges", []Tag{mk(HoldingRegister, 0, 2), mk(HoldingRegister, 18, 1)}, lim,
			[]span{{HoldingRegister, 0, 19}}},
		{"gap of max_gap+1 splits", []Tag{mk(HoldingRegister, 0, 2), mk(HoldingRegister, 19, 1)}, lim,
			[]span{{HoldingRegister, 0, 2}, {HoldingRegister, 19, 1}}},
		{"125 registers fit one read", []Tag{mk(InputRegister, 100, 1), mk(InputRegister, 110, 115)},
			Limits{MaxGap: 125, MaxRegisters: 125, MaxBits: 2000}, []span{{InputRegister, 100, 125}}},
		{"126 do not", []Tag{mk(InputRegister, 100, 1), mk(InputRegister, 110, 116)},
			Limits{MaxGap: 125, MaxRegisters: 125, MaxBits: 2000}, []span{{InputRegister, 100, 1}, {InputRegister, 110, 116}}},
		{"coil gaps count 16 bits per register", []Tag{mk(Coil, 0, 1), mk(Coil, 257, 1), mk(Coil, 515, 1)}, lim,
			[]span{{Coil, 0, 258}, {Coil, 515, 1}}},
		{"max_bits", []Tag{mk(DiscreteInput, 0, 1), mk(DiscreteInput, 7, 1), mk(DiscreteInput, 8, 1)},
			Limits{MaxGap: 16, MaxRegisters: 125, MaxBits: 8}, []span{{DiscreteInput, 0, 8}, {DiscreteInput, 8, 1}}},
		{"views of one register and bits share a read",
			[]Tag{bitTag(5, 3), mk(HoldingRegister, 4, 2), bitTag(4, 0), mk(HoldingRegister, 4, 2)}, lim,
			[]span{{HoldingRegister, 4, 2}}},
		{"ordered by area then address",
			[]Tag{mk(HoldingRegister, 500, 1), mk(Coil, 9, 1), mk(HoldingRegister, 1, 1), mk(InputRegister, 0, 1), mk(DiscreteInput, 3, 1)}, lim,
			[]span{{Coil, 9, 1}, {DiscreteInput, 3, 1}, {InputRegister, 0, 1}, {HoldingRegister, 1, 1}, {HoldingRegister, 500, 1}}},
		{"max_gap 0 merges only adjacent tags",
			[]Tag{mk(HoldingRegister, 0, 2), mk(HoldingRegister, 2, 1), mk(HoldingRegister, 4, 1)},
			Limits{MaxGap: 0, MaxRegisters: 125, MaxBits: 2000}, []span{{HoldingRegister, 0, 3}, {HoldingRegister, 4, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.tags, tt.lim)
			if !slices.Equal(spans(got), tt.want) {
				t.Fatalf("Plan = %v, want %v", spans(got), tt.want)
			}
		})
	}
}

// planLimits draws limits small enough for brute force to matter.
func planLimits(t *rapid.T) Limits {
	return Limits{
		MaxGap:       rapid.IntRange(0, 4).Draw(t, "max_gap"),
		MaxRegisters: rapid.IntRange(1, 10).Draw(t, "max_registers"),
		MaxBits:      rapid.IntRange(1, 40).Draw(t, "max_bits"),
	}
}

// anyTags draws up to n tags that fit the limits, overlapping at will.
func anyTags(t *rapid.T, lim Limits, n int) []Tag {
	count := rapid.IntRange(0, n).Draw(t, "count")
	tags := make([]Tag, count)
	for i := range tags {
		area := rapid.SampledFrom([]Area{Coil, DiscreteInput, InputRegister, HoldingRegister}).Draw(t, "area")
		addr := rapid.IntRange(0, 40).Draw(t, "address")
		if area.Bits() {
			addr = rapid.IntRange(0, 200).Draw(t, "bit address")
		}
		tags[i] = mk(area, addr, rapid.IntRange(1, lim.MaxRegisters).Draw(t, "words"))
	}
	return tags
}

// validTags draws a layout TCP.Init accepts: register tags that are
// disjoint or identical, bit tags anywhere.
func validTags(t *rapid.T, lim Limits) []Tag {
	var tags []Tag
	addr := rapid.IntRange(0, 65535-2000).Draw(t, "first")
	for range rapid.IntRange(0, 30).Draw(t, "blocks") {
		addr += rapid.IntRange(0, 2*lim.MaxGap+2).Draw(t, "gap")
		words := rapid.IntRange(1, lim.MaxRegisters).Draw(t, "words")
		for range rapid.IntRange(1, 3).Draw(t, "views") {
			tags = append(tags, mk(HoldingRegister, addr, words))
		}
		for range rapid.IntRange(0, 2).Draw(t, "bits") {
			tags = append(tags, bitTag(addr+rapid.IntRange(0, words-1).Draw(t, "bit register"), 0))
		}
		addr += words
	}
	return tags
}

// checkPlan checks the invariants every plan must keep.
func checkPlan(t *rapid.T, tags []Tag, lim Limits, reqs []Request) {
	seen := make([]int, len(tags))
	for ri, r := range reqs {
		if ri > 0 {
			p := reqs[ri-1]
			if cmp.Or(cmp.Compare(p.Area, r.Area), cmp.Compare(p.Start, r.Start)) > 0 {
				t.Fatalf("requests not ordered by area, start: %v before %v", spans(reqs[ri-1:ri]), spans(reqs[ri:ri+1]))
			}
		}
		maxLen, maxGap := lim.MaxRegisters, lim.MaxGap
		if r.Area.Bits() {
			maxLen, maxGap = lim.MaxBits, lim.MaxGap*bitsPerRegister
		}
		if r.Count < 1 || r.Count > maxLen {
			t.Fatalf("request %v reads %d, limit %d", spans(reqs[ri:ri+1]), r.Count, maxLen)
		}
		used := make([]bool, r.Count)
		for _, k := range r.Tags {
			seen[k]++
			tg := &tags[k]
			if tg.Area != r.Area || tg.Address < r.Start || tg.end() >= r.Start+r.Count {
				t.Fatalf("tag %s %d..%d is not inside its request %v", tg.Area, tg.Address, tg.end(), spans(reqs[ri:ri+1]))
			}
			for a := tg.Address; a <= tg.end(); a++ {
				used[a-r.Start] = true
			}
		}
		if !used[0] || !used[r.Count-1] {
			t.Fatalf("request %v reads unused registers at an end", spans(reqs[ri:ri+1]))
		}
		hole := 0
		for _, u := range used {
			if hole = hole + 1; u {
				hole = 0
			}
			if hole > maxGap {
				t.Fatalf("request %v reads through %d unused, max %d", spans(reqs[ri:ri+1]), hole, maxGap)
			}
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("tag %d (%s %d) is in %d requests, want 1", k, tags[k].Area, tags[k].Address, n)
		}
	}
}

func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		lim := planLimits(t)
		tags := anyTags(t, lim, 60)
		checkPlan(t, tags, lim, Plan(tags, lim))
	})
}

// TestPlanValidLayoutsReadEachRegisterOnce: for layouts Init accepts, no two
// requests of an area overlap, so every register of a tag is read by
// exactly one request.
func TestPlanValidLayoutsReadEachRegisterOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		lim := planLimits(t)
		lim.MaxRegisters = rapid.IntRange(1, 125).Draw(t, "max_registers")
		tags := validTags(t, lim)
		reqs := Plan(tags, lim)
		checkPlan(t, tags, lim, reqs)
		for i := 1; i < len(reqs); i++ {
			p, r := reqs[i-1], reqs[i]
			if p.Area == r.Area && r.Start < p.Start+p.Count {
				for _, k := range append(slices.Clone(p.Tags), r.Tags...) {
					t.Logf("tag %s %d..%d bit %v", tags[k].Area, tags[k].Address, tags[k].end(), tags[k].Bit)
				}
				t.Fatalf("requests %v and %v overlap", spans(reqs[i-1:i]), spans(reqs[i:i+1]))
			}
		}
	})
}

// TestPlanMinimal compares Plan with the best partition found by brute force.
func TestPlanMinimal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		lim := planLimits(t)
		tags := anyTags(t, lim, 8)
		if got, best := len(Plan(tags, lim)), optimum(tags, lim); got != best {
			t.Fatalf("Plan makes %d requests, %d suffice", got, best)
		}
	})
}

// optimum is the fewest requests that read tags within lim, trying every
// partition of each area's tags into requests.
func optimum(tags []Tag, lim Limits) int {
	total := 0
	for _, area := range []Area{Coil, DiscreteInput, InputRegister, HoldingRegister} {
		var in []Tag
		for _, tg := range tags {
			if tg.Area == area {
				in = append(in, tg)
			}
		}
		maxLen, maxGap := lim.MaxRegisters, lim.MaxGap
		if area.Bits() {
			maxLen, maxGap = lim.MaxBits, lim.MaxGap*bitsPerRegister
		}
		best := len(in)
		group := make([]int, len(in))
		var try func(i, groups int)
		try = func(i, groups int) {
			if groups >= best {
				return
			}
			if i == len(in) {
				for g := range groups {
					if !feasible(in, group, g, maxLen, maxGap) {
						return
					}
				}
				best = groups
				return
			}
			for g := 0; g <= groups; g++ {
				group[i] = g
				try(i+1, max(groups, g+1))
			}
		}
		try(0, 0)
		total += best
	}
	return total
}

// feasible reports whether the tags in group g make one valid read.
func feasible(tags []Tag, group []int, g, maxLen, maxGap int) bool {
	lo, hi := 1<<30, -1
	for i := range tags {
		if group[i] == g {
			lo, hi = min(lo, tags[i].Address), max(hi, tags[i].end())
		}
	}
	if hi-lo+1 > maxLen {
		return false
	}
	used := make([]bool, hi-lo+1)
	for i := range tags {
		if group[i] == g {
			for a := tags[i].Address; a <= tags[i].end(); a++ {
				used[a-lo] = true
			}
		}
	}
	hole := 0
	for _, u := range used {
		if hole = hole + 1; u {
			hole = 0
		}
		if hole > maxGap {
			return false
		}
	}
	return true
}

func BenchmarkPlan10000(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	tags := make([]Tag, 0, 10000)
	areas := []Area{Coil, DiscreteInput, InputRegister, HoldingRegister}
	next := map[Area]int{}
	for i := range 10000 {
		a := areas[i%4]
		words := []int{1, 1, 2, 2, 4, 8}[r.IntN(6)]
		tags = append(tags, mk(a, next[a], words))
		next[a] += words + r.IntN(40)
	}
	lim := Limits{MaxGap: DefaultMaxGap, MaxRegisters: DefaultMaxRegisters, MaxBits: DefaultMaxBits}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Plan(tags, lim))
	}
	b.ReportMetric(float64(n), "requests")
}
