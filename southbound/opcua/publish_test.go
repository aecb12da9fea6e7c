package opcua

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// With publish_requests = 4 the server holds four PublishRequests from the
// start, and a value changed 20 times reaches the tag each time, in order:
// the last value wins and no older one ever follows a newer one.
func TestPublishRequestsInFlight(t *testing.T) {
	ts := startServer(t, map[string]any{"speed": 0.0, "other": 0.0})
	d := newDevice(t, ts.URL(), func(d *Device) { d.PublishRequests = 4 }, tag("speed", "ns=2;s=speed"), tag("other", "ns=2;s=other"))
	var seen []float64
	s := start(t, d)
	s.waitState(t, southbound.StateOnline)
	s.waitValue(t, "speed", f64(0))
	// Nothing changes and the keep-alive is minutes away: every request
	// the server has is one the driver keeps outstanding.
	s.waitFor(t, 20*time.Second, "4 PublishRequests at the server", func() bool { return ts.publish.Load() >= 4 })

	for i := 1; i <= 20; i++ {
		v := float64(i)
		ts.set("speed", v)
		if i%3 == 0 {
			ts.set("other", -v)
		}
		s.waitValue(t, "speed", f64(v))
		x, _ := s.sample("speed")
		seen = append(seen, x.Value.Float)
	}
	s.waitValue(t, "other", f64(-18))
	if !slices.IsSorted(seen) || seen[len(seen)-1] != 20 {
		t.Errorf("speed went %v, want 1..20 in order", seen)
	}
	if st := d.Counters(); st.Stale != 0 || st.PublishRequests < 4 {
		t.Errorf("counters %+v: want no stale value and ≥ 4 PublishRequests", st)
	}
	// Let any reordered message arrive: the last value still wins.
	ts.set("other", 1.5)
	s.waitValue(t, "other", f64(1.5))
	if x, _ := s.sample("speed"); !x.Value.Equal(f64(20)) {
		t.Errorf("speed = %+v after the last change, want 20", x.Value)
	}
}

// msg is a NotificationMessage of seq setting each handle to its value.
func msg(seq uint32, kv ...float64) *ua.NotificationMessage {
	dcn := &ua.DataChangeNotification{}
	for i := 0; i+1 < len(kv); i += 2 {
		dcn.MonitoredItems = append(dcn.MonitoredItems, &ua.MonitoredItemNotification{
			ClientHandle: uint32(kv[i]), Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(kv[i+1])}})
	}
	return &ua.NotificationMessage{SequenceNumber: seq, NotificationData: []*ua.ExtensionObject{{Value: dcn}}}
}

// seqDevice is a device with tags a (handle 0) and b (handle 1), fed by
// hand through a sequencer; it records what is delivered.
type seqDevice struct {
	d   *Device
	got []string
}

func newSeqDevice(t *testing.T) *seqDevice {
	d := newDevice(t, "opc.tcp://127.0.0.1:1", nil, tag("a", "ns=2;s=a"), tag("b", "ns=2;s=b"))
	sd := &seqDevice{d: d}
	d.samples = make([]mapping.Sample, 2)
	for i := range d.samples {
		d.samples[i].Tag = d.specs[i]
	}
	d.seqOf = make([]uint32, 2)
	d.sess = nil
	return sd
}

func (sd *seqDevice) apply(m *ua.NotificationMessage, late bool) {
	sd.d.applyTo(m, late, func(ss []mapping.Sample) {
		for _, x := range ss {
			sd.got = append(sd.got, fmt.Sprintf("%s=%v", x.Tag.Name, x.Value.Float))
		}
	})
}

// Messages handled out of order are applied in sequence order; one that
// never comes is skipped after gapWait; a late one sets only the tags no
// later message set.
func TestSequencerOrderAndStale(t *testing.T) {
	sd := newSeqDevice(t)
	q := newSequencer()
	t0 := time.Now()
	if q.add(msg(2, 0, 2), t0, sd.apply) != true {
		t.Error("message 2 before 1 was not held")
	}
	q.add(msg(3, 0, 3, 1, 30), t0, sd.apply)
	if len(sd.got) != 0 {
		t.Fatalf("applied %v before message 1", sd.got)
	}
	q.add(msg(1, 0, 1, 1, 10), t0, sd.apply)
	want := []string{"a=1", "b=10", "a=2", "a=3", "b=30"}
	if !slices.Equal(sd.got, want) {
		t.Fatalf("applied %v, want %v", sd.got, want)
	}

	// 4 is lost: 5 and 6 wait, then go after gapWait.
	sd.got = nil
	q.add(msg(5, 0, 5), t0, sd.apply)
	q.add(msg(6, 1, 60), t0.Add(gapWait/2), sd.apply)
	if len(sd.got) != 0 {
		t.Fatalf("applied %v across the gap", sd.got)
	}
	q.expire(t0.Add(gapWait), sd.apply)
	if want := []string{"a=5", "b=60"}; !slices.Equal(sd.got, want) {
		t.Fatalf("after the gap applied %v, want %v", sd.got, want)
	}
	// 4 turns up late: b was set by 6 (newer) and stays; a was set by 5
	// (newer) and stays too; nothing is delivered.
	sd.got = nil
	q.add(msg(4, 0, 4, 1, 40), t0.Add(gapWait), sd.apply)
	if len(sd.got) != 0 {
		t.Errorf("late message 4 delivered %v over newer values", sd.got)
	}
	if st := sd.d.Counters(); st.Stale != 2 {
		t.Errorf("stale = %d, want 2", st.Stale)
	}
	if a, b := sd.d.samples[0].Value.Float, sd.d.samples[1].Value.Float; a != 5 || b != 60 {
		t.Errorf("a, b = %v, %v; want 5, 60", a, b)
	}
}

// Sequence numbers wrap from 2^32-1 to 1.
func TestSequencerWraps(t *testing.T) {
	sd := newSeqDevice(t)
	q := newSequencer()
	q.next = 0xFFFFFFFF
	now := time.Now()
	q.add(msg(1, 0, 2), now, sd.apply)
	q.add(msg(0xFFFFFFFF, 0, 1), now, sd.apply)
	if want := []string{"a=1", "a=2"}; !slices.Equal(sd.got, want) {
		t.Errorf("applied %v, want %v", sd.got, want)
	}
}
