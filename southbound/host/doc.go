// Package host runs devices: it is the one place that owns what every
// protocol would otherwise rebuild. A device runs in a lane, one goroutine
// that serialises the polls and the writes of its members (a TCP device is
// a lane of one; every device on one RS-485 port, or behind one gateway,
// shares one lane). The host owns the fixed poll rate and its overrun
// count, the reconnect backoff with jitter, the connecting → online →
// offline → stopped transitions (one log line each, all tags bad on
// leaving online), timing and request/error/timeout/exception counts, the
// tag's write policy and the promise that the sink is never called after
// Stop returns.
//
// A protocol driver does protocol work only. It embeds a Runner (which
// gives it Start, Stop, Write, Stats and Provision) and implements either
// Poller (Connect, Poll, Close: the host schedules it) or Subscriber (Run
// one session; the host restarts it with backoff), plus WritePreparer if
// it can write. A driver that shares a medium with others names its lane
// and the medium in its Config.
//
// The host knows nothing about registers, nodes, MQTT or topics.
package host
