// Package topic parses and renders MQTT topic templates such as
// "{prefix}/{gateway}/{device}/{tag}" or, for a Unified Namespace,
// "acme/{meta.site}/{meta.area}/{meta.line}/{device}/{tag}". It is pure
// text work with no dependencies, so that both the config loader (which
// checks every template and renders every tag's topic once, at load time)
// and the gateway (which renders them when it builds a config's device
// table) use the same code.
package topic

import (
	"errors"
	"fmt"
	"strings"
)

// Default is the topic of a tag's value unless configured otherwise.
const Default = "{prefix}/{gateway}/{device}/{tag}"

// Placeholders lists what a template may contain, for error messages and
// docs.
const Placeholders = "{prefix}, {gateway}, {device}, {tag}, {meta.KEY}"

type placeholder uint8

const (
	literal placeholder = iota
	phPrefix
	phGateway
	phDevice
	phTag
	phMeta // {meta.KEY}: part.text holds KEY
)

var placeholderNames = map[string]placeholder{
	"prefix": phPrefix, "gateway": phGateway, "device": phDevice, "tag": phTag,
}

// part is literal text or one placeholder.
type part struct {
	ph   placeholder
	text string // the literal, or the meta key
}

// Template is a parsed MQTT topic template. It is immutable and safe for
// concurrent use.
type Template struct {
	src    string
	levels [][]part
	uses   [phMeta + 1]bool
	meta   []string // meta keys used, in order of first use
}

// Parse parses a topic template. Levels are separated by "/"; each is
// literal text and the placeholders {prefix}, {gateway}, {device}, {tag}
// and {meta.KEY} (KEY: letters, digits, '-' and '_'). It refuses unknown
// placeholders, unbalanced braces, empty levels (a//b, a leading or
// trailing /), the MQTT wildcards + and #, NUL, and a leading $ (reserved
// for broker topics such as $SYS); each error says what is allowed.
func Parse(s string) (*Template, error) {
	if s == "" {
		return nil, fmt.Errorf("topic template is empty: write levels separated by / using %s, e.g. %q", Placeholders, Default)
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
			if p.ph == phMeta && !contains(t.meta, p.text) {
				t.meta = append(t.meta, p.text)
			}
		}
		t.levels = append(t.levels, parts)
	}
	return t, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
		if key, ok := strings.CutPrefix(name, "meta."); ok {
			if !ValidMetaKey(key) {
				return nil, fmt.Errorf("placeholder {%s}: a meta key is letters, digits, '-' and '_', e.g. {meta.area}", name)
			}
			parts = append(parts, part{ph: phMeta, text: key})
		} else {
			ph, ok := placeholderNames[name]
			if !ok {
				hint := ""
				if name == "meta" {
					hint = " (write {meta.KEY} with the key of a device's or tag's meta, e.g. {meta.area})"
				}
				return nil, fmt.Errorf("unknown placeholder {%s}: allowed are %s%s", name, Placeholders, hint)
			}
			parts = append(parts, part{ph: ph})
		}
		level = level[close+1:]
	}
	return parts, nil
}

// ValidMetaKey reports whether k may be a meta key: not empty, letters,
// digits, '-' and '_' (a bare TOML key).
func ValidMetaKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// String returns the template as it was written.
func (t *Template) String() string { return t.src }

// Uses reports whether the template contains the placeholder named name
// ("prefix", "gateway", "device", "tag", or "meta" for any {meta.KEY}), so
// that a caller can require, for example, {tag} in a value topic.
func (t *Template) Uses(name string) bool {
	name = strings.Trim(name, "{}")
	if name == "meta" {
		return t.uses[phMeta]
	}
	ph, ok := placeholderNames[name]
	return ok && t.uses[ph]
}

// MetaKeys returns the keys of the {meta.KEY} placeholders, in order of
// first use; the caller must not change the slice.
func (t *Template) MetaKeys() []string { return t.meta }

// ErrValue is wrapped by CheckValue errors.
var ErrValue = errors.New("not allowed in a topic level")

// CheckValue checks a value meant for a placeholder (a prefix, gateway,
// device or tag name, a meta value): it must not contain / + # or NUL. An
// empty value is allowed; rendering drops a level made only of empty
// placeholders.
func CheckValue(v string) error {
	if i := strings.IndexAny(v, "/+#\x00"); i >= 0 {
		return fmt.Errorf("%q: %w: / + # and NUL are not allowed in a name used in a topic", v, ErrValue)
	}
	return nil
}

// Fields are the values a template is rendered with. A {meta.KEY} is
// looked up in TagMeta first, then in DeviceMeta.
type Fields struct {
	Prefix, Gateway, Device, Tag string
	TagMeta, DeviceMeta          map[string]string
}

// Meta returns the value of the meta key k: the tag's, else the device's.
func (f *Fields) Meta(k string) (string, bool) {
	if v, ok := f.TagMeta[k]; ok {
		return v, true
	}
	v, ok := f.DeviceMeta[k]
	return v, ok
}

// MissingMetaError says that a template uses a meta key the fields lack.
type MissingMetaError struct{ Key string }

func (e *MissingMetaError) Error() string {
	return fmt.Sprintf("{meta.%s} is used but neither the tag nor its device sets meta key %q", e.Key, e.Key)
}

// Expand renders the template with f. A level made only of placeholders
// that are all empty is left out, so that an empty prefix gives
// "gw/dev/tag" rather than "/gw/dev/tag". Values are inserted as given:
// check them once with CheckValue. A {meta.KEY} that f lacks is a
// *MissingMetaError (the config loader reports it, with the lines, before
// anything renders).
func (t *Template) Expand(f *Fields) (string, error) {
	for _, k := range t.meta {
		if _, ok := f.Meta(k); !ok {
			return "", &MissingMetaError{Key: k}
		}
	}
	return t.expand(f), nil
}

// Render is Expand with no meta: a {meta.KEY} renders empty.
func (t *Template) Render(prefix, gateway, device, tag string) string {
	return t.expand(&Fields{Prefix: prefix, Gateway: gateway, Device: device, Tag: tag})
}

func (t *Template) value(p part, f *Fields) string {
	switch p.ph {
	case phPrefix:
		return f.Prefix
	case phGateway:
		return f.Gateway
	case phDevice:
		return f.Device
	case phTag:
		return f.Tag
	case phMeta:
		v, _ := f.Meta(p.text)
		return v
	}
	return p.text
}

func (t *Template) expand(f *Fields) string {
	n := 0
	for _, level := range t.levels {
		for _, p := range level {
			n += len(t.value(p, f)) + 1
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, level := range t.levels {
		empty := true
		for _, p := range level {
			if p.ph == literal || t.value(p, f) != "" {
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
			b.WriteString(t.value(p, f))
		}
	}
	return b.String()
}
