package configs

import (
	"encoding"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// schemaField is one key a struct accepts.
type schemaField struct {
	name  string
	typ   reflect.Type
	index []int // for reflect.Value.FieldByIndex, through embedded structs
}

// schemaKind says what a Go type accepts below it.
type schemaKind int

const (
	anyKeys schemaKind = iota // interface, toml.Primitive, toml.Unmarshaler: not ours to check
	leaf                      // scalars and TextUnmarshalers: no keys below
	table                     // a struct: exactly its fields
	mapOf                     // a map: any key, values of elem
	listOf                    // a slice or array: elements of elem
)

// schema is what a type accepts, as the toml decoder sees it.
type schema struct {
	kind   schemaKind
	fields []schemaField // table
	elem   reflect.Type  // mapOf, listOf
}

var (
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	primitiveType   = reflect.TypeFor[toml.Primitive]()
)

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func schemaOf(t reflect.Type) schema {
	t = deref(t)
	if t == nil || t == primitiveType {
		return schema{kind: anyKeys}
	}
	pt := reflect.PointerTo(t)
	switch {
	case t.Implements(tomlUnmarshaler) || pt.Implements(tomlUnmarshaler):
		return schema{kind: anyKeys}
	case t.Implements(textUnmarshaler) || pt.Implements(textUnmarshaler):
		return schema{kind: leaf}
	}
	switch t.Kind() {
	case reflect.Interface:
		return schema{kind: anyKeys}
	case reflect.Struct:
		return schema{kind: table, fields: fieldsOf(t)}
	case reflect.Map:
		return schema{kind: mapOf, elem: t.Elem()}
	case reflect.Slice, reflect.Array:
		return schema{kind: listOf, elem: t.Elem()}
	}
	return schema{kind: leaf}
}

// fieldsOf lists the keys a struct accepts, in declaration order, as the
// toml decoder matches them: the `toml` tag's name or the Go field name;
// "-" and unexported fields skipped; anonymous structs without a tag name
// flattened into their parent, a shallower field hiding a deeper one of the
// same name.
//
// The lists are cached per type (callers must not change them): the key
// checks ask for them per key, and a config of ten devices sharing a
// 500-tag map took 240 MB of allocations and 0.35 s to load without.
func fieldsOf(t reflect.Type) []schemaField {
	if f, ok := fieldsCache.Load(t); ok {
		return f.([]schemaField)
	}
	// Clipped: a caller appending to the list gets a copy.
	f, _ := fieldsCache.LoadOrStore(t, slices.Clip(listFields(t)))
	return f.([]schemaField)
}

var fieldsCache sync.Map // reflect.Type → []schemaField

func listFields(t reflect.Type) []schemaField {
	type embedded struct {
		typ   reflect.Type
		index []int
	}
	var out []schemaField
	seen := map[string]bool{}
	level := []embedded{{typ: t}}
	visited := map[reflect.Type]bool{}
	for len(level) > 0 {
		var next []embedded
		var found []schemaField
		for _, em := range level {
			st := em.typ
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				sf := st.Field(i)
				if !sf.IsExported() && !sf.Anonymous {
					continue
				}
				tag := sf.Tag.Get("toml")
				name, _, _ := strings.Cut(tag, ",")
				if name == "-" {
					continue
				}
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				index := append(slices.Clone(em.index), i)
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					next = append(next, embedded{typ: ft, index: index})
					continue
				}
				if !sf.IsExported() {
					continue
				}
				if name == "" {
					name = sf.Name
				}
				found = append(found, schemaField{name: name, typ: sf.Type, index: index})
			}
		}
		for _, f := range found {
			if !seen[f.name] {
				seen[f.name] = true
				out = append(out, f)
			}
		}
		level = next
	}
	return out
}

// lookupField finds the field for a TOML key as the decoder does: an exact
// name first, else a case-insensitive one.
func lookupField(fields []schemaField, key string) (schemaField, bool) {
	var fold *schemaField
	for i := range fields {
		if fields[i].name == key {
			return fields[i], true
		}
		if fold == nil && strings.EqualFold(fields[i].name, key) {
			fold = &fields[i]
		}
	}
	if fold != nil {
		return *fold, true
	}
	return schemaField{}, false
}

func fieldNames(fields []schemaField) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.name
	}
	return out
}

// unknownKey is a key written in a file that nothing decodes.
type unknownKey struct {
	path    keyPath
	line    int
	allowed []string
}

