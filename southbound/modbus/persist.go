package modbus

// Saved learned plans. What a device taught the planner (cuts, unreadable
// tags, lowered read limits) is saved under <data_dir>/modbus/<device>.plan.json
// whenever it changes, and loaded at Start, so that a restart does not
// repeat the burst of refused reads that found it. The file holds the
// facts learned, not the requests: Start plans again from them, as the
// running device would. A fingerprint of everything the plan depends on
// keeps a file from outliving the configuration it was learned with.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edged-gw/edged/southbound"
)

var (
	_ southbound.DataDirUser = (*TCP)(nil)
	_ southbound.DataDirUser = (*RTU)(nil)
)

// Driver kinds, as in the fingerprint (the `driver = "…"` values).
const (
	kindTCP = "modbus-tcp"
	kindRTU = "modbus-rtu"
)

// planFileVersion is the format of the saved files; a file of another
// version is ignored.
const planFileVersion = 1

// planDir is the folder under data_dir that holds the saved plans.
const planDir = "modbus"

// errStalePlan says that a saved plan was learned with other tags, limits,
// unit or driver than the device has now.
var errStalePlan = errors.New("learned with another configuration (tags, max_registers, max_bits, max_gap, unit_id or driver changed); the device learns again")

// SetDataDir implements southbound.DataDirUser: the learned plan is saved
// under <dir>/modbus/ and loaded from there at Start.
func (t *TCP) SetDataDir(dir string) { t.setDataDir(dir, kindTCP) }

// SetDataDir implements southbound.DataDirUser: the learned plan is saved
// under <dir>/modbus/ and loaded from there at Start.
func (r *RTU) SetDataDir(dir string) { r.setDataDir(dir, kindRTU) }

// SavedPlan reads the device's saved learned plan under dataDir as Start
// would, without changing the device; valid after Init.
func (t *TCP) SavedPlan(dataDir string) SavedPlan { return t.savedPlan(dataDir, kindTCP) }

// SavedPlan reads the device's saved learned plan under dataDir as Start
// would, without changing the device; valid after Init.
func (r *RTU) SavedPlan(dataDir string) SavedPlan { return r.savedPlan(dataDir, kindRTU) }

// SavedPlan is what a device's saved learned plan gives, as `edged plan`
// shows it.
type SavedPlan struct {
	// Path is the file ("" when the device has no place to save to).
	Path string
	// Learned is what Start begins with when Err is nil.
	Learned Learned
	// Err says why Start would not use the file; it wraps fs.ErrNotExist
	// when nothing was saved yet.
	Err error
}

// planStore is where one device saves what it learned.
type planStore struct {
	path string
	kind string // kindTCP or kindRTU
	unit int
	lim  Limits // as configured, before anything was learned
	// tried is set once Start tried to load the file: a driver started
	// again keeps what it learned in memory.
	tried bool
}

