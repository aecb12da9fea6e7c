package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// The fake drivers stand in for the real ones (written elsewhere): fake
// takes a map, plain does not.

type fakeTag struct {
	Name    string            `toml:"name"`
	Address int               `toml:"address"`
	Topic   string            `toml:"topic"` // as in mapping.Spec
	Meta    map[string]string `toml:"meta"`
}

// fakeCommon is embedded to check that flattened fields are decoded and
// allowed.
type fakeCommon struct {
	Timeout Duration `toml:"timeout"`
}

type fakeSettings struct {
	fakeCommon
	Host         string    `toml:"host"`
	PollInterval Duration  `toml:"poll_interval"`
	Retries      int       `toml:"retries"`
	Tags         []fakeTag `toml:"tag"`

	fromMap fakeMap
}

type fakeMap struct {
	Model string    `toml:"model"`
	Tags  []fakeTag `toml:"tag"`
}

var (
	_ Settings = (*fakeSettings)(nil)
	_ Mapped   = (*fakeSettings)(nil)
)

func (s *fakeSettings) MapTarget() any { return &s.fromMap }

// Init rejects more than 10 retries (as a keyed *Error), tags without a
// name or with a negative address (keyed to the tag in the map file or the
// device table) and duplicate tag names across the device table and the
// map (as a plain error).
func (s *fakeSettings) Init() error {
	if s.Retries > 10 {
		return &Error{Key: "retries", Msg: fmt.Sprintf("%d retries is too many; at most 10", s.Retries)}
	}
	var errs []error
	for _, src := range []struct {
		tags  []fakeTag
		inMap bool
	}{{s.fromMap.Tags, true}, {s.Tags, false}} {
		for i, t := range src.tags {
			if t.Name == "" {
				errs = append(errs, &Error{Key: fmt.Sprintf("tag[%d].name", i), Msg: "name is missing", InMap: src.inMap})
			}
			if t.Address < 0 {
				errs = append(errs, &Error{Key: fmt.Sprintf("tag[%d].address", i), Msg: fmt.Sprintf("address %d is negative", t.Address), InMap: src.inMap})
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	seen := map[string]bool{}
	for _, t := range append(slices.Clone(s.fromMap.Tags), s.Tags...) {
		if seen[t.Name] {
			return fmt.Errorf("duplicate tag name %q; tag names must be unique in a device and its map", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

type plainSettings struct {
	Port int `toml:"port"`
}

func (s *plainSettings) Init() error { return nil }

type fakeDrivers struct{}

func (fakeDrivers) New(name string) (Settings, bool) {
	switch name {
	case "fake":
		return &fakeSettings{}, true
	case "plain":
		return &plainSettings{}, true
	}
	return nil, false
}

func (fakeDrivers) Names() []string { return []string{"plain", "fake"} }

// memFS is a folder tree in memory: path → content.
type memFS map[string]string

func (m memFS) readFile(p string) ([]byte, error) {
	if s, ok := m[p]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

func (m memFS) listMaps(dir string) ([]string, error) {
	var names []string
	exists := false
	for p := range m {
		if strings.HasPrefix(p, dir+"/") {
			exists = true
		}
		if filepath.Dir(p) == dir && strings.HasSuffix(p, ".toml") {
			names = append(names, strings.TrimSuffix(filepath.Base(p), ".toml"))
		}
	}
	if !exists {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: fs.ErrNotExist}
	}
	return names, nil
}

const (
	testDir  = "/etc/edged"
	testMain = "/etc/edged/edged.toml"
	testMaps = "/etc/edged/maps/"
)

// loadMem loads testMain from files with env as the environment.
func loadMem(files memFS, env map[string]string) (*Config, error) {
	l := &loader{
		env:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		readFile: files.readFile,
		listMaps: files.listMaps,
		drivers:  fakeDrivers{},
	}
	return l.load(testMain, testDir)
}

// lines joins its arguments as lines, so that a test can count them.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
