package main

import (
	"fmt"
	"testing"
	"time"
)

// The sink reads seq, clock and the tags from each gateway's payload, and
// counts lost and duplicated polls per device.
func TestSinkPayloads(t *testing.T) {
	now := uint32(time.Now().UnixMicro())
	clock := now - 5000 // answered 5 ms ago
	payloads := map[string]string{
		"edged/bench/d00": fmt.Sprintf(`{"ts":1,"values":{"seq":{"v":%%d,"ts":1,"q":"good"},"t000":{"v":1.5,"ts":1,"q":"good"},"t001":{"v":2,"ts":1,"q":"good"},"clock":{"v":%d,"ts":1,"q":"good"}}}`, clock),
		"telegraf/d01":    fmt.Sprintf(`{"fields":{"clock":%d,"seq":%%d,"t000":1.5,"t001":2},"name":"modbus","tags":{"name":"d01","slave_id":"1","type":"holding_register"},"timestamp":1}`, clock),
		"nodered/d02":     fmt.Sprintf(`{"seq":%%d,"clock":%d,"t000":1.5,"t001":2}`, clock),
	}
	for topic, format := range payloads {
		s := &sink{}
		s.start()
		for _, seq := range []int{1, 2, 2, 5} { // 3 and 4 lost, 2 twice
			s.on(topic, fmt.Appendf(nil, format, seq))
		}
		s.on("edged/bench/status", []byte("online"))
		sn := s.stop()
		if sn.msgs != 4 || sn.points != 8 || sn.lost != 2 || sn.dups != 1 {
			t.Errorf("%s: msgs %d points %d lost %d dups %d; want 4, 8, 2, 1", topic, sn.msgs, sn.points, sn.lost, sn.dups)
		}
		if len(sn.lat) != 4 || sn.lat[0] < 5*time.Millisecond || sn.lat[0] > time.Second {
			t.Errorf("%s: latencies %v, want 4 of ≥ 5 ms", topic, sn.lat)
		}
	}
}

// With one message per tag, every tNNN message is a point and the seq and
// clock tags carry the poll.
func TestSinkPerTag(t *testing.T) {
	s := &sink{perTag: true}
	s.start()
	for seq := 1; seq <= 3; seq++ {
		s.on("edged/bench/d00/seq", fmt.Appendf(nil, `{"v":%d,"ts":1,"q":"good"}`, seq))
		s.on("edged/bench/d00/t000", []byte(`{"v":1.5}`))
		s.on("edged/bench/d00/t001", []byte(`{"v":2}`))
		s.on("edged/bench/d00/clock", fmt.Appendf(nil, `{"v":%d}`, uint32(time.Now().UnixMicro())))
	}
	sn := s.stop()
	if sn.msgs != 12 || sn.points != 6 || sn.lost != 0 || sn.dups != 0 || len(sn.lat) != 3 {
		t.Errorf("msgs %d points %d lost %d dups %d latencies %d; want 12, 6, 0, 0, 3", sn.msgs, sn.points, sn.lost, sn.dups, len(sn.lat))
	}
}
