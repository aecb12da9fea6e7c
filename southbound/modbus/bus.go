package modbus

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
	"github.com/edged-gw/edged/southbound/serial"
)

// portBackoffMax caps the pause between attempts to reopen a port that
// disappeared (a USB adapter unplugged).
const portBackoffMax = 5 * time.Second

// rtuBus is the medium of a serial port's lane: the line every device on
// the port talks through. The host closes it when the last device leaves.
type rtuBus struct {
	path string
	mode serial.Mode
	line *serial.Line
}

func (b *rtuBus) Close() error { return b.line.Close() }

// share joins the lane of the device's port (host.Config.Share): the first
// device opens the line; the others must agree on its settings.
func (r *RTU) share(medium any, members []string) (any, error) {
	key := filepath.Clean(r.Port)
	b, err := share(medium, members, "port "+key, func() *rtuBus { return &rtuBus{path: key, mode: r.mode, line: serial.NewLine(r.Port, r.mode)} })
	if err != nil {
		return nil, err
	}
	if b.mode != r.mode {
		return nil, fmt.Errorf("port %s is in use at %s by device(s) %s, this device says %s: "+
			"all devices on one port must have the same baud, data_bits, parity and stop_bits", key, b.mode, strings.Join(members, ", "), r.mode)
	}
	r.bus = b
	return b, nil
}

// BusStat is the state of one serial bus, for the metrics.
type BusStat struct {
	Port string
	Mode string // e.g. "9600 8E1"
	serial.Stats
	// Uptime is how long the bus has run; Utilisation is Busy/Uptime, the
	// share of wall time the line carried frames.
	Uptime      time.Duration
	Utilisation float64
	// Overruns counts polls that started a whole interval late because the
	// bus was busy: the configured intervals do not fit the line.
	Overruns uint64
	Devices  []BusDevice
}

// BusDevice is one device's schedule on a bus.
type BusDevice struct {
	Name      string
	UnitID    int
	Interval  time.Duration
	LastCycle time.Duration // wall time of the last poll
	Polls     uint64        // successful polls
	Overruns  uint64
	Offline   bool
}

// BusStats returns the state of every serial bus in use on h, by port.
func BusStats(h *host.Host) []BusStat {
	var out []BusStat
	for _, l := range h.Lanes() {
		b, ok := l.Medium.(*rtuBus)
		if !ok {
			continue
		}
		st := BusStat{Port: b.path, Mode: b.mode.String(), Stats: b.line.Stats(), Uptime: l.Uptime, Overruns: l.Overruns}
		if st.Uptime > 0 {
			st.Utilisation = float64(st.Busy) / float64(st.Uptime)
		}
		for _, m := range l.Members {
			unit := 0
			if r, ok := m.Driver.(*RTU); ok {
				unit = r.UnitID
			}
			st.Devices = append(st.Devices, BusDevice{Name: m.Name, UnitID: unit, Interval: m.Interval,
				LastCycle: m.LastCycle, Polls: m.Polls, Overruns: m.Overruns, Offline: m.Offline})
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// CheckLanes implements host.LaneChecker (see CheckBuses).
func (r *RTU) CheckLanes(all []southbound.Driver) error { return CheckBuses(all) }

// modeKey names the first line setting in which a and b differ.
func modeKey(a, b serial.Mode) string {
	switch {
	case a.Baud != b.Baud:
		return "baud"
	case a.DataBits != b.DataBits:
		return "data_bits"
	case a.Parity != b.Parity:
		return "parity"
	}
	return "stop_bits"
}

// CheckBuses checks that the RTU devices among drivers that share a port
// agree on its line settings, and that no two of them share a unit ID on
// one port; each problem is a *configs.DeviceError keyed to the setting.
// The host calls it after loading a config (edged validate,
// plan, run); Start refuses a mismatch too.
func CheckBuses(drivers []southbound.Driver) error {
	type seen struct {
		mode  serial.Mode
		first string
		units map[int]string
	}
	ports := map[string]*seen{}
	var errs []error
	for _, d := range drivers {
		r, ok := d.(*RTU)
		if !ok || !r.inited {
			continue
		}
		key := filepath.Clean(r.Port)
		s := ports[key]
		if s == nil {
			ports[key] = &seen{mode: r.mode, first: r.Name, units: map[int]string{r.UnitID: r.Name}}
			continue
		}
		if s.mode != r.mode {
			errs = append(errs, &configs.DeviceError{Device: r.Name, Err: configs.Errorf(modeKey(s.mode, r.mode),
				"port %s is %s for device %q but %s here: "+
					"all devices on one port must have the same baud, data_bits, parity and stop_bits", key, s.mode, s.first, r.mode)})
		}
		if other, dup := s.units[r.UnitID]; dup {
			errs = append(errs, &configs.DeviceError{Device: r.Name, Err: configs.Errorf("unit_id",
				"unit_id %d on port %s is already device %q: "+
					"each slave on a bus needs its own unit_id", r.UnitID, key, other)})
		} else {
			s.units[r.UnitID] = r.Name
		}
	}
	return errors.Join(errs...)
}
