package control

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/edged-gw/edged/mapping/sparkplug"
	"github.com/edged-gw/edged/southbound/door"
)

// sparkplugQueue bounds the DCMD writes waiting for the door; more are
// refused (too_soon, audited).
const sparkplugQueue = 64

// sparkplugWrites applies DCMD writes in arrival order on one worker.
type sparkplugWrites struct {
	once  sync.Once
	queue chan door.Request
	done  chan struct{}
}

// SparkplugWrites hands the metric writes of a Sparkplug DCMD received by
// upstream name to the door, as source "sparkplug NAME": the same policy
// (the upstream's commands = true, [gateway] writes, writable, min/max,
// write_interval) and audit as a /set. Sparkplug has no reply: the
// device's new value goes out as DDATA with the next poll. It never
// blocks (the caller is the connection's reader); a full queue refuses
// the write, audited. Safe on a nil Daemon (dry runs).
func (d *Daemon) SparkplugWrites(log *slog.Logger, name, topic string, writes []sparkplug.Write) {
	if d == nil {
		return
	}
	var refused []door.Request
	defer func() { // outside the lock: the door audits them at once, as a full /set queue does
		for _, req := range refused {
			d.spWrite(log, req)
		}
	}()
	d.cmu.Lock()
	defer d.cmu.Unlock()
	if d.spClosed {
		return
	}
	w := &d.spw
	w.once.Do(func() {
		w.queue, w.done = make(chan door.Request, sparkplugQueue), make(chan struct{})
		go func() {
			defer close(w.done)
			for req := range w.queue {
				d.spWrite(log, req)
			}
		}()
	})
	for _, wr := range writes {
		v := wr.Value
		req := door.Request{Device: wr.Device, Tag: wr.Tag, Typed: &v, Source: door.Source{Kind: door.FromSparkplug, Name: name}, Topic: topic}
		if wr.TimeMs > 0 {
			req.Issued = time.UnixMilli(wr.TimeMs)
		}
		select {
		case w.queue <- req:
		default:
			req.Refused, req.RefusedMsg = door.TooSoon, "the Sparkplug write queue is full (more than 64 writes waiting)"
			refused = append(refused, req)
		}
	}
}

func (d *Daemon) spWrite(log *slog.Logger, req door.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	res := d.Door.Write(ctx, req)
	if !res.OK {
		log.Warn("sparkplug DCMD write not done", "device", req.Device, "tag", req.Tag, "result", res.Status(), "reason", string(res.Reason), "message", res.Message)
	}
}

// closeSparkplug stops the DCMD worker after the queued writes.
func (d *Daemon) closeSparkplug() {
	d.cmu.Lock()
	d.spClosed = true
	q := d.spw.queue
	d.cmu.Unlock()
	if q != nil {
		close(q)
		<-d.spw.done
	}
}
