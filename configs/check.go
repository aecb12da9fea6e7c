package configs

import (
	"errors"
	"fmt"
)

// Check is a check that spans the configuration (several devices, the
// topic templates against every tag, ...), handed to Load by the caller:
// Load runs every check once, after every table was decoded and every
// device's Init ran, and whether or not errors were found so far, so that
// `edged validate` lists every problem in one run. cfg holds the tables as
// decoded, defaults filled in; cfg.Devices holds only the devices that
// loaded without error (a broken device would only add noise). A check
// reports through r, which locates each problem at its file and line; it
// must not keep cfg or r.
type Check func(cfg *Config, r *Report)

// Report collects what the checks of one Load find. Its methods locate a
// problem as the loader locates its own.
type Report struct {
	l       *loader
	src     *source
	cfg     *Config
	devices map[string]*checkedDevice // by name: the devices the checks see
	warn    bool                      // adding to Config.Warnings
}

type checkedDevice struct {
	d    *Device
	base keyPath
	mf   *mapFile
}

// DeviceError is a problem of one device found by a check that spans
// devices, e.g. other line settings than the other devices on its serial
// port. Err is what the device's Init could have returned: a *Error with
// Key relative to the device table (or, with InMap, to its map file), an
// Errors or an errors.Join of them, or any error (reported at the
// device's table).
type DeviceError struct {
	Device string
	Err    error
}

func (e *DeviceError) Error() string { return fmt.Sprintf("device %q: %v", e.Device, e.Err) }
func (e *DeviceError) Unwrap() error { return e.Err }

// Add reports err: a *DeviceError at its device, a *Error with File empty
// at Key of the main file (a path from its root, e.g.
// "gateway.topic_template" or "device[2].tag[0].name"; at the line of the
// closest table written when the key is not), a *Error with File set as it
// is, anything else at the main file without a line. Errors and
// errors.Join are taken apart.
func (r *Report) Add(err error) {
	if err == nil {
		return
	}
	for _, e := range leafErrors(err) {
		if e == nil {
			continue
		}
		var de *DeviceError
		var ce *Error
		switch {
		case errors.As(e, &de):
			r.Device(de.Device, de.Err)
		case errors.As(e, &ce) && ce.File != "":
			r.put(ce)
		case errors.As(e, &ce):
			r.put(&Error{File: r.src.file, Line: r.src.idx.lineOfKey(ce.Key), Key: ce.Key, Msg: ce.Msg})
		default:
			r.put(&Error{File: r.src.file, Msg: e.Error()})
		}
	}
}

// Errorf reports a problem with key, a path from the root of the main file
// (see Add).
func (r *Report) Errorf(key, format string, args ...any) {
	r.Add(Errorf(key, format, args...))
}

// Device reports err about the named device as its Init's errors are
// reported (see Settings). A name the checks were not given (a device
// that did not load) is reported at the main file without a line.
func (r *Report) Device(name string, err error) {
	if err == nil {
		return
	}
	c := r.devices[name]
	if c == nil {
		r.put(&Error{File: r.src.file, Msg: fmt.Sprintf("device %q: %v", name, err)})
		return
	}
	if r.warn {
		r.l.locateWarnings(r.src, r.cfg, c.base, c.d, c.mf, leafErrors(err))
		return
	}
	r.l.initError(r.src, c.base, c.d, c.mf, err)
}

// Warnings returns a Report whose problems go to Config.Warnings instead:
// valid settings that are probably not what was meant.
func (r *Report) Warnings() *Report {
	w := *r
	w.warn = true
	return &w
}

func (r *Report) put(e *Error) {
	if r.warn {
		r.cfg.Warnings = append(r.cfg.Warnings, e)
		return
	}
	r.l.errs = append(r.l.errs, e)
}

// runChecks runs checks over the devices that loaded cleanly.
func (l *loader) runChecks(src *source, cfg *Config, clean []*checkedDevice, checks []Check) {
	if len(checks) == 0 {
		return
	}
	view := *cfg
	view.Devices = nil
	r := &Report{l: l, src: src, cfg: cfg, devices: map[string]*checkedDevice{}}
	for _, c := range clean {
		view.Devices = append(view.Devices, c.d)
		r.devices[c.d.Name] = c
	}
	for _, check := range checks {
		check(&view, r)
	}
}
