package sparkplug

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// StateTopic is where primary host hostID publishes its retained STATE
// (specification 3.0): spBv1.0/STATE/{host_id}.
func StateTopic(hostID string) string { return Namespace + "/STATE/" + hostID }

// State is a primary host's STATE message.
type State struct {
	Online    bool
	Timestamp uint64 // Unix ms, set by the host; orders its messages
}

// ParseState decodes a specification 3.0 STATE payload,
// {"online": true|false, "timestamp": <unix ms>}. Both keys are required;
// other keys are ignored. The 2.2 form (the bare text ONLINE/OFFLINE) is
// refused with an error saying so.
func ParseState(payload []byte) (State, error) {
	trimmed := bytes.TrimSpace(payload)
	if bytes.EqualFold(trimmed, []byte("ONLINE")) || bytes.EqualFold(trimmed, []byte("OFFLINE")) {
		return State{}, fmt.Errorf("sparkplug STATE %q is the 2.2 form: edged follows specification 3.0, "+
			`{"online": true|false, "timestamp": <ms>}`, trimmed)
	}
	var raw struct {
		Online    *bool   `json:"online"`
		Timestamp *uint64 `json:"timestamp"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return State{}, fmt.Errorf("sparkplug STATE: %w", err)
	}
	if raw.Online == nil || raw.Timestamp == nil {
		return State{}, errors.New(`sparkplug STATE: want {"online": true|false, "timestamp": <unix ms>}, a key is missing`)
	}
	return State{Online: *raw.Online, Timestamp: *raw.Timestamp}, nil
}

// HostEvent is what a STATE message means for the edge node.
type HostEvent uint8

// Host events.
const (
	// HostUnchanged: nothing to do (a repeat, or a stale message).
	HostUnchanged HostEvent = iota
	// HostOnline: the primary host is online on this connection: publish
	// Births, then the backlog, then live data.
	HostOnline
	// HostOffline: the primary host went offline: publish the NDEATH,
	// disconnect, keep data in the buffer, reconnect and wait for online.
	HostOffline
)

func (e HostEvent) String() string {
	switch e {
	case HostOnline:
		return "online"
	case HostOffline:
		return "offline"
	}
	return "unchanged"
}

// PrimaryHost is the wait-for-online rule for one primary host. The edge
// node subscribes to StateTopic before it publishes its NBIRTH and births
// only after HostOnline on that connection. A STATE older than the newest
// one seen (a stale retained message from a host that has since restarted)
// is ignored. The zero value is not usable: make one with NewPrimaryHost.
type PrimaryHost struct {
	id        string
	last      State
	seen      bool
	confirmed bool // online seen on the current connection
}

// NewPrimaryHost checks id and returns its state machine.
func NewPrimaryHost(id string) (*PrimaryHost, error) {
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("sparkplug primary_host %w", err)
	}
	return &PrimaryHost{id: id}, nil
}

// Topic is the STATE topic to subscribe to.
func (h *PrimaryHost) Topic() string { return StateTopic(h.id) }

// NewConnection forgets that the host was confirmed online: after every
// MQTT connect the edge node waits for a STATE again (the broker redelivers
// the retained one).
func (h *PrimaryHost) NewConnection() { h.confirmed = false }

// Online reports whether births may be published on this connection.
func (h *PrimaryHost) Online() bool { return h.confirmed }

// Observe takes a STATE payload received on Topic. A payload that does not
// parse changes nothing and returns the error.
func (h *PrimaryHost) Observe(payload []byte) (HostEvent, error) {
	st, err := ParseState(payload)
	if err != nil {
		return HostUnchanged, err
	}
	if h.seen && st.Timestamp < h.last.Timestamp {
		return HostUnchanged, nil
	}
	h.seen, h.last = true, st
	switch {
	case st.Online && !h.confirmed:
		h.confirmed = true
		return HostOnline, nil
	case !st.Online && h.confirmed:
		h.confirmed = false
		return HostOffline, nil
	}
	return HostUnchanged, nil
}
