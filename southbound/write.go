package southbound

import (
	"context"
	"errors"

	"github.com/edged-gw/edged/mapping"
)

// ErrOffline is wrapped by a Writer's error when there is no connection to
// write over: nothing was sent.
var ErrOffline = errors.New("device is offline")

// TagReader is implemented by drivers that can read one tag on demand (OPC
// UA's Read service). The write door reads a written tag back with it;
// without it, the door waits for the device's next poll, which a driver
// that serialises writes and polls (Modbus) runs after the write.
type TagReader interface {
	ReadTag(ctx context.Context, tag string) (mapping.Sample, error)
}

// DeviceRefusal is implemented by errors with which a device answered and
// refused a request (a Modbus exception, an OPC UA Bad status): the
// request reached it. The write door reports them as device_refused.
type DeviceRefusal interface {
	DeviceRefused() bool
}