// setDataDir makes the device save to and load from dir. A device whose
// name cannot be a file name (never one the config loader accepts) saves
// nothing.
func (d *Device) setDataDir(dir, kind string) {
	d.dev.store = nil
	if dir == "" || d.Name == "" || strings.ContainsAny(d.Name, `/\`) || d.Name == "." || d.Name == ".." {
		return
	}
	d.dev.store = &planStore{
		path: filepath.Join(dir, planDir, d.Name+".plan.json"),
		kind: kind,
		unit: d.UnitID,
		lim:  d.Limits(),
	}
}

func (d *Device) savedPlan(dataDir, kind string) SavedPlan {
	if !d.inited {
		return SavedPlan{Err: errors.New("device not initialised")}
	}
	var scratch Device
	scratch.Name, scratch.UnitID = d.Name, d.UnitID
	scratch.MaxGap, scratch.MaxRegisters, scratch.MaxBits = d.MaxGap, d.MaxRegisters, d.MaxBits
	scratch.setDataDir(dataDir, kind)
	s := scratch.dev.store
	if s == nil {
		return SavedPlan{Err: errors.New("no data_dir to save learned plans to")}
	}
	var c core
	c.init(d.Name, d.tags, d.Limits(), d.Retries)
	st, err := s.read(d.Name, c.tags, c.holeRetry)
	if err != nil {
		return SavedPlan{Path: s.path, Err: err}
	}
	c.apply(st, s.path)
	return SavedPlan{Path: s.path, Learned: c.learned()}
}

// planFile is the saved form of what a device learned. Cuts, Unreadable
// and the limits are what Start uses; Plan is there for people reading
// the file.
type planFile struct {
	Version      int         `json:"version"`
	Device       string      `json:"device"`
	Driver       string      `json:"driver"`
	Fingerprint  string      `json:"fingerprint"`
	Saved        time.Time   `json:"saved"`
	MaxRegisters int         `json:"max_registers"`
	MaxBits      int         `json:"max_bits"`
	Cuts         []savedCut  `json:"cuts"`
	Unreadable   []savedHole `json:"unreadable"`
	Plan         []string    `json:"plan"`
}

// savedCut is a Cut: no read contains both Address-1 and Address.
type savedCut struct {
	Area    Area `json:"area"`
	Address int  `json:"address"`
}

// savedHole is an unreadable tag: its registers, and the exception code
// the device refused it with.
type savedHole struct {
	Tag       string `json:"tag"`
	Area      Area   `json:"area"`
	Address   int    `json:"address"`
	Count     int    `json:"count"`
	Exception byte   `json:"exception"`
}

// learnedState is a validated saved plan, ready to apply to a core.
type learnedState struct {
	lim   Limits
	cut   cuts
	holes map[int]error
}

// fingerprint identifies what a plan depends on: the driver, the unit, the
// configured limits and the registers the tags occupy (not their names,
// types or order, which the planner does not look at).
func fingerprint(kind string, unit int, lim Limits, tags []Tag) string {
	lines := make([]string, len(tags))
	for i := range tags {
		t := &tags[i]
		lines[i] = fmt.Sprintf("%s %d %d\n", t.Area, t.Address, t.width())
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	h := sha256.New()
	fmt.Fprintf(h, "edged modbus plan %d\ndriver %s\nunit %d\nmax_registers %d\nmax_bits %d\nmax_gap %d\n",
		planFileVersion, kind, unit, lim.MaxRegisters, lim.MaxBits, lim.MaxGap)
	for _, l := range lines {
		io.WriteString(h, l)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// read loads and checks the saved file for tags. The error wraps
// fs.ErrNotExist when there is none, errStalePlan when it was learned with
// another configuration; any other error means it is unreadable or corrupt.
func (s *planStore) read(device string, tags []Tag, holeRetry int) (learnedState, error) {
	var st learnedState
	raw, err := os.ReadFile(s.path)
	if err != nil {
		return st, err
	}
	var f planFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return st, fmt.Errorf("corrupt: %w", err)
	}
	if f.Version != planFileVersion {
		return st, fmt.Errorf("format version %d, this edged reads %d", f.Version, planFileVersion)
	}
	if f.Fingerprint != fingerprint(s.kind, s.unit, s.lim, tags) {
		return st, errStalePlan
	}
	if f.Device != device || f.Driver != s.kind {
		return st, fmt.Errorf("saved for device %q (%s), not %q (%s)", f.Device, f.Driver, device, s.kind)
	}
	st.lim = s.lim
	if f.MaxRegisters < 1 || f.MaxRegisters > s.lim.MaxRegisters || f.MaxBits < 1 || f.MaxBits > s.lim.MaxBits {
		return st, fmt.Errorf("corrupt: max_registers %d, max_bits %d out of range", f.MaxRegisters, f.MaxBits)
	}
	st.lim.MaxRegisters, st.lim.MaxBits = f.MaxRegisters, f.MaxBits
	st.cut = cuts{}
	for _, c := range f.Cuts {
		if !c.Area.valid() || c.Address < 0 || c.Address > 65535 {
			return st, fmt.Errorf("corrupt: cut %s %d", c.Area, c.Address)
		}
		if c.Address == 0 {
			continue // a cut below address 0 divides nothing; edged before 2026-12 saved one for a hole at 0
		}
		st.cut.add(c.Area, c.Address)
	}
	st.holes = map[int]error{}
	for _, h := range f.Unreadable {
		ex := &Exception{Function: byte(h.Area.FunctionCode()), Code: h.Exception}
		if !h.Area.valid() || h.Count < 1 || !refused(ex) {
			return st, fmt.Errorf("corrupt: unreadable tag %q: %s, exception %d", h.Tag, h.Area, h.Exception)
		}
		herr := fmt.Errorf("read %s %d+%d: %w (the device refuses this address; re-read every %d polls)",
			h.Area.short(), h.Address, h.Count, ex, holeRetry)
		found := false
		for k := range tags {
			if t := &tags[k]; t.Area == h.Area && t.Address == h.Address && t.width() == h.Count {
				st.holes[k], found = herr, true
			}
		}
		if !found { // the fingerprint matched: the file was edited
			return st, fmt.Errorf("corrupt: unreadable tag %q (%s %d) is not a tag of the device", h.Tag, h.Area, h.Address)
		}
	}
	return st, nil
}

// apply makes st what the core has learned; from names the file.
func (c *core) apply(st learnedState, from string) {
	c.lim, c.cut, c.holes, c.loadedFrom = st.lim, st.cut, st.holes, from
	c.replan()
}

// restore loads the saved learned plan, once per driver and only when
// nothing was learned in memory yet; called by start. A missing, stale or
// broken file leaves the configured plan: the device learns again.
func (c *core) restore() {
	s := c.store
	if s == nil || s.tried || c.changes > 0 || c.loadedFrom != "" {
		return
	}
	s.tried = true
	st, err := s.read(c.name, c.tags, c.holeRetry)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.log.Debug("no saved learned plan", "path", s.path)
		return
	case err != nil:
		c.log.Info("saved learned plan ignored", "path", s.path, "reason", err)
		return
	}
	c.apply(st, s.path)
	for _, k := range slices.Sorted(maps.Keys(c.holes)) {
		herr := c.holes[k]
		c.log.Warn("tag unreadable", "tag", c.tags[k].Name, "area", c.tags[k].Area.String(), "address", c.tags[k].Address,
			"err", errors.Unwrap(herr), "learned", s.path)
	}
	c.log.Info("learned plan loaded", "path", s.path, "requests", len(c.plan), "configured_requests", len(c.base),
		"unreadable_tags", len(c.holes))
	c.planWhy = "learned before, loaded from " + s.path
	c.reportPlan()
}

// save writes what the core has learned, after a change; a failure is
// logged (the device goes on with what it learned, only a restart learns
// again).
func (c *core) save() {
	s := c.store
	if s == nil {
		return
	}
	f := planFile{
		Version: planFileVersion, Device: c.name, Driver: s.kind,
		Fingerprint:  fingerprint(s.kind, s.unit, s.lim, c.tags),
		Saved:        time.Now().UTC().Truncate(time.Second),
		MaxRegisters: c.lim.MaxRegisters, MaxBits: c.lim.MaxBits,
		Cuts: []savedCut{}, Unreadable: []savedHole{}, Plan: make([]string, len(c.plan)),
	}
	for a := Coil; a <= HoldingRegister; a++ {
		for _, at := range c.cut[a] {
			f.Cuts = append(f.Cuts, savedCut{a, at})
		}
	}
	for k, herr := range c.holes {
		t := &c.tags[k]
		var ex *Exception
		if !errors.As(herr, &ex) {
			continue // every hole is a refusal; re-learned if not
		}
		f.Unreadable = append(f.Unreadable, savedHole{Tag: t.Name, Area: t.Area, Address: t.Address, Count: t.width(), Exception: ex.Code})
	}
	slices.SortFunc(f.Unreadable, func(a, b savedHole) int {
		if a.Area != b.Area {
			return int(a.Area) - int(b.Area)
		}
		if a.Address != b.Address {
			return a.Address - b.Address
		}
		return strings.Compare(a.Tag, b.Tag)
	})
	for i, r := range c.plan {
		f.Plan[i] = fmt.Sprintf("%s %d+%d", r.Area.short(), r.Start, r.Count)
	}
	raw, err := json.MarshalIndent(&f, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.path, append(raw, '\n'))
	}
	if err != nil {
		c.log.Warn("cannot save learned plan; a restart learns it again", "path", s.path, "err", err)
		return
	}
	c.log.Info("learned plan saved", "path", s.path, "requests", len(c.plan))
}

// writeFileAtomic replaces path with data (mode 0600, its folder made
// 0700 if missing): readers see the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
