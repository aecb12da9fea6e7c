package configs

import (
	"bytes"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const trickyTOML = `# comment [not.a.table] key = 1
title = "x # not a comment" # real comment
"quoted.key" = 1
'lit key'.sub = 2
a . b . c = 3
ml = """
[fake]
key = 1 \"""
"""
arr = [
  1, # comment ]
  [2, 3],
]
inline = { x = 1, y = { z = 2 } }
[[device]]
name = "a"
[[device.tag]]
name = "t0"
[[device.tag]]
name = "t1"
[device.extra]
k = 1
[[device]]
tags = [ { name = "u0" },
  { name = "u1" } ]
lit = '''
x = [y]'''''
after = 1
[ "sp ace" . 'q' ]
"esc\u0041pe" = 1
multi = {
  m = 1,
}
`

func TestLineIndex(t *testing.T) {
	if _, err := toml.Decode(trickyTOML, new(map[string]any)); err != nil {
		t.Fatalf("the tricky input must be valid TOML: %v", err)
	}
	tests := []struct {
		name string
		text string
		want map[string]int // path → line; 0: must not be found
	}{
		{
			name: "tricky",
			text: trickyTOML,
			want: map[string]int{
				"title":                  2,
				`"quoted.key"`:           3,
				`"lit key".sub`:          4,
				`"lit key"`:              4,
				"a.b.c":                  5,
				"a":                      5,
				"ml":                     6,
				"fake":                   0,
				"key":                    0,
				"not.a.table":            0,
				"arr":                    10,
				"inline":                 14,
				"inline.x":               14,
				"inline.y.z":             14,
				"device":                 15,
				"device[0]":              15,
				"device[0].name":         16,
				"device[0].tag[0]":       17,
				"device[0].tag[0].name":  18,
				"device[0].tag[1].name":  20,
				"device[0].extra":        21,
				"device[0].extra.k":      22,
				"device[1]":              23,
				"device[1].tag":          0,
				"device[1].tags":         24,
				"device[1].tags[0].name": 24,
				"device[1].tags[1]":      25,
				"device[1].tags[1].name": 25,
				"device[1].lit":          26,
				"device[1].x":            0,
				"device[1].after":        28,
				`"sp ace".q`:             29,
				`"sp ace".q.escApe`:      30,
				`"sp ace".q.multi.m`:     32,
			},
		},
		{
			name: "implied table then explicit",
			text: "[a.b]\nx = 1\n\n[a]\ny = 2\n",
			want: map[string]int{"a": 4, "a.b": 1, "a.b.x": 2, "a.y": 5},
		},
		{
			name: "nested arrays of tables",
			text: "[[a]]\n[[a.b]]\n[[a.b]]\nc = 1\n[[a]]\n[[a.b]]\nd = 1\nx = [[{e = 1}], [{f = 2}]]\n",
			want: map[string]int{"a[0].b[1].c": 4, "a[1].b[0].d": 7, "a[1].b[0].x[1][0].f": 8, "a[1].b[1]": 0},
		},
		{
			name: "crlf",
			text: "[gateway]\r\nid = \"x\"\r\n\r\nlog_level = 'y' # c\r\n",
			want: map[string]int{"gateway.id": 2, "gateway.log_level": 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := buildLineIndex([]byte(tt.text))
			for path, want := range tt.want {
				if got := idx.line(path); got != want {
					t.Errorf("line(%s) = %d, want %d", path, got, want)
				}
			}
			if t.Failed() {
				for _, e := range idx.entries {
					t.Logf("%d %s", e.line, e.path)
				}
			}
			checkIndexCoversParser(t, []byte(tt.text), idx)
		})
	}
}

// lineOfKey finds a key a driver names, or else the nearest enclosing
// table or array that is written: a missing tag key is at its
// [[device.tag]] header, not at the [[device]].
func TestLineOfKey(t *testing.T) {
	idx := buildLineIndex([]byte(trickyTOML))
	for path, want := range map[string]int{
		"device[0].tag[1].name":           20, // written
		"device[0].tag[1].area":           19, // missing: its [[device.tag]]
		"device[0].tag[0].area":           17,
		"device[0].tag[7].area":           17, // no such tag: the first [[device.tag]]
		"device[0].retries":               15, // missing: its [[device]]
		"device[1].tags[1].area":          25, // in an inline table
		"device[1].lit[3]":                26, // an element of an array of values
		`"sp ace".q.multi.zz`:             31, // quoted key, inline table
		`"sp ace".q."a.b[0]".c`:           29, // dots and brackets inside quotes
		`"sp ace".q."a\"b"`:               29, // an escaped quote
		"nowhere.at.all":                  0,
		"device[9].tag[0].write_function": 15, // the first [[device]]
	} {
		if got := idx.lineOfKey(path); got != want {
			t.Errorf("lineOfKey(%s) = %d, want %d", path, got, want)
		}
	}
}

// checkIndexCoversParser fails if the text is valid TOML and the parser
// finds a key that the index does not, or the index gives a line outside
// the text.
func checkIndexCoversParser(t *testing.T, text []byte, idx *lineIndex) {
	t.Helper()
	nlines := bytes.Count(text, []byte("\n")) + 1
	have := map[string]bool{}
	for _, e := range idx.entries {
		if e.line < 1 || e.line > nlines {
			t.Fatalf("%s at line %d of %d", e.path, e.line, nlines)
		}
		have[strings.Join(e.path.keys(), "\x00")] = true
	}
	var v map[string]any
	md, err := toml.Decode(string(text), &v)
	if err != nil {
		return
	}
	for _, k := range md.Keys() {
		if !have[strings.Join(k, "\x00")] {
			t.Fatalf("parser found key %q, the index did not", k)
		}
	}
}

// FuzzLineIndex checks that the index never panics or loops on any text,
// and that on valid TOML it finds every key the parser finds.
func FuzzLineIndex(f *testing.F) {
	f.Add([]byte(trickyTOML))
	f.Add([]byte(validMap))
	f.Add([]byte("a = [\n{b = 1}, \"\"\"x\n]\"\"\", '''\n'''\n]\n[[c . \"d\"]]\ne.f = 2\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		idx := buildLineIndex(text)
		checkIndexCoversParser(t, text, idx)
	})
}

// FuzzLoad checks that loading any text never panics and returns either a
// config or Errors.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(trickyTOML))
	f.Add([]byte("[gateway]\nid = \"${GW:-x}\"\n[[device]]\nname = \"a\"\ndriver = \"fake\"\nmap = \"m1\"\n[[device.tag]]\nname = 1\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		cfg, err := loadMem(memFS{testMain: string(text), testMaps + "m1.toml": validMap}, nil)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("config %v and error %v", cfg, err)
		}
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
		}
	})
}

