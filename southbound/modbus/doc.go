// Package modbus is edged's Modbus driver: the device settings and tag
// layout of a Modbus device (areas, addresses), the planning of merged read
// requests, and the poll loop with its retries, reconnects and device
// state. It turns register and bit reads into mapping.Samples and hands
// them to a southbound.Sink.
//
// It must not know about MQTT, topics, payloads or the buffer, and it
// leaves type decoding, scaling and deadbands to package mapping. The
// goburrow/modbus library is kept behind the unexported client interface;
// nothing else in this package sees it.
package modbus
