package topic

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestExpandMeta(t *testing.T) {
	dev := map[string]string{"site": "lyon", "area": "packaging", "line": "3"}
	tests := []struct {
		tmpl    string
		tagMeta map[string]string
		want    string
	}{
		{"acme/{meta.site}/{meta.area}/{meta.line}/{device}/{tag}", nil, "acme/lyon/packaging/3/filler1/speed"},
		{"acme/{meta.site}/{meta.area}/{meta.line}/{meta.cell}/{tag}", map[string]string{"cell": "c2"}, "acme/lyon/packaging/3/c2/speed"},
		{"{meta.area}/{tag}", map[string]string{"area": "utilities"}, "utilities/speed"}, // the tag's own wins
		{"line-{meta.line}/{tag}", nil, "line-3/speed"},
		{"{prefix}/{meta.empty}/{tag}", map[string]string{"empty": ""}, "edged/speed"}, // an empty level is left out
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			tmpl, err := Parse(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.Expand(&Fields{Prefix: "edged", Gateway: "gw1", Device: "filler1", Tag: "speed", TagMeta: tt.tagMeta, DeviceMeta: dev})
			if err != nil || got != tt.want {
				t.Fatalf("Expand = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestExpandMissingMeta(t *testing.T) {
	tmpl, err := Parse("{meta.site}/{meta.area}/{tag}")
	if err != nil {
		t.Fatal(err)
	}
	if got := tmpl.MetaKeys(); !slices.Equal(got, []string{"site", "area"}) {
		t.Errorf("MetaKeys = %q", got)
	}
	_, err = tmpl.Expand(&Fields{Tag: "t", DeviceMeta: map[string]string{"site": "lyon"}})
	var me *MissingMetaError
	if !errors.As(err, &me) || me.Key != "area" {
		t.Fatalf("Expand = %v, want a MissingMetaError for area", err)
	}
	if !tmpl.Uses("meta") || tmpl.Uses("device") {
		t.Errorf("Uses: meta %v, device %v", tmpl.Uses("meta"), tmpl.Uses("device"))
	}
}

func TestParseMetaErrors(t *testing.T) {
	for tmpl, want := range map[string]string{
		"{meta}/{tag}":        "write {meta.KEY}",
		"{meta.}/{tag}":       "a meta key is letters",
		"{meta.a.b}/{tag}":    "a meta key is letters",
		"{meta.a b}/{tag}":    "a meta key is letters",
		"{Meta.area}/{tag}":   "unknown placeholder {Meta.area}",
		"{metadata.x}/{tag}":  "unknown placeholder {metadata.x}",
		"{meta.area/{tag}":    "unbalanced braces",
		"a/{meta.area}/{bad}": "unknown placeholder {bad}: allowed are " + Placeholders,
	} {
		if _, err := Parse(tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tmpl, err, want)
		}
	}
}

func TestExpandAllocatesOnce(t *testing.T) {
	tmpl, err := Parse("acme/{meta.site}/{meta.area}/{device}/{tag}")
	if err != nil {
		t.Fatal(err)
	}
	f := &Fields{Device: "d", Tag: "t", DeviceMeta: map[string]string{"site": "s", "area": "a"}}
	if n := testing.AllocsPerRun(100, func() { _, _ = tmpl.Expand(f) }); n > 1 {
		t.Errorf("Expand: %v allocs, want 1", n)
	}
}
