// Package southbound defines what a protocol driver is and keeps the registry
// of drivers and of their CLI subcommands. Each protocol lives in its own
// sub-package (modbus, opcua, …) that registers itself; southbound/all lists
// the shipped ones. The device host (lanes, backoff, state, stats, writes) is
// southbound/host. Drivers talk to devices and hand typed samples to a Sink;
// they know nothing about MQTT, topics or payloads.
package southbound

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/edged-gw/edged/mapping"
)

// Driver is one configured device. Its struct is also its config: the loader
// decodes the [[device]] table into it and calls Init (validate, no I/O);
// the gateway then calls Start and, at shutdown, Stop.
type Driver interface {
	// Init validates the decoded settings and fills defaults. No I/O.
	Init() error
	// Start begins talking to the device in the background and returns.
	// Samples and state changes go to sink until Stop returns.
	Start(ctx context.Context, sink Sink) error
	// Stop ends all device I/O, waits for in-flight requests and never
	// calls the sink after it returns. Safe after a failed or partial Start.
	Stop(ctx context.Context) error
	// Tags lists the tags the device will report, in a stable order.
	Tags() []*mapping.Spec
}

// Writer is implemented by drivers that can write tag values. Write applies
// the tag's write policy (mapping.Spec.CheckWrite) before anything reaches
// the wire; a refusal wraps mapping.ErrWriteRefused.
type Writer interface {
	Write(ctx context.Context, tag string, v mapping.Value) error
}

// DataDirUser is implemented by drivers that keep files of their own (OPC
// UA keeps its certificates under <data_dir>/pki). The host calls SetDataDir
// with the gateway's data_dir (an absolute path) after Init and before
// Start; a driver must not touch the disk before it is called.
type DataDirUser interface {
	SetDataDir(dir string)
}

// Stats are a driver's running totals since Start, for metrics.
type Stats struct {
	Requests   uint64  // requests sent to the device
	Errors     uint64  // requests that failed, whatever the reason
	Timeouts   uint64  // of which: no answer in time
	Exceptions uint64  // of which: the device answered with a protocol error
	LastPoll   float64 // seconds the last complete poll cycle took
	Polls      uint64  // polls that succeeded
	Overruns   uint64  // polls that started a whole interval late
	// PollTimes is the distribution of every timed poll since Start.
	PollTimes PollHistogram
}

// PollBuckets are the upper bounds, in seconds, of the poll-duration
// histogram: from a fast TCP device (a few ms) to a long RS-485 bus cycle.
var PollBuckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// PollHistogram is a snapshot of poll durations: Counts[i] polls took at
// most PollBuckets[i] seconds (cumulative, as Prometheus wants them);
// Count and Sum cover every poll, those beyond the last bucket included.
type PollHistogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64
}

// StatsReporter is implemented by drivers that count their requests.
type StatsReporter interface {
	Stats() Stats
}

// State is a device's connection state as shown to operators.
type State uint8

// Device states.
const (
	StateConnecting State = iota
	StateOnline
	StateOffline // unreachable or answering garbage; tags are bad
	StateStopped
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateOnline:
		return "online"
	case StateOffline:
		return "offline"
	}
	return "stopped"
}

// Sink receives what a driver reads. Calls for one device are never
// concurrent; calls for different devices may be.
type Sink interface {
	// Samples delivers one poll's (or one notification's) samples. The slice
	// and its samples are only valid during the call; the sink copies what it
	// keeps.
	Samples(device string, samples []mapping.Sample)
	// State reports a change of the device's state; err says why when the
	// device goes offline.
	State(device string, state State, err error)
}

// Factory makes a zero driver for the config loader to decode into.
type Factory func() Driver

var (
	mu       sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes a driver available under name (the `driver = "…"` value).
// It panics on a duplicate name: registration happens once, at start-up.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("southbound: driver %q registered twice", name))
	}
	registry[name] = f
}

// New returns a zero driver of the named kind.
func New(name string) (Driver, bool) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := registry[name]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Names lists the registered drivers, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return slices.Clip(names)
}
