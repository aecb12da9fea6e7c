package configs

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// pathElem is one step of a key path: a key, then the array indexes that
// select an element of its value (one per level of nested arrays).
type pathElem struct {
	key string
	idx []int
}

// keyPath is a key from the root of a document with array indexes, as the
// installer counts them from 0: device[1].tag[0].type.
type keyPath []pathElem

// String formats the path as it appears in error messages; keys that are not
// bare TOML keys are quoted.
func (p keyPath) String() string {
	var b strings.Builder
	for i, e := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(e.key))
		for _, n := range e.idx {
			b.WriteString("[" + strconv.Itoa(n) + "]")
		}
	}
	return b.String()
}

// keys returns the path without indexes, as toml.MetaData names keys.
func (p keyPath) keys() []string {
	out := make([]string, len(p))
	for i, e := range p {
		out[i] = e.key
	}
	return out
}

// with returns a copy of p with key appended.
func (p keyPath) with(keys ...string) keyPath {
	out := make(keyPath, len(p), len(p)+len(keys))
	copy(out, p)
	for _, k := range keys {
		out = append(out, pathElem{key: k})
	}
	return out
}

// withIndex returns a copy of p whose last key selects element n.
func (p keyPath) withIndex(n int) keyPath {
	out := make(keyPath, len(p))
	copy(out, p)
	last := &out[len(out)-1]
	last.idx = append(append([]int(nil), last.idx...), n)
	return out
}

func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyByte(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// indexEntry is one key found in the text, or a table implied by a header or
// a dotted key.
type indexEntry struct {
	path keyPath
	line int
}

// lineIndex maps every key of a TOML document, with array indexes, to the
// line where it is written. BurntSushi's MetaData knows keys only without
// indexes (device.tag.type), so it cannot tell the installer which of forty
// tags is wrong; this index can.
//
// The index is built by a tolerant scanner: on valid TOML it finds every key
// the parser finds; on invalid text it never panics and always terminates,
// but what it finds is unspecified.
type lineIndex struct {
	entries []indexEntry   // in document order, one per distinct path
	lines   map[string]int // path.String() → entries position
}

// line returns the line of the key path (e.g. "device[1].tag[0].type"), or
// 0 if the text has no such key.
func (x *lineIndex) line(path string) int {
	if i, ok := x.lines[path]; ok {
		return x.entries[i].line
	}
	return 0
}

// lineOf is line for a keyPath, falling back to the nearest enclosing key
// that is written in the text (a table header, an inline table), so that an
// error about a missing key points at its table.
func (x *lineIndex) lineOf(p keyPath) int {
	for n := len(p); n > 0; n-- {
		if l := x.line(p[:n].String()); l > 0 {
			return l
		}
	}
	return 0
}

// lineOfKey is lineOf for a key path as keyPath.String formats it (as
// drivers name keys in their errors, e.g. "device[0].tag[2].area"): the
// line of the key, else of the nearest enclosing key or array that is
// written in the text, else 0.
func (x *lineIndex) lineOfKey(path string) int {
	if l := x.line(path); l > 0 {
		return l
	}
	// Try the prefixes that end before a '.' or '[' outside quotes, longest
	// first: device[0].tag[2].area → device[0].tag[2] → device[0].tag → …
	var cuts []int
	quoted := false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '.' || c == '['):
			cuts = append(cuts, i)
		}
	}
	for i := len(cuts) - 1; i >= 0; i-- {
		if l := x.line(path[:cuts[i]]); l > 0 {
			return l
		}
	}
	return 0
}

// add records path at line. A key stated explicitly (a header or key/value)
// replaces the line of a table that was only implied before, as in
// [a.b] followed later by [a].
func (x *lineIndex) add(p keyPath, line int, explicit bool) {
	s := p.String()
	if i, ok := x.lines[s]; ok {
		if explicit {
			x.entries[i].line = line
		}
		return
	}
	x.lines[s] = len(x.entries)
	x.entries = append(x.entries, indexEntry{path: p, line: line})
}

