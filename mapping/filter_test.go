package mapping

import (
	"math"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"pgregory.net/rapid"
)

type step struct {
	v    Value
	q    Quality
	ms   int64
	pass bool
}

func TestFilterPass(t *testing.T) {
	nan := math.NaN()
	inf := math.Inf(1)
	tests := []struct {
		name  string
		spec  Spec
		steps []step
	}{
		{"no settings publishes every sample", Spec{}, []step{
			{floatV(1), Good, 0, true},
			{floatV(1), Good, 1, true},
			{floatV(1), Good, 2, true},
		}},
		{"on change", Spec{OnChange: true}, []step{
			{intV(1), Good, 0, true},
			{intV(1), Good, 1, false},
			{intV(2), Good, 2, true},
			{intV(2), Good, 3, false},
			{intV(1), Good, 4, true},
		}},
		{"on change NaN equals NaN", Spec{OnChange: true}, []step{
			{floatV(nan), Good, 0, true},
			{floatV(nan), Good, 1, false},
			{floatV(0), Good, 2, true},
			{floatV(math.Copysign(0, -1)), Good, 3, false}, // -0 == 0
		}},
		{"deadband compares with the last published value", Spec{Deadband: 1}, []step{
			{floatV(10), Good, 0, true},
			{floatV(10.5), Good, 1, false},
			{floatV(11), Good, 2, false}, // exactly the deadband: suppressed
			{floatV(11.01), Good, 3, true},
			{floatV(10.2), Good, 4, false},
			{floatV(10.0), Good, 5, true}, // creeping: 1.01 from 11.01
			{floatV(9.5), Good, 6, false},
			{floatV(8.9), Good, 7, true},
		}},
		{"deadband NaN and Inf", Spec{Deadband: 1}, []step{
			{floatV(5), Good, 0, true},
			{floatV(nan), Good, 1, true},
			{floatV(nan), Good, 2, false},
			{floatV(5), Good, 3, true},
			{floatV(inf), Good, 4, true},
			{floatV(inf), Good, 5, false},
			{floatV(-inf), Good, 6, true},
			{floatV(5), Good, 7, true},
		}},
		{"deadband ints", Spec{Deadband: 2}, []step{
			{intV(math.MinInt64), Good, 0, true},
			{intV(math.MinInt64 + 2), Good, 1, false},
			{intV(math.MaxInt64), Good, 2, true},
			{intV(math.MaxInt64 - 2), Good, 3, false},
			{intV(math.MaxInt64 - 3), Good, 4, true},
		}},
		{"deadband uints", Spec{Deadband: 10}, []step{
			{uintV(100), Good, 0, true},
			{uintV(90), Good, 1, false},
			{uintV(89), Good, 2, true},
			{uintV(99), Good, 3, false},
			{uintV(math.MaxUint64), Good, 4, true},
		}},
		{"deadband bools and strings: any change", Spec{Deadband: 5}, []step{
			{boolV(false), Good, 0, true},
			{boolV(false), Good, 1, false},
			{boolV(true), Good, 2, true},
			{strV("run"), Good, 3, true}, // kind change
			{strV("run"), Good, 4, false},
			{strV("stop"), Good, 5, true},
		}},
		{"quality change always passes", Spec{Deadband: 100}, []step{
			{floatV(1), Good, 0, true},
			{floatV(1), Bad, 1, true},
			{floatV(1), Bad, 2, false},
			{floatV(1), Uncertain, 3, true},
			{floatV(1), Good, 4, true},
			{floatV(1), Good, 5, false},
		}},
		{"kind change always passes", Spec{OnChange: true}, []step{
			{Value{}, Bad, 0, true},
			{Value{}, Bad, 1, false},
			{floatV(0), Bad, 2, true},
			{intV(0), Bad, 3, true},
			{uintV(0), Bad, 4, true},
		}},
		{"max silence heartbeat", Spec{OnChange: true, MaxSilence: configs.Duration(10 * time.Second)}, []step{
			{intV(1), Good, 1000, true},
			{intV(1), Good, 10999, false},
			{intV(1), Good, 11000, true}, // exactly max silence
			{intV(1), Good, 15000, false},
			{intV(2), Good, 16000, true},
			{intV(2), Good, 25999, false},
			{intV(2), Good, 26000, true},
		}},
		{"max silence with deadband", Spec{Deadband: 1, MaxSilence: configs.Duration(time.Second)}, []step{
			{floatV(1), Good, 0, true},
			{floatV(1.5), Good, 999, false},
			{floatV(1.5), Good, 1000, true},
			{floatV(1), Good, 1500, false}, // compared with 1.5 now
			{floatV(2.6), Good, 1600, true},
		}},
		{"clock set back passes", Spec{OnChange: true, MaxSilence: configs.Duration(time.Minute)}, []step{
			{intV(1), Good, 100000, true},
			{intV(1), Good, 100001, false},
			{intV(1), Good, 5000, true},
			{intV(1), Good, 5001, false},
		}},
		{"deadband without on change still filters", Spec{Deadband: 0.5, OnChange: false}, []step{
			{floatV(0), Good, 0, true},
			{floatV(0), Good, 1, false},
			{floatV(0.4), Good, 2, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			var f Filter
			for i, st := range tt.steps {
				s := Sample{Tag: &spec, Value: st.v, Quality: st.q, TimeMs: st.ms}
				if got := f.Pass(&s); got != st.pass {
					t.Fatalf("step %d (%+v q=%s t=%d): Pass = %v, want %v", i, st.v, st.q, st.ms, got, st.pass)
				}
			}
		})
	}
}

func TestFilterNilTag(t *testing.T) {
	var f Filter
	for i := 0; i < 3; i++ {
		if !f.Pass(&Sample{Value: intV(1)}) {
			t.Fatal("a sample without Tag must always pass")
		}
	}
}

// TestFilterProperty: with a deadband, every published sample after the
// first differs from the previous published one by more than the deadband,
// unless quality or kind changed, the value crossed NaN/Inf, or max silence
// elapsed; and every suppressed sample is within the deadband of the last
// published one with the same quality, inside the max-silence window.
func TestFilterProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := Spec{
			Deadband:   rapid.SampledFrom([]float64{0.5, 1, 10}).Draw(t, "deadband"),
			MaxSilence: configs.Duration(time.Duration(rapid.IntRange(0, 50).Draw(t, "max silence ms")) * time.Millisecond),
		}
		n := rapid.IntRange(1, 200).Draw(t, "samples")
		var f Filter
		var last *Sample
		now := int64(0)
		for i := 0; i < n; i++ {
			now += int64(rapid.IntRange(0, 10).Draw(t, "dt"))
			s := &Sample{
				Tag:     &spec,
				Value:   floatV(rapid.SampledFrom([]float64{0, 0.3, 0.6, 1, 5, 12, -3, math.NaN()}).Draw(t, "v")),
				Quality: Quality(rapid.IntRange(0, 2).Draw(t, "q")),
				TimeMs:  now,
			}
			if rapid.IntRange(0, 10).Draw(t, "none") == 0 {
				s.Value = Value{}
			}
			pass := f.Pass(s)
			if last == nil {
				if !pass {
					t.Fatalf("first sample suppressed")
				}
				last = s
				continue
			}
			heartbeat := spec.MaxSilence > 0 && s.TimeMs-last.TimeMs >= time.Duration(spec.MaxSilence).Milliseconds()
			changed := s.Quality != last.Quality || s.Value.Kind != last.Value.Kind
			a, b := s.Value.Float, last.Value.Float
			far := s.Value.Kind == KindFloat && !s.Value.Equal(last.Value) &&
				(math.IsNaN(a) || math.IsNaN(b) || math.Abs(a-b) > spec.Deadband)
			if pass != (heartbeat || changed || far) {
				t.Fatalf("sample %d %+v q=%s t=%d after published %+v q=%s t=%d: Pass = %v, want %v",
					i, s.Value, s.Quality, s.TimeMs, last.Value, last.Quality, last.TimeMs, pass, !pass)
			}
			if pass {
				last = s
			}
		}
	})
}

func TestFilterDoesNotAllocate(t *testing.T) {
	spec := Spec{Deadband: 0.5, MaxSilence: configs.Duration(time.Second)}
	var f Filter
	s := Sample{Tag: &spec, Value: floatV(1)}
	if n := testing.AllocsPerRun(100, func() {
		s.TimeMs++
		s.Value.Float += 0.3
		f.Pass(&s)
	}); n != 0 {
		t.Errorf("Pass: %v allocs, want 0", n)
	}
}
