package modbus

import (
	"fmt"
	"strconv"
	"time"

	"github.com/edged-gw/edged/southbound"
)

var (
	_ southbound.Describer = (*TCP)(nil)
	_ southbound.Describer = (*RTU)(nil)
	_ southbound.Describer = (*RTUOverTCP)(nil)
)

// Describe implements southbound.Describer.
func (t *TCP) Describe() southbound.Description { return t.describe("address", t.Address) }

// Describe implements southbound.Describer.
func (r *RTU) Describe() southbound.Description { return r.describe("port", r.Port) }

// Describe implements southbound.Describer.
func (r *RTUOverTCP) Describe() southbound.Description { return r.describe("address", r.Address) }

// describe is every Modbus device's description: where it is, each tag's
// area and address, the read plan and what the device taught the planner.
func (d *Device) describe(where, at string) southbound.Description {
	var dd southbound.Description
	kv := func(k, v string) { dd.Settings = append(dd.Settings, southbound.KeyValue{Key: k, Value: v}) }
	kv(where, at)
	kv("unit_id", strconv.Itoa(d.UnitID))
	kv("poll_interval", d.PollInterval.D().String())
	tags := d.TagList()
	for i := range tags {
		t := &tags[i]
		dd.Tags = append(dd.Tags, southbound.TagPlace{Spec: &t.Spec, Where: fmt.Sprintf("%s %d", t.Area, t.Address)})
	}
	ln := d.Learned()
	for _, rq := range ln.Plan {
		pr := southbound.PlanRead{Area: rq.Area.String(), Start: rq.Start, Count: rq.Count}
		for _, k := range rq.Tags {
			if k >= 0 && k < len(tags) {
				pr.Tags = append(pr.Tags, tags[k].Name)
			}
		}
		dd.Plan = append(dd.Plan, pr)
	}
	lkv := func(k, v string) { dd.Learned = append(dd.Learned, southbound.KeyValue{Key: k, Value: v}) }
	lkv("reads per poll", strconv.Itoa(len(ln.Plan)))
	lkv("max registers per read", strconv.Itoa(ln.MaxRegisters))
	lkv("max bits per read", strconv.Itoa(ln.MaxBits))
	lkv("things learned", strconv.FormatUint(ln.Changes, 10))
	for _, h := range ln.Unreadable {
		lkv("unreadable "+h.Tag, fmt.Sprintf("%s %d: %s", h.Area, h.Address, h.Reason))
	}
	for _, c := range ln.Cuts {
		lkv("no read crosses", fmt.Sprintf("%s %d", c.Area, c.Address))
	}
	if ln.Loaded != "" {
		lkv("started from", ln.Loaded)
	}
	return dd
}

// MediumInfo implements host.MediumInfo: the serial line a lane shares.
func (b *rtuBus) MediumInfo() (name, settings string, busy time.Duration) {
	return b.path, b.mode.String(), b.line.Stats().Busy
}
