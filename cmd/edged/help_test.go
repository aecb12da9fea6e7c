package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCommandHelp: `edged COMMAND --help` (and -h, -help) is an answer, not
// an error, for every command: exit 0, on stdout, with what the command
// does and how to call it; nothing on stderr. Before, it was the flag
// package's "Usage of …" on stderr with exit 2, and `ports --help` did not
// say what ports does.
func TestCommandHelp(t *testing.T) {
	if n := len(allCommands()); n < 9 {
		t.Fatalf("%d commands registered, want at least 9", n)
	}
	for _, c := range allCommands() {
		for _, flag := range []string{"--help", "-h", "-help"} {
			code, out, errOut := runCLI(c.name, flag)
			_, desc := splitSummary(c.summary)
			if code != exitOK || errOut != "" || !strings.HasPrefix(out, "edged "+c.name+": "+desc+"\n") ||
				!strings.Contains(out, "\nUsage: edged "+c.name) {
				t.Errorf("edged %s %s: exit %d\nstdout:\n%s\nstderr:\n%s", c.name, flag, code, out, errOut)
			}
		}
	}
	// Each flag says its default once (the flag package adds
	// "(default …)"), and a description never starts with arguments.
	for _, c := range allCommands() {
		_, out, _ := runCLI(c.name, "--help")
		_, flags, _ := strings.Cut(out, "\nFlags:\n")
		for _, entry := range strings.Split(flags, "\n  -") {
			if n := strings.Count(entry, "default"); n > 1 {
				t.Errorf("edged %s --help: the default is shown %d times: -%s", c.name, n, entry)
			}
		}
		if _, desc := splitSummary(c.summary); strings.HasPrefix(desc, "[") || strings.HasPrefix(desc, "-") {
			t.Errorf("edged %s: description %q starts with arguments (separate them by two spaces)", c.name, desc)
		}
	}
	if _, out, _ := runCLI("passwd", "--help"); !strings.Contains(out, "Usage: edged passwd [-cost N]\n") {
		t.Errorf("passwd --help usage:\n%s", out)
	}
	if _, out, _ := runCLI("ports", "--help"); !strings.Contains(out, "list serial ports") {
		t.Errorf("ports --help does not describe the command:\n%s", out)
	}
	if _, out, _ := runCLI("validate", "--help"); !strings.Contains(out, "\nFlags:\n  -c string") {
		t.Errorf("validate --help does not list -c:\n%s", out)
	}
}

// TestUsageColumnsAlign: in `edged help` every command's description
// starts in the same column.
func TestUsageColumnsAlign(t *testing.T) {
	code, out, _ := runCLI("help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	col := -1
	for _, c := range allCommands() {
		_, desc := splitSummary(c.summary)
		var line string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "  edged "+c.name+" ") {
				line = l
			}
		}
		i := strings.Index(line, desc)
		if i < 0 {
			t.Errorf("no line for %s with %q in:\n%s", c.name, desc, out)
			continue
		}
		at := utf8.RuneCountInString(line[:i])
		if col < 0 {
			col = at
		} else if at != col {
			t.Errorf("%s: description at column %d, others at %d:\n%s", c.name, at, col, out)
		}
	}
}

// TestConfigFileWithoutDashC: `edged validate edged.toml` is a usage error
// with a hint, not a validation of /etc/edged/edged.toml (which passed
// or failed for a file the user never named); `edged run` alike.
func TestConfigFileWithoutDashC(t *testing.T) {
	for _, cmd := range []string{"validate", "run"} {
		code, out, errOut := runCLI(cmd, "edged.toml")
		if code != exitUsage || out != "" || !strings.Contains(errOut, `unexpected argument "edged.toml"`) ||
			!strings.Contains(errOut, "edged "+cmd+" -c edged.toml") || strings.Contains(errOut, defaultConfig) {
			t.Errorf("edged %s edged.toml: exit %d\nstdout: %s\nstderr: %s", cmd, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI("validate", "-c", "../../configs/examples/edged.toml", "extra"); code != exitUsage ||
		!strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("validate with a stray argument: exit %d, %s", code, errOut)
	}
}
