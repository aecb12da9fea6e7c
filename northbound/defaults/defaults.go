// Package defaults declares, once, the defaults of an [[upstream]]'s
// uplink and MQTT publisher: northbound applies them to zero options, and
// configs fills them into a loaded config (so that spelling a default out
// changes nothing, and `edged validate` shows what runs). It imports
// nothing, so that both can import it: northbound sits above configs (its
// Sparkplug uplink uses mapping, which uses configs), so configs cannot
// import northbound itself. The buffer's own defaults (max_bytes,
// sync_interval) are declared in package buffer, which imports no edged
// package either.
package defaults

import "time"

const (
	// Protocol is the MQTT version spoken upstream.
	Protocol = "5"
	// KeepAlive is the MQTT keepalive.
	KeepAlive = 30 * time.Second
	// MaxInflight is the most QoS 1 messages in flight (the broker's
	// Receive Maximum lowers it).
	MaxInflight = 100
	// ReplayRate (messages/s) is below the per-connection publish limits
	// of common cloud brokers (AWS IoT Core: 100/s per connection by
	// default is the strictest; raise it where the broker allows).
	ReplayRate = 500
	// ReplayOrder lets live messages overtake the backlog.
	ReplayOrder = "interleave"
	// AckTimeout: no PUBACK for this long while messages are in flight
	// ends the session (a blackholed link).
	AckTimeout = 10 * time.Second
	// BackoffMin is the first reconnect delay.
	BackoffMin = 500 * time.Millisecond
	// BackoffMax (reconnect_max) caps the reconnect backoff: data arrives
	// at most about this long (plus a connect) after the cloud is
	// reachable again.
	BackoffMax = 10 * time.Second
)
