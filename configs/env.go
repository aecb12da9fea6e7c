package configs

import (
	"bytes"
	"fmt"
	"strings"
)

// textState is where in a TOML text a byte is, for substitution.
type textState int

const (
	code      textState = iota
	comment             // # ...
	basic               // "..."
	mlBasic             // """..."""
	literal             // '...'
	mlLiteral           // '''...'''
)

// substituteEnv replaces ${NAME} with the value of the environment variable
// NAME and ${NAME:-default} with default when NAME is unset or empty; $${
// stands for a literal "${". It runs on the raw text before parsing, with
// these guarantees:
//
//   - Comments are left alone, so a commented-out line never fails for an
//     unset variable.
//   - Inside "basic strings" the value is escaped (quotes, backslashes, line
//     breaks), so a password with a '"' stays one string; inside
//     'literal strings' a value that cannot be written there is an error.
//     Outside strings (port = ${PORT}) the value is inserted as written.
//   - Line numbers do not move: a value with a line break is only accepted
//     where it can be escaped.
//
// Every unset variable is reported with its line, not just the first.
func substituteEnv(file string, text []byte, env func(string) (string, bool)) ([]byte, Errors) {
	if !bytes.Contains(text, []byte("${")) {
		return text, nil
	}
	var (
		out   bytes.Buffer
		errs  Errors
		state = code
		line  = 1
	)
	out.Grow(len(text))
	for i := 0; i < len(text); {
		c := text[i]
		rest := text[i:]
		if state != comment {
			if bytes.HasPrefix(rest, []byte("$${")) {
				out.WriteString("${")
				i += 3
				continue
			}
			if bytes.HasPrefix(rest, []byte("${")) {
				n, val, msg := expandOne(rest, env)
				if msg == "" {
					val, msg = fitValue(val, state, rest[:n])
				}
				if msg != "" {
					errs = append(errs, &Error{File: file, Line: line, Msg: msg})
					val = ""
				}
				out.WriteString(val)
				i += n
				continue
			}
		}
		switch state {
		case code:
			switch {
			case c == '#':
				state = comment
			case bytes.HasPrefix(rest, []byte(`"""`)):
				state = mlBasic
				out.WriteString(`""`)
				i += 2
			case bytes.HasPrefix(rest, []byte(`'''`)):
				state = mlLiteral
				out.WriteString(`''`)
				i += 2
			case c == '"':
				state = basic
			case c == '\'':
				state = literal
			}
		case comment:
			if c == '\n' {
				state = code
			}
		case basic, mlBasic:
			if c == '\\' && i+1 < len(text) {
				if text[i+1] == '\n' {
					line++
				}
				out.WriteByte(c)
				out.WriteByte(text[i+1])
				i += 2
				continue
			}
			if state == basic && (c == '"' || c == '\n') {
				state = code
			}
			if state == mlBasic && bytes.HasPrefix(rest, []byte(`"""`)) {
				state = code
				// Up to two more quotes belong to the string.
				j := 3
				for j < 5 && j < len(rest) && rest[j] == '"' {
					j++
				}
				out.Write(rest[:j])
				i += j
				continue
			}
		case literal:
			if c == '\'' || c == '\n' {
				state = code
			}
		case mlLiteral:
			if bytes.HasPrefix(rest, []byte(`'''`)) {
				state = code
				j := 3
				for j < 5 && j < len(rest) && rest[j] == '\'' {
					j++
				}
				out.Write(rest[:j])
				i += j
				continue
			}
		}
		if c == '\n' {
			line++
		}
		out.WriteByte(c)
		i++
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out.Bytes(), nil
}

// expandOne expands the reference at the start of s ("${..."): it returns
// how many bytes the reference takes, its value, or a message for the
// installer.
func expandOne(s []byte, env func(string) (string, bool)) (n int, val, msg string) {
	end := bytes.IndexByte(s, '}')
	if nl := bytes.IndexByte(s, '\n'); end < 0 || nl >= 0 && nl < end {
		n = 2
		return n, "", `"${" is not closed by "}" on the same line; write ${NAME} or ${NAME:-default}, or $${ for a literal "${"`
	}
	n = end + 1
	ref := string(s[2:end])
	name, def, hasDef := strings.Cut(ref, ":-")
	if !validEnvName(name) {
		return n, "", fmt.Sprintf("${%s}: %q is not a variable name; use letters, digits and '_', not starting with a digit (and ${NAME:-default} for a default)", ref, name)
	}
	v, ok := env(name)
	switch {
	case ok && (v != "" || !hasDef):
		return n, v, ""
	case hasDef:
		return n, def, ""
	}
	return n, "", fmt.Sprintf("environment variable %s is not set; set it for the edged service (systemd Environment= or EnvironmentFile=) or give a default: ${%s:-value}", name, name)
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// fitValue writes val so that it means itself where it is inserted.
func fitValue(val string, state textState, ref []byte) (string, string) {
	switch state {
	case basic, mlBasic:
		var b strings.Builder
		for _, r := range val {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteRune(r)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		return b.String(), ""
	case literal, mlLiteral:
		if strings.ContainsAny(val, "'\r\n") {
			return "", fmt.Sprintf("the value of %s contains a ' or a line break, which a 'literal string' cannot hold; write \"%s\" in double quotes instead", ref, ref)
		}
	default:
		if strings.ContainsAny(val, "\r\n") {
			return "", fmt.Sprintf("the value of %s contains a line break; write \"%s\" in double quotes", ref, ref)
		}
	}
	return val, ""
}
