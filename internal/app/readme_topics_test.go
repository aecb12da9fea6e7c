package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/gateway"
)

// readmeTopicExamples returns every ```toml block of the README that is
// followed by a ```text block starting with "renders:", and what that
// block lists: "device/tag topic" per line.
func readmeTopicExamples(t *testing.T) (examples []struct{ toml, renders string }) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(b), "```")
	// Odd elements are the insides of fenced blocks: "toml\n…", "text\n…".
	for i := 1; i+2 < len(blocks); i += 2 {
		body, ok := strings.CutPrefix(blocks[i], "toml\n")
		if !ok || strings.TrimSpace(blocks[i+1]) != "" {
			continue
		}
		if r, ok := strings.CutPrefix(blocks[i+2], "text\nrenders:\n"); ok {
			examples = append(examples, struct{ toml, renders string }{body, r})
		}
	}
	return examples
}

// TestReadmeTopicExamplesRender: each topic template example of the README
// loads through the real loader and drivers, and the gateway renders
// exactly the topics the README lists under it.
func TestReadmeTopicExamplesRender(t *testing.T) {
	examples := readmeTopicExamples(t)
	if len(examples) < 2 {
		t.Fatalf("found %d README topic examples (a ```toml block followed by a ```text block starting with renders:), want at least 2", len(examples))
	}
	for i, ex := range examples {
		dir := t.TempDir()
		path := filepath.Join(dir, "edged.toml")
		if err := os.WriteFile(path, []byte(ex.toml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := configs.Load(path, Drivers(nil))
		if err != nil {
			t.Fatalf("README example %d does not load:\n%v\n%s", i+1, err, ex.toml)
		}
		g, err := gateway.New(cfg, discard{}, nil)
		if err != nil {
			t.Fatalf("README example %d: %v", i+1, err)
		}
		got := map[string]string{}
		for _, d := range g.Snapshot() {
			for _, tv := range d.Tags {
				got[d.Name+"/"+tv.Name] = tv.Topic
			}
		}
		want := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(ex.renders), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				t.Fatalf("README example %d: renders line %q is not \"device/tag topic\"", i+1, line)
			}
			want[f[0]] = f[1]
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("README example %d: %s renders %q, the README says %q", i+1, k, got[k], w)
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("README example %d: %s renders %q, which the README does not list", i+1, k, g)
			}
		}
	}
}
