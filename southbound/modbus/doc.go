// Package modbus is edged's Modbus driver (modbus-tcp, modbus-rtu,
// modbus-rtu-tcp): the device settings and tag layout of a Modbus device
// (areas, addresses), the planning of merged read requests that learns
// from refusals, the transports (TCP, a serial line, RTU frames over a
// socket) and the edged plan and probe commands. One poll of the plan is
// its host.Poller; scheduling, backoff, state and write policy are the
// host's (southbound/host). It turns register and bit reads into
// mapping.Samples.
//
// It must not know about MQTT, topics, payloads or the buffer, and it
// leaves type decoding, scaling and deadbands to package mapping. The
// goburrow/modbus library is kept behind the unexported client interface;
// nothing else in this package sees it.
package modbus