// addImplied records the tables that p's proper prefixes denote.
func (x *lineIndex) addImplied(p keyPath, line int) {
	for n := 1; n < len(p); n++ {
		x.add(p[:n], line, false)
	}
}

// buildLineIndex scans a TOML document (after ${ENV} substitution).
func buildLineIndex(text []byte) *lineIndex {
	s := &indexScanner{
		src:    text,
		line:   1,
		idx:    &lineIndex{lines: map[string]int{}},
		arrays: map[string]int{},
	}
	s.document()
	return s.idx
}

type indexScanner struct {
	src  []byte
	pos  int
	line int
	idx  *lineIndex

	table  keyPath        // the current [table] or [[array]] element
	arrays map[string]int // array-of-tables path (with parent indexes) → elements so far
}

func (s *indexScanner) eof() bool { return s.pos >= len(s.src) }

func (s *indexScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *indexScanner) has(prefix string) bool {
	return strings.HasPrefix(string(s.src[s.pos:min(len(s.src), s.pos+len(prefix))]), prefix)
}

// adv consumes one byte, counting lines.
func (s *indexScanner) adv() {
	if s.eof() {
		return
	}
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *indexScanner) skipSpaces() {
	for !s.eof() && (s.peek() == ' ' || s.peek() == '\t') {
		s.pos++
	}
}

