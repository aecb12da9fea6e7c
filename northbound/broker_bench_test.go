package northbound

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkBrokerPublishToSubscriber is the per-tag publish path: edged
// publishes a value message on one of 500 topics, one network subscriber
// (subscribed to "#" at QoS 0, reading as fast as it can) receives it.
// It covers the cost of the auth and limits hooks on every delivery.
func BenchmarkBrokerPublishToSubscriber(b *testing.B) {
	br := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"})
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Stop()
	c, err := net.DialTimeout("tcp", br.Addr(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	connect := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 2, 'b', 'n'}
	sub := []byte{0x82, 6, 0, 1, 0, 1, '#', 0}
	if _, err := c.Write(append(connect, sub...)); err != nil {
		b.Fatal(err)
	}
	ack := make([]byte, 4+5)
	if _, err := io.ReadFull(c, ack); err != nil {
		b.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, c) }()
	topics := make([]string, 500)
	for i := range topics {
		topics[i] = fmt.Sprintf("edged/gw1/dev%d/tag%d", i/50, i)
	}
	payload := []byte(`{"v":21.53,"ts":1764156621123,"q":"good","unit":"°C"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := br.Publish(topics[i%len(topics)], payload, false, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTopics() ([]string, []byte) {
	topics := make([]string, 500)
	for i := range topics {
		topics[i] = fmt.Sprintf("edged/gw1/dev%d/tag%d", i/50, i)
	}
	return topics, []byte(`{"v":21.53,"ts":1764156621123,"q":"good","unit":"°C"}`)
}

// BenchmarkBrokerPublishNoSubscriber is edged's own publish when nothing
// subscribes (no uplink, no local client): the fixed cost of a message.
func BenchmarkBrokerPublishNoSubscriber(b *testing.B) {
	br := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"})
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Stop()
	topics, payload := benchTopics()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := br.Publish(topics[i%len(topics)], payload, false, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBrokerPublishInline is edged's own publish to one in-process
// subscription of "#" (what an uplink's bridge is), no network client.
func BenchmarkBrokerPublishInline(b *testing.B) {
	br := NewBroker(BrokerOptions{Listen: "127.0.0.1:0"})
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Stop()
	var got int
	if err := br.Subscribe("#", 1, func(string, []byte, bool) { got++ }); err != nil {
		b.Fatal(err)
	}
	topics, payload := benchTopics()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := br.Publish(topics[i%len(topics)], payload, false, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got != b.N {
		b.Fatalf("handler got %d of %d", got, b.N)
	}
}
