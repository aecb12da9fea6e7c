package mapping

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultTopicTemplate is the topic of a tag's value unless configured
// otherwise.
const DefaultTopicTemplate = "{prefix}/{gateway}/{device}/{tag}"

// Placeholders lists what a topic template may contain, for error messages
// and docs.
const Placeholders = "{prefix}, {gateway}, {device}, {tag}"

type placeholder uint8

const (
	literal placeholder = iota
	phPrefix
	phGateway
	phDevice
	phTag
)

var placeholderNames = map[string]placeholder{
	"prefix": phPrefix, "gateway": phGateway, "device": phDevice, "tag": phTag,
}

// part is literal text or one placeholder.
type part struct {
	ph   placeholder
	text string // for literal
}

// Template is a parsed MQTT topic template such as
// "{prefix}/{gateway}/{device}/{tag}". It is immutable and safe for
// concurrent use.
type Template struct {
	src    string
	levels [][]part
	uses   [phTag + 1]bool
}

// ParseTemplate parses a topic template. Levels are separated by "/"; each
// is literal text and placeholders {prefix}, {gateway}, {device}, {tag}.
// It refuses unknown placeholders, unbalanced braces, empty levels (a//b, a
// leading or trailing /), the MQTT wildcards + and #, NUL, and a leading $
// (reserved for broker topics such as $SYS); each error says what is allowed.
func ParseTemplate(s string) (*Template, error) {
	if s == "" {
		return nil, fmt.Errorf("topic template is empty: write levels separated by / using %s, e.g. %q", Placeholders, DefaultTopicTemplate)
	}
	if strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("topic template %q starts with $, which MQTT reserves for broker topics such as $SYS", s)
	}
	if i := strings.IndexAny(s, "+#\x00"); i >= 0 {
		c := s[i : i+1]
		if c == "\x00" {
			c = "NUL"
		}
		return nil, fmt.Errorf("topic template %q contains %s: the wildcards + and # and NUL are not allowed in a topic; use literal text and %s", s, c, Placeholders)
	}
	t := &Template{src: s}
	for i, level := range strings.Split(s, "/") {
		if level == "" {
			return nil, fmt.Errorf("topic template %q has an empty level (level %d): levels between / must not be empty, and the template must not start or end with /", s, i+1)
		}
		parts, err := parseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("topic template %q: %w", s, err)
		}
		for _, p := range parts {
			t.uses[p.ph] = true
		}
		t.levels = append(t.levels, parts)
	}
	return t, nil
}

func parseLevel(level string) ([]part, error) {
	var parts []part
	for level != "" {
		open := strings.IndexByte(level, '{')
		close := strings.IndexByte(level, '}')
		switch {
		case open < 0 && close < 0:
			return append(parts, part{text: level}), nil
		case close >= 0 && (open < 0 || close < open):
			return nil, fmt.Errorf("unbalanced braces: } without {; placeholders are %s", Placeholders)
		case close < 0:
			return nil, fmt.Errorf("unbalanced braces: { without } in the same level; placeholders are %s", Placeholders)
		}
		if open > 0 {
			parts = append(parts, part{text: level[:open]})
		}
		name := level[open+1 : close]
		if strings.IndexByte(name, '{') >= 0 {
			return nil, fmt.Errorf("unbalanced braces: { inside a placeholder; placeholders are %s", Placeholders)
		}
		ph, ok := placeholderNames[name]
		if !ok {
			return nil, fmt.Errorf("unknown placeholder {%s}: allowed are %s", name, Placeholders)
		}
		parts = append(parts, part{ph: ph})
		level = level[close+1:]
	}
	return parts, nil
}

// String returns the template as it was written.
func (t *Template) String() string { return t.src }

// Uses reports whether the template contains the placeholder named name
// ("prefix", "gateway", "device" or "tag"), so that a caller can require,
// for example, {tag} in a value topic.
func (t *Template) Uses(name string) bool {
	ph, ok := placeholderNames[strings.Trim(name, "{}")]
	return ok && t.uses[ph]
}

// ErrTopicValue is wrapped by CheckTopicValue errors.
var ErrTopicValue = errors.New("not allowed in a topic level")

// CheckTopicValue checks a value meant for a placeholder (a prefix, gateway,
// device or tag name): it must not contain / + # or NUL. An empty value is
// allowed; Render drops a level made only of empty placeholders.
func CheckTopicValue(v string) error {
	if i := strings.IndexAny(v, "/+#\x00"); i >= 0 {
		return fmt.Errorf("%q: %w: / + # and NUL are not allowed in a name used in a topic", v, ErrTopicValue)
	}
	return nil
}

// Render fills in the placeholders. A level made only of placeholders that
// are all empty is left out, so that an empty prefix gives "gw/dev/tag"
// rather than "/gw/dev/tag". Values are inserted as given: check them once
// with CheckTopicValue (Spec.Init already refuses such tag names).
func (t *Template) Render(prefix, gateway, device, tag string) string {
	vals := [...]string{phPrefix: prefix, phGateway: gateway, phDevice: device, phTag: tag}
	n := 0
	for _, level := range t.levels {
		for _, p := range level {
			n += len(p.text) + len(vals[p.ph]) + 1
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, level := range t.levels {
		empty := true
		for _, p := range level {
			if p.ph == literal || vals[p.ph] != "" {
				empty = false
				break
			}
		}
		if empty {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		for _, p := range level {
			if p.ph == literal {
				b.WriteString(p.text)
			} else {
				b.WriteString(vals[p.ph])
			}
		}
	}
	return b.String()
}