// skipBlank skips spaces, line breaks and comments.
func (s *indexScanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.adv()
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine skips to the line break, not consuming it.
func (s *indexScanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

func (s *indexScanner) document() {
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		line := s.line
		if s.peek() == '[' {
			array := s.has("[[")
			s.adv()
			if array {
				s.adv()
			}
			s.skipSpaces()
			keys, ok := s.key()
			if ok {
				s.header(keys, array, line)
			}
		} else if keys, ok := s.key(); ok {
			s.skipSpaces()
			if s.peek() == '=' {
				s.adv()
				s.skipSpaces()
				p := s.table.with(keys...)
				s.idx.addImplied(p, line)
				s.idx.add(p, line, true)
				s.value(p)
			}
		}
		// Whatever is left on the line is a comment, a closing bracket or
		// an error the parser reports.
		s.skipLine()
	}
}

// header makes keys the current table. Every prefix that names an array of
// tables refers to its last element so far; [[keys]] appends an element.
func (s *indexScanner) header(keys []string, array bool, line int) {
	var p keyPath
	for i, k := range keys {
		p = p.with(k)
		n := s.arrays[p.String()]
		if i == len(keys)-1 && array {
			s.arrays[p.String()] = n + 1
			s.idx.add(p, line, false)
			p = p.withIndex(n)
			break
		}
		if n > 0 {
			p = p.withIndex(n - 1)
		}
		if i < len(keys)-1 {
			s.idx.add(p, line, false)
		}
	}
	s.idx.add(p, line, true)
	s.table = p
}

// key scans a possibly dotted, possibly quoted key and returns its parts.
func (s *indexScanner) key() ([]string, bool) {
	var parts []string
	for {
		s.skipSpaces()
		var part string
		switch c := s.peek(); {
		case c == '"':
			start := s.pos
			s.basicString()
			part = unescapeBasic(s.src[min(start+1, s.pos):max(start+1, s.pos-1)])
		case c == '\'':
			start := s.pos
			s.literalString()
			part = string(s.src[min(start+1, s.pos):max(start+1, s.pos-1)])
		case isBareKeyByte(c):
			start := s.pos
			for !s.eof() && isBareKeyByte(s.peek()) {
				s.pos++
			}
			part = string(s.src[start:s.pos])
		default:
			return parts, false
		}
		parts = append(parts, part)
		s.skipSpaces()
		if s.peek() != '.' {
			return parts, true
		}
		s.adv()
	}
}

// value skips one value whose key is p, recording the keys of inline tables
// and the elements of arrays of inline tables.
func (s *indexScanner) value(p keyPath) {
	switch {
	case s.eof() || s.peek() == '\n':
		return
	case s.has(`"""`):
		s.multiLineString(`"""`)
	case s.has(`'''`):
		s.multiLineString(`'''`)
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.literalString()
	case s.peek() == '[':
		s.array(p)
	case s.peek() == '{':
		s.inlineTable(p)
	default:
		// A number, boolean or date; dates may hold a space. Always make
		// progress, even on garbage.
		s.adv()
		for !s.eof() && !strings.ContainsRune(",]}#\n", rune(s.peek())) {
			s.adv()
		}
	}
}

func (s *indexScanner) array(p keyPath) {
	s.adv() // [
	for n := 0; ; {
		s.skipBlank()
		switch {
		case s.eof():
			return
		case s.peek() == ']':
			s.adv()
			return
		case s.peek() == ',':
			s.adv()
			continue
		}
		elem := p.withIndex(n)
		if s.peek() == '{' || s.peek() == '[' {
			s.idx.add(elem, s.line, true)
		}
		s.value(elem)
		n++
	}
}

func (s *indexScanner) inlineTable(p keyPath) {
	s.adv() // {
	for {
		s.skipBlank() // TOML 1.1 allows line breaks in inline tables
		switch {
		case s.eof():
			return
		case s.peek() == '}':
			s.adv()
			return
		case s.peek() == ',':
			s.adv()
			continue
		}
		line := s.line
		keys, ok := s.key()
		if !ok {
			s.adv()
			continue
		}
		kp := p.with(keys...)
		s.idx.addImplied(kp, line)
		s.idx.add(kp, line, true)
		s.skipSpaces()
		if s.peek() == '=' {
			s.adv()
			s.skipSpaces()
			s.value(kp)
		}
	}
}

// basicString skips "...", stopping at an unescaped quote or a line break.
func (s *indexScanner) basicString() {
	s.adv()
	for !s.eof() {
		switch s.peek() {
		case '\\':
			s.adv()
			if s.peek() != '\n' {
				s.adv()
			}
		case '"':
			s.adv()
			return
		case '\n':
			return
		default:
			s.adv()
		}
	}
}

// literalString skips '...'.
func (s *indexScanner) literalString() {
	s.adv()
	for !s.eof() {
		switch s.peek() {
		case '\'':
			s.adv()
			return
		case '\n':
			return
		default:
			s.adv()
		}
	}
}

// multiLineString skips a multi-line string (delim is three double or three
// single quotes); the closing delimiter may be
// preceded by up to two more quotes that belong to the string.
func (s *indexScanner) multiLineString(delim string) {
	s.adv()
	s.adv()
	s.adv()
	for !s.eof() {
		if delim == `"""` && s.peek() == '\\' {
			s.adv()
			s.adv()
			continue
		}
		if s.has(delim) {
			s.adv()
			s.adv()
			s.adv()
			for i := 0; i < 2 && s.peek() == delim[0]; i++ {
				s.adv()
			}
			return
		}
		s.adv()
	}
}

// unescapeBasic decodes the escapes of a basic string (a quoted key). Bad
// escapes are kept as written: the parser reports them.
func unescapeBasic(b []byte) string {
	if !strings.ContainsRune(string(b), '\\') {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out.WriteByte(b[i])
			continue
		}
		i++
		switch c := b[i]; c {
		case 'b':
			out.WriteByte('\b')
		case 't':
			out.WriteByte('\t')
		case 'n':
			out.WriteByte('\n')
		case 'f':
			out.WriteByte('\f')
		case 'r':
			out.WriteByte('\r')
		case 'e':
			out.WriteByte(0x1b)
		case '"', '\\':
			out.WriteByte(c)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if i+1+n > len(b) {
				out.WriteByte('\\')
				out.WriteByte(c)
				continue
			}
			r, err := strconv.ParseUint(string(b[i+1:i+1+n]), 16, 32)
			if err != nil || !utf8.ValidRune(rune(r)) {
				out.WriteByte('\\')
				out.WriteByte(c)
				continue
			}
			out.WriteRune(rune(r))
			i += n
		default:
			out.WriteByte('\\')
			out.WriteByte(c)
		}
	}
	return out.String()
}
