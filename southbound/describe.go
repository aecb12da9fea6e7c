package southbound

import "github.com/edged-gw/edged/mapping"

// Describer is implemented by drivers that can tell an operator (the local
// console) about one device in their own terms, so that no reader of this
// package needs to know a protocol.
type Describer interface {
	Describe() Description
}

// Description is one device as a driver explains it: its settings (never
// secrets), where each tag is read, and for drivers that plan their reads
// the plan and what the device taught it.
type Description struct {
	Settings []KeyValue
	Tags     []TagPlace
	Plan     []PlanRead
	Learned  []KeyValue
}

// KeyValue is one labelled figure.
type KeyValue struct{ Key, Value string }

// TagPlace is where one tag lives on the device ("holding_register 100",
// "ns=2;s=Speed").
type TagPlace struct {
	Spec  *mapping.Spec
	Where string
}

// PlanRead is one read of a planned poll.
type PlanRead struct {
	Area         string
	Start, Count int
	Tags         []string
}