func TestSubstituteEnv(t *testing.T) {
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"A": "va", "EMPTY": "", "Q": `x"y'z`, "NL": "l1\nl2"}[k]
		return v, ok
	}
	tests := []struct {
		in, want, err string
	}{
		{in: `a = "${A}"`, want: `a = "va"`},
		{in: `a = ${A}`, want: `a = va`},
		{in: `a = "${EMPTY:-d}" # ${NOPE}`, want: `a = "d" # ${NOPE}`},
		{in: `a = "${EMPTY}"`, want: `a = ""`},
		{in: `a = "${UNSET:-}"`, want: `a = ""`},
		{in: `a = "$${A}"`, want: `a = "${A}"`},
		{in: `a = "${Q}"`, want: `a = "x\"y'z"`},
		{in: `a = "${NL}"`, want: `a = "l1\nl2"`},
		{in: "a = \"\"\"\n${NL}\"\"\"", want: "a = \"\"\"\nl1\\nl2\"\"\""},
		{in: `a = '${Q}'`, err: "cannot hold"},
		{in: `a = ${NL}`, err: "contains a line break"},
		{in: `a = "${UNSET}"`, err: "UNSET is not set"},
		{in: `a = "${A B}"`, err: "is not a variable name"},
		{in: "a = \"${A\"\nb = \"}\"", err: "is not closed"},
		{in: `a = "x" # "${UNSET}`, want: `a = "x" # "${UNSET}`},
		{in: `a = 'x\' # ${UNSET}`, want: `a = 'x\' # ${UNSET}`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, errs := substituteEnv("f", []byte(tt.in), env)
			if tt.err != "" {
				if len(errs) != 1 || !strings.Contains(errs[0].Msg, tt.err) || errs[0].Line != 1 {
					t.Fatalf("errors %v, want one on line 1 with %q", errs, tt.err)
				}
				return
			}
			if len(errs) > 0 || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, errs, tt.want)
			}
		})
	}
}
