package configs

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one problem found in a configuration file, located as precisely
// as the loader could: File is the file's path, Line is 1-based (0 when
// unknown), Key is the dotted key path with array indexes as an installer
// would count them from 0 (e.g. "device[1].tag[3].type"; empty when the
// problem is not about one key).
//
// A driver's Init returns an Error with File empty and Key relative to
// where the problem is written: to the device table ("tag[3].address" is
// device[N].tag[3].address of the main file), or, with InMap, to the
// device's map file ("tag[3].address" is the fourth [[tag]] of the map).
// The loader fills in the file and line.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
	// InMap says that Key is a key of the device's map file, not of its
	// table: set by drivers for the tags that came from the map.
	InMap bool
}

// Errorf is a problem with one key of a component's table, for the
// component's Init: the loader adds file and line.
func Errorf(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// TagErrorf is a problem with key (or the whole tag, for "") of tag i of
// a device whose first mapCount tags came from its map file: those are
// keyed tag[i] of the map (InMap), the others tag[i-mapCount] of the
// device table, as Error says.
func TagErrorf(i, mapCount int, key, format string, args ...any) *Error {
	e := Errorf(fmt.Sprintf("tag[%d]", i), format, args...)
	if e.InMap = i < mapCount; !e.InMap {
		e.Key = fmt.Sprintf("tag[%d]", i-mapCount)
	}
	if key != "" {
		e.Key += "." + key
	}
	return e
}

// Error formats the problem as "FILE:LINE: KEY: MSG", leaving out the parts
// that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	} else if e.InMap {
		b.WriteString("map: ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading a configuration, in file
// order then line order. Load returns either a valid *Config or a non-empty
// Errors, never both and never a different error type.
type Errors []*Error

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems as errors, so that errors.As(err, &e) with a
// *Error finds the first one.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted returns the problems without duplicates (a map shared by several
// devices is checked once per device), grouped by file in the order the
// files were first mentioned and ordered by line within a file; problems
// without a line come last in their file.
func (es Errors) sorted() Errors {
	fileRank := map[string]int{}
	seen := map[Error]bool{}
	var out Errors
	for _, e := range es {
		if seen[*e] {
			continue
		}
		seen[*e] = true
		if _, ok := fileRank[e.File]; !ok {
			fileRank[e.File] = len(fileRank)
		}
		out = append(out, e)
	}
	lineRank := func(l int) int {
		if l == 0 {
			return int(^uint(0) >> 1)
		}
		return l
	}
	slices.SortStableFunc(out, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(fileRank[a.File], fileRank[b.File]),
			cmp.Compare(lineRank(a.Line), lineRank(b.Line)),
		)
	})
	return out
}

// libraryError is what a BurntSushi decode error says, taken apart.
type libraryError struct {
	line int
	key  toml.Key // without array indexes, from the root of the document
	msg  string   // readable, without "toml:" noise
}

var (
	// md.e formats its errors as `toml: line N (last key "a.b"): msg`.
	reLibPrefix = regexp.MustCompile(`^toml: (?:line (\d+) )?(?:\(last key "((?:[^"\\]|\\.)*)"\): )?`)
	reLibTypes  = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	reLibTable  = regexp.MustCompile(`^type mismatch for .+: expected table but found (.+)$`)
)

// splitLibraryError extracts line, key and message from an error returned
// by the toml decoder: a toml.ParseError (syntax errors, TextUnmarshaler
// errors, range errors) or a plain error from a type mismatch.
func splitLibraryError(err error) libraryError {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		le := libraryError{line: pe.Position.Line, msg: pe.Message}
		if pe.LastKey != "" {
			le.key = splitKey(pe.LastKey)
		}
		// Syntax errors: the usage text is long; the message is enough.
		le.msg = readableLibraryMsg(strings.TrimPrefix(le.msg, "toml: "))
		return le
	}
	s := err.Error()
	var le libraryError
	if m := reLibPrefix.FindStringSubmatch(s); m != nil {
		le.line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			k, uerr := strconv.Unquote(`"` + m[2] + `"`)
			if uerr != nil {
				k = m[2]
			}
			le.key = splitKey(k)
		}
		s = s[len(m[0]):]
	}
	le.msg = readableLibraryMsg(s)
	return le
}

// readableLibraryMsg turns the decoder's type jargon into what an installer
// wrote and what they should write.
func readableLibraryMsg(s string) string {
	if m := reLibTypes.FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("wrong type: found %s, expected %s", tomlTypeName(m[1]), goTypeName(m[2]))
	}
	if m := reLibTable.FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("wrong type: found %s, expected a table", tomlTypeName(m[1]))
	}
	return s
}

// tomlTypeName names the Go type the parser produced as the TOML type the
// installer wrote.
func tomlTypeName(goType string) string {
	switch {
	case goType == "int64":
		return "an integer"
	case goType == "float64":
		return "a float"
	case goType == "bool":
		return "a boolean (true/false)"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "a table"
	case strings.Contains(goType, "Time") || strings.Contains(goType, "Local"):
		return "a date/time"
	}
	return goType
}

// goTypeName names the decoder's destination type as TOML.
func goTypeName(dst string) string {
	switch dst {
	case "integer":
		return "an integer"
	case "float":
		return "a number"
	case "boolean":
		return "true or false"
	case "string", "primitive (string-like)":
		return `a string in quotes`
	case "slice":
		return "an array [ ... ]"
	case "map":
		return "a table"
	}
	return dst
}

// splitKey splits a key as toml.Key.String formats it ("a.\"b.c\".d") into
// its parts.
func splitKey(s string) toml.Key {
	var k toml.Key
	for len(s) > 0 {
		if s[0] == '"' {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			part, err := strconv.Unquote(s[:min(end+1, len(s))])
			if err != nil {
				part = s[1:min(end, len(s))]
			}
			k = append(k, part)
			s = s[min(end+1, len(s)):]
		} else {
			dot := strings.IndexByte(s, '.')
			if dot < 0 {
				dot = len(s)
			}
			k = append(k, s[:dot])
			s = s[dot:]
		}
		s = strings.TrimPrefix(s, ".")
	}
	return k
}
