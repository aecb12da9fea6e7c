package main

// Help texts: `edged help`, `edged COMMAND --help`, and the hint for a
// config file given without -c.

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// splitSummary splits a command's summary into its arguments and its
// description: they are separated by the first run of two or more spaces
// (a summary without arguments starts with spaces).
func splitSummary(s string) (args, desc string) {
	if strings.HasPrefix(s, " ") {
		return "", strings.TrimSpace(s)
	}
	if i := strings.Index(s, "  "); i >= 0 {
		return s[:i], strings.TrimSpace(s[i:])
	}
	return "", s
}

// usage is `edged help`: one line per command, descriptions aligned.
func usage() string {
	var b strings.Builder
	b.WriteString("edged — industrial edge gateway (Modbus TCP/RTU, OPC UA → MQTT)\n\n")
	b.WriteString("Usage: edged COMMAND [ARGUMENTS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, c := range allCommands() {
		_, desc := splitSummary(c.summary)
		fmt.Fprintf(tw, "  edged %s\t%s\n", c.name, desc)
	}
	tw.Flush()
	b.WriteString("\nRun \"edged COMMAND --help\" for a command's arguments and flags.\n")
	b.WriteString("Exit codes: 0 ok, 1 runtime failure, 2 bad command line (and a refused write), 3 invalid config.\n")
	return b.String()
}

// wantsHelp reports whether args ask for help (-h, -help, --help), before
// a "--" that ends the flags.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// commandHelp prints c's description, synopsis and flags to stdout: help
// asked for is an answer, not an error (exit 0). The flags are the ones the
// command itself declares: it is run with -h and its flag set's usage is
// kept, its other output dropped.
func commandHelp(c command, stdout io.Writer) int {
	args, desc := splitSummary(c.summary)
	fmt.Fprintf(stdout, "edged %s: %s\n\nUsage: edged %s", c.name, desc, c.name)
	if args != "" {
		fmt.Fprintf(stdout, " %s", args)
	}
	fmt.Fprintln(stdout)
	var flags bytes.Buffer
	c.run([]string{"-h"}, io.Discard, &flags)
	// The flag package writes "Usage of edged NAME:" and then the flags.
	_, defaults, _ := strings.Cut(flags.String(), "\n")
	if strings.TrimSpace(defaults) != "" {
		fmt.Fprintf(stdout, "\nFlags:\n%s", defaults)
	}
	return exitOK
}

// noPositional refuses arguments after the flags of a command that takes
// none, with a hint for the usual slip, a config file given without -c
// (which would validate or run the default config instead). It reports
// whether it refused.
func noPositional(fs *flag.FlagSet, name string, stderr io.Writer) bool {
	if fs.NArg() == 0 {
		return false
	}
	fmt.Fprintf(stderr, "edged %s: unexpected argument %q", name, fs.Arg(0))
	if strings.HasSuffix(fs.Arg(0), ".toml") {
		fmt.Fprintf(stderr, "; the config file is given with -c: edged %s -c %s", name, fs.Arg(0))
	}
	fmt.Fprintln(stderr)
	return true
}