// findUnknownKeys checks every key of the index against the schema of root.
// override, when it returns true, replaces the schema at a path (the driver
// struct of device[i]). Only the outermost unknown key is reported: a
// misspelled [table] is one error, not one per key in it. Keys below values
// the decoder could not take (a type error) are left to that error.
func findUnknownKeys(idx *lineIndex, root reflect.Type, override func(keyPath) (schema, bool)) []unknownKey {
	var out []unknownKey
	reported := map[string]bool{}
entries:
	for _, e := range idx.entries {
		cur := schemaOf(root)
		for n, el := range e.path {
			var next schema
			switch cur.kind {
			case table:
				f, ok := lookupField(cur.fields, el.key)
				if !ok {
					// Report the key itself, not an element of its value.
					p := append(slices.Clone(e.path[:n]), pathElem{key: el.key})
					if s := p.String(); !reported[s] {
						reported[s] = true
						out = append(out, unknownKey{path: p, line: idx.lineOf(p), allowed: fieldNames(cur.fields)})
					}
					continue entries
				}
				next = schemaOf(f.typ)
			case mapOf:
				next = schemaOf(cur.elem)
			default:
				continue entries
			}
			for range el.idx {
				if next.kind != listOf {
					continue entries
				}
				next = schemaOf(next.elem)
			}
			if s, ok := override(e.path[:n+1]); ok {
				next = s
			}
			cur = next
		}
	}
	return out
}

// unknownKeyMsg says what is allowed, and what was probably meant.
func unknownKeyMsg(key string, allowed []string) string {
	msg := "unknown key"
	if s := closest(key, allowed); s != "" {
		msg += "; did you mean " + s + "?"
	}
	if len(allowed) == 0 {
		return msg + "; nothing is allowed here"
	}
	return msg + "; allowed here: " + strings.Join(allowed, ", ")
}

// closest returns the candidate nearest to s by edit distance (letters
// swapped count as one edit, case is ignored), or "" if none is near enough
// to be a likely typo.
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD*3 > len(s)+1 {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours cost 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// locateError turns the key of a decode error, which the decoder gives
// without array indexes, into the indexed path of the element that failed.
// start is the indexed path already known (device[2], or empty for a map
// file), startType the type decoded there, and rest the error key below
// start. Elements of an array are decoded in order and decoding stops at the
// first error, so the failing element is the first one that fails on its
// own; locateError finds it by decoding the elements one by one from a fresh
// parse of text. Parts it cannot resolve are kept without index.
func locateError(text []byte, start keyPath, startType reflect.Type, rest []string) keyPath {
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(text), &top)
	if err != nil {
		return start.with(rest...)
	}
	// Find the primitive at start.
	var cur toml.Primitive
	atRoot := true
	for _, el := range start {
		m, ok := tableAt(&md, top, cur, atRoot)
		if !ok {
			return start.with(rest...)
		}
		cur, atRoot = m[el.key], false
		for _, n := range el.idx {
			var elems []toml.Primitive
			if md.PrimitiveDecode(cur, &elems) != nil || n >= len(elems) {
				return start.with(rest...)
			}
			cur = elems[n]
		}
	}
	path, t := start, startType
	for i, key := range rest {
		s := schemaOf(t)
		var ft reflect.Type
		switch s.kind {
		case table:
			f, ok := lookupField(s.fields, key)
			if !ok {
				return path.with(rest[i:]...)
			}
			ft = f.typ
		case mapOf:
			ft = s.elem
		default:
			return path.with(rest[i:]...)
		}
		m, ok := tableAt(&md, top, cur, atRoot)
		if !ok {
			return path.with(rest[i:]...)
		}
		cur, atRoot = m[key], false
		path = path.with(key)
		t = ft
		if i == len(rest)-1 {
			break
		}
		// Descend into the failing element of (nested) arrays of tables.
		for schemaOf(t).kind == listOf {
			elemType := schemaOf(t).elem
			var elems []toml.Primitive
			if md.PrimitiveDecode(cur, &elems) != nil {
				return path.with(rest[i+1:]...)
			}
			failed := -1
			for j, e := range elems {
				v := reflect.New(deref(elemType))
				if md.PrimitiveDecode(e, v.Interface()) != nil {
					failed = j
					break
				}
			}
			if failed < 0 {
				return path.with(rest[i+1:]...)
			}
			path = path.withIndex(failed)
			cur, t = elems[failed], elemType
		}
	}
	return path
}

func tableAt(md *toml.MetaData, top map[string]toml.Primitive, cur toml.Primitive, atRoot bool) (map[string]toml.Primitive, bool) {
	if atRoot {
		return top, true
	}
	var m map[string]toml.Primitive
	if md.PrimitiveDecode(cur, &m) != nil {
		return nil, false
	}
	return m, true
}

// sortedNames returns names sorted, for messages that list choices.
func sortedNames(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return out
}
