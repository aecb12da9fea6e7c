package configs

import (
	"strings"
	"testing"
)

// TestUnbridgedNamespaceWarns: a namespace of its own with an upstream's
// default topics ({topic_prefix}/#) would send only statuses up: a
// warning at the upstream says so; a filter of the namespace silences it.
func TestUnbridgedNamespaceWarns(t *testing.T) {
	main := func(topics string) string {
		return lines(
			`[gateway]`, `id = "gw"`, `topic_template = "acme/{meta.area}/{device}/{tag}"`,
			`[[upstream]]`, `name = "cloud"`, `url = "mqtts://x"`, topics, // 4
			`[[device]]`, `name = "d"`, `driver = "fake"`, `meta = { area = "packaging" }`,
			`[[device.tag]]`, `name = "t"`,
		)
	}
	cfg, err := loadMem(memFS{testMain: main("")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Line != 4 || cfg.Warnings[0].Key != "upstream[0].topics" ||
		!strings.Contains(cfg.Warnings[0].Msg, `match none of the 1 tag topics (e.g. "acme/packaging/d/t")`) ||
		!strings.Contains(cfg.Warnings[0].Msg, `topics = ["acme/#"]`) {
		t.Fatalf("warnings = %v", cfg.Warnings)
	}
	cfg, err = loadMem(memFS{testMain: main(`topics = ["acme/+/d/#"]`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("warnings with a matching filter: %v", cfg.Warnings)
	}
}

func TestMatchFilter(t *testing.T) {
	for _, tc := range []struct {
		f, t string
		want bool
	}{
		{"#", "a/b", true}, {"a/#", "a", true}, {"a/#", "a/b/c", true}, {"a/+", "a/b", true},
		{"a/+", "a/b/c", false}, {"a/b", "a/b", true}, {"a/b", "a/c", false}, {"+/+", "a", false}, {"a/b/c", "a/b", false},
	} {
		if got := matchFilter(tc.f, tc.t); got != tc.want {
			t.Errorf("matchFilter(%q, %q) = %v", tc.f, tc.t, got)
		}
	}
}
