// Command stall measures what the embedded broker holds for a local
// subscriber that stops reading (issue 15 item 6): one client subscribes
// to "#" at QoS 1 and never reads again; edged publishes -n messages of
// -size bytes; the heap in use after a GC is printed.
//
//	go run ./bench/stall -n 5120 -size 26624 -qos 0
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/edged-gw/edged/northbound"
)

func main() {
	n := flag.Int("n", 5120, "messages published")
	size := flag.Int("size", 26<<10, "payload bytes")
	qos := flag.Int("qos", 1, "QoS of the publishes (edged publishes values at 0, status at 1)")
	flag.Parse()
	b := northbound.NewBroker(northbound.BrokerOptions{Listen: "127.0.0.1:0"})
	if err := b.Start(); err != nil {
		fail(err)
	}
	defer b.Stop()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		fail(err)
	}
	defer c.Close() // keeps it referenced: a collected conn would be closed
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	connect := []byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 5, 's', 't', 'u', 'c', 'k'}
	sub := []byte{0x82, 6, 0, 1, 0, 1, '#', 1}
	if _, err := c.Write(append(connect, sub...)); err != nil {
		fail(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4+5)); err != nil {
		fail(err)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	payload := bytes.Repeat([]byte("x"), *size)
	for range *n {
		if err := b.Publish("plant/big", payload, false, byte(*qos)); err != nil {
			fail(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	s := b.Stats()
	fmt.Printf("clients %d, messages sent %d, dropped %d\n", s.Clients, s.MessagesSent, s.MessagesDropped)
	fmt.Printf("published %d × %d B to a stalled subscriber: heap in use %d → %d MiB (+%d MiB)\n",
		*n, *size, m0.HeapInuse>>20, m1.HeapInuse>>20, (int64(m1.HeapInuse)-int64(m0.HeapInuse))>>20)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
