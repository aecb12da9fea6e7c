package mapping

import (
	"errors"
	"strings"
	"testing"
)

func TestTemplateRender(t *testing.T) {
	tests := []struct {
		tmpl                        string
		prefix, gateway, device, tg string
		want                        string
	}{
		{DefaultTopicTemplate, "edged", "gw1", "pump-3", "flow", "edged/gw1/pump-3/flow"},
		{DefaultTopicTemplate, "", "gw1", "pump-3", "flow", "gw1/pump-3/flow"},
		{DefaultTopicTemplate, "site/a", "gw1", "pump-3", "flow", "site/a/gw1/pump-3/flow"},
		{"{prefix}/{gateway}/{device}/{tag}/set", "edged", "gw1", "pump-3", "flow", "edged/gw1/pump-3/flow/set"},
		{"{prefix}/{gateway}/status", "edged", "gw1", "pump-3", "flow", "edged/gw1/status"},
		{"plant/{device}-{tag}/value", "x", "y", "pump", "flow", "plant/pump-flow/value"},
		{"plant/dev-{device}/v", "", "", "", "", "plant/dev-/v"},
		{"{tag}{tag}", "", "", "", "ab", "abab"},
		{"{prefix}/{gateway}", "", "", "d", "t", ""},
		{"spBv1.0/{gateway}/DDATA/{device}", "p", "g", "d", "t", "spBv1.0/g/DDATA/d"},
		{"a b/ü", "", "", "", "", "a b/ü"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl+"/"+tt.want, func(t *testing.T) {
			tmpl, err := ParseTemplate(tt.tmpl)
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tt.tmpl, err)
			}
			if got := tmpl.Render(tt.prefix, tt.gateway, tt.device, tt.tg); got != tt.want {
				t.Fatalf("Render = %q, want %q", got, tt.want)
			}
			if tmpl.String() != tt.tmpl {
				t.Fatalf("String = %q, want %q", tmpl.String(), tt.tmpl)
			}
		})
	}
}

func TestTemplateUses(t *testing.T) {
	tmpl, err := ParseTemplate("{prefix}/x/{tag}")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"prefix": true, "{tag}": true, "gateway": false, "device": false, "nope": false, "": false} {
		if got := tmpl.Uses(name); got != want {
			t.Errorf("Uses(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := []struct {
		tmpl string
		want []string
	}{
		{"", []string{"empty", Placeholders}},
		{"{prefix}/{site}/{tag}", []string{"unknown placeholder {site}", "allowed are " + Placeholders}},
		{"{Prefix}/{tag}", []string{"unknown placeholder {Prefix}"}},
		{"{}/x", []string{"unknown placeholder {}"}},
		{"{prefix/{tag}", []string{"unbalanced braces", "{ without }", Placeholders}},
		{"{prefix}/tag}", []string{"unbalanced braces", "} without {"}},
		{"a}{b", []string{"unbalanced braces", "} without {"}},
		{"{{tag}}", []string{"unbalanced braces", "{ inside a placeholder"}},
		{"{tag", []string{"unbalanced braces"}},
		{"a//b", []string{"empty level (level 2)", "must not be empty"}},
		{"/a/{tag}", []string{"empty level (level 1)", "must not start or end with /"}},
		{"a/{tag}/", []string{"empty level (level 3)"}},
		{"/", []string{"empty level"}},
		{"a/+/{tag}", []string{"contains +", "wildcards + and #", Placeholders}},
		{"a/#", []string{"contains #", "wildcards + and #"}},
		{"a\x00b", []string{"contains NUL"}},
		{"$SYS/{tag}", []string{"starts with $", "reserves"}},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			tmpl, err := ParseTemplate(tt.tmpl)
			if err == nil {
				t.Fatalf("ParseTemplate(%q) = %v, want an error", tt.tmpl, tmpl)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseTemplate(%q) = %q, want it to contain %q", tt.tmpl, err, w)
				}
			}
		})
	}
}

func TestCheckTopicValue(t *testing.T) {
	for _, ok := range []string{"", "gw1", "pump 3", "Zähler"} {
		if err := CheckTopicValue(ok); err != nil {
			t.Errorf("CheckTopicValue(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"a/b", "+", "#", "a\x00"} {
		if err := CheckTopicValue(bad); !errors.Is(err, ErrTopicValue) || !strings.Contains(err.Error(), "/ + # and NUL") {
			t.Errorf("CheckTopicValue(%q) = %v, want ErrTopicValue saying what is not allowed", bad, err)
		}
	}
}

func TestRenderAllocatesOnce(t *testing.T) {
	tmpl, err := ParseTemplate(DefaultTopicTemplate)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = tmpl.Render("edged", "gw1", "pump", "flow") }); n > 1 {
		t.Errorf("Render: %v allocs, want 1", n)
	}
}
