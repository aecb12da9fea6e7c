// Command gencopyright writes the Debian copyright file
// (/usr/share/doc/edged/copyright, machine-readable format 1.0) for an edged
// binary: a paragraph for edged, one for the Go standard library and one per
// module the binary was built with (from its build info), with that
// module's own license files copied from the module cache. The binary is
// static, so what it contains is exactly what its build info lists.
//
//	go run ./packaging/gencopyright BINARY > copyright
package main

import (
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"unicode"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gencopyright BINARY")
		os.Exit(2)
	}
	if err := write(os.Stdout, os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gencopyright:", err)
		os.Exit(1)
	}
}

// licenseFile matches the files a module states its license in.
var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice)(\.(md|txt))?$`)

func write(w io.Writer, binary string) error {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return err
	}
	modCache, err := goEnv("GOMODCACHE")
	if err != nil {
		return err
	}
	goroot, err := goEnv("GOROOT")
	if err != nil {
		return err
	}
	fmt.Fprint(w, `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: edged
Source: https://github.com/edged-gw/edged
Comment: edged is one static binary. Besides its own code it contains the Go
 standard library and the Go modules listed below (the binary's build
 information), each under its own license, copied here from the module.

Files: *
Copyright: 2026 the edged authors
License: edged
 The edged sources do not state a license yet. Until they do, ask the edged
 maintainers (https://github.com/edged-gw/edged) before redistributing.
`)
	stdlib, err := licenseText(goroot)
	if err != nil {
		return fmt.Errorf("go standard library: %w", err)
	}
	paragraph(w, "go", info.GoVersion, stdlib)
	deps := slices.Clone(info.Deps)
	slices.SortFunc(deps, func(a, b *debug.Module) int { return strings.Compare(a.Path, b.Path) })
	for _, m := range deps {
		if m.Replace != nil {
			m = m.Replace
		}
		dir, err := moduleDir(modCache, m.Path, m.Version)
		if err != nil {
			return err
		}
		text, err := licenseText(dir)
		if err != nil {
			return fmt.Errorf("%s %s: %w", m.Path, m.Version, err)
		}
		paragraph(w, m.Path, m.Version, commonLicense(text))
	}
	return nil
}

func goEnv(key string) (string, error) {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", key, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func moduleDir(cache, path, version string) (string, error) {
	return filepath.Join(cache, escape(path)+"@"+escape(version)), nil
}

// escape is the module cache's case encoding: an upper-case letter is "!"
// and the letter in lower case.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// fileSep separates the license files of a module in its text.
const fileSep = "\n\n----\n\n"

// licenseText joins the license files at the top of dir.
func licenseText(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries {
		if e.IsDir() || !licenseFile.MatchString(e.Name()) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		if b.Len() > 0 {
			b.WriteString(fileSep)
		}
		fmt.Fprintf(&b, "%s:\n\n%s", e.Name(), strings.TrimSpace(string(raw)))
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("no license file in %s", dir)
	}
	return b.String(), nil
}

var copyrightLine = regexp.MustCompile(`(?mi)^\s*copyright\s+(\(c\)|©|\d{4})[^\n]*$`)

// paragraph writes a Files paragraph for a module with its license text.
func paragraph(w io.Writer, path, version, text string) {
	holders := copyrightLine.FindAllString(text, -1)
	for i, h := range holders {
		h = strings.TrimSpace(h)
		h = regexp.MustCompile(`(?i)^copyright\s+(\(c\)\s*|©\s*)?`).ReplaceAllString(h, "")
		holders[i] = h
	}
	holders = slices.Compact(holders)
	if len(holders) == 0 {
		holders = []string{"the " + path + " authors"}
	}
	fmt.Fprintf(w, "\nFiles: vendor/%s/*\nCopyright: %s\nLicense: %s\n", path, strings.Join(holders, "\n "), shortName(text))
	fmt.Fprintf(w, " %s %s: the license files of the module, as it ships them.\n .\n", path, version)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" {
			fmt.Fprintln(w, " .")
			continue
		}
		fmt.Fprintln(w, " "+line)
	}
}

// shortName names the license as the copyright format does, when the text
// is plainly one license; otherwise "other" (the text says it all).
func shortName(text string) string {
	has := func(s string) bool { return strings.Contains(text, s) }
	n := 0
	name := "other"
	for _, l := range []struct{ name, mark string }{
		{"Apache-2.0", "Apache License"},
		{"MPL-2.0", "Mozilla Public License"},
		{"EPL-2.0", "Eclipse Public License"},
		{"Expat", "Permission is hereby granted, free of charge"},
		{"ISC", "Permission to use, copy, modify, and/or distribute"},
		{"BSD-3-clause", "Neither the name"},
	} {
		if has(l.mark) {
			n++
			name = l.name
		}
	}
	if n == 0 && has("Redistribution and use in source and binary forms") {
		return "BSD-2-clause"
	}
	if n != 1 {
		return "other"
	}
	return name
}

// apacheText is the full text of the Apache License 2.0 (its terms), which
// Debian ships once as /usr/share/common-licenses/Apache-2.0.
var apacheText = regexp.MustCompile(`(?s)Apache License\s+Version 2\.0, January 2004.*?END OF TERMS AND CONDITIONS`)

// commonLicense replaces the full terms of the Apache License 2.0, wherever
// a module's license files hold them, by a pointer to Debian's copy; the
// rest (notices, other licenses, copyright lines) stays.
func commonLicense(text string) string {
	return apacheText.ReplaceAllString(text,
		"The Apache License, Version 2.0. On Debian systems its full text is in\n/usr/share/common-licenses/Apache-2.0.")
}
