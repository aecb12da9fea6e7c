// Command rtu prints the Modbus figures of issue #3:
//
//   - requests per poll for a sample map with holes: as configured (merged
//     through the holes), as learned by the adaptive planner, and the
//     minimum (the plan made knowing the holes in advance);
//   - RTU registers/s achieved against the wire limit at 9600 and 115200
//     baud (8E1, 11 bits per character), over a socat pty pair with the
//     in-repo responder paced to the baud rate, for a contiguous map read
//     with 125-register requests.
//
// Run: go run ./bench/rtu [-for 6s]   (needs socat: make test-deps)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/host"
	"github.com/edged-gw/edged/southbound/modbus"
	"github.com/edged-gw/edged/southbound/serial"
)

func main() {
	dur := flag.Duration("for", 6*time.Second, "measuring time per baud rate")
	flag.Parse()
	if err := holes(); err != nil {
		fmt.Fprintln(os.Stderr, "holes:", err)
		os.Exit(1)
	}
	for _, baud := range []int{9600, 115200} {
		if err := throughput(baud, *dur); err != nil {
			fmt.Fprintln(os.Stderr, "throughput:", err)
			os.Exit(1)
		}
	}
}

func decode[T any](doc string, dev T) T {
	var file struct {
		Device []toml.Primitive `toml:"device"`
	}
	md, err := toml.Decode(doc, &file)
	if err != nil {
		panic(err)
	}
	if err := md.PrimitiveDecode(file.Device[0], dev); err != nil {
		panic(err)
	}
	return dev
}

type counter struct {
	mu    sync.Mutex
	polls int
	last  time.Time // when the latest poll was delivered
	ch    chan struct{}
	// With requests set: its value after each poll, taken on the goroutine
	// that polls, before the next poll starts.
	requests func() uint64
	marks    []uint64
}

func (c *counter) at() (int, time.Time) { c.mu.Lock(); defer c.mu.Unlock(); return c.polls, c.last }

func (c *counter) Samples(string, []mapping.Sample) {
	c.mu.Lock()
	c.polls++
	c.last = time.Now()
	if c.requests != nil {
		c.marks = append(c.marks, c.requests())
	}
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}
func (c *counter) State(string, southbound.State, error) {}
func (c *counter) n() int                                { c.mu.Lock(); defer c.mu.Unlock(); return c.polls }

// holes: 60 uint16 tags every 4 registers from 0, 3 tags refused by the
// device and 2 refused registers between tags.
func holes() error {
	sim := modbussim.New()
	if err := sim.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	defer sim.Close()
	var tags strings.Builder
	for i := range 60 {
		fmt.Fprintf(&tags, "[[device.tag]]\nname = \"t%d\"\narea = \"holding\"\naddress = %d\ntype = \"uint16\"\n", i, 4*i)
	}
	for _, a := range []int{40, 44, 132} { // tags t10, t11, t33
		sim.Reject(modbussim.Holding, a, a)
	}
	sim.Reject(modbussim.Holding, 90, 90) // between t22 and t23
	sim.Reject(modbussim.Holding, 201, 201)
	dataDir, err := os.MkdirTemp("", "edged-holes-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	doc := fmt.Sprintf("[[device]]\nname = \"holes\"\naddress = %q\npoll_interval = \"10ms\"\n%s", sim.Addr(), tags.String())
	d, perPoll, err := pollSix(sim, doc, dataDir)
	if err != nil {
		return err
	}
	// A restart: a new driver with the same config and data_dir.
	d2, restarted, err := pollSix(sim, doc, dataDir)
	if err != nil {
		return err
	}
	l := d.Learned()
	// The minimum: the same tags without the refused ones, never spanning a
	// refused register.
	var ok []modbus.Tag
	for i, t := range d.TagList() {
		if i != 10 && i != 11 && i != 33 {
			ok = append(ok, t)
		}
	}
	minimum := minPlan(ok, d.Limits())
	fmt.Printf("requests per poll, 60 tags (holding 0..236 every 4), 3 refused tags, 2 refused registers between tags, max_gap 16:\n")
	fmt.Printf("  configured plan (blind merge):  %d\n", len(d.Requests()))
	fmt.Printf("  first poll (bisecting):         %d\n", perPoll[1]-perPoll[0])
	fmt.Printf("  learned plan (later polls):     %d (measured on the wire: %d)\n", len(l.Plan), perPoll[len(perPoll)-1]-perPoll[len(perPoll)-2])
	fmt.Printf("  first poll after a restart:     %d (learned plan saved under data_dir; exceptions in 6 polls: %d before, %d after the restart)\n",
		restarted[1]-restarted[0], d.Stats().Exceptions, d2.Stats().Exceptions)
	fmt.Printf("  minimum knowing the holes:      %d\n", minimum)
	fmt.Printf("  learned: %d cuts, %d unreadable tags, %d changes\n\n", len(l.Cuts), len(l.Unreadable), l.Changes)
	return nil
}

// pollSix starts a device decoded from doc with data_dir dataDir, polls it
// six times and stops it; perPoll is sim.Requests() before the first poll
// and after each.
func pollSix(sim *modbussim.Server, doc, dataDir string) (*modbus.TCP, []uint64, error) {
	d := decode(doc, modbus.NewTCP())
	if err := d.Init(); err != nil {
		return nil, nil, err
	}
	d.SetDataDir(dataDir)
	c := &counter{ch: make(chan struct{}, 1), requests: sim.Requests}
	first := sim.Requests()
	if err := d.Start(context.Background(), c); err != nil {
		return nil, nil, err
	}
	for c.n() < 6 {
		<-c.ch
	}
	d.Stop(context.Background())
	c.mu.Lock()
	defer c.mu.Unlock()
	return d, append([]uint64{first}, c.marks...), nil
}

// minPlan is the fewest reads covering tags without reading a refused
// register (40, 44, 90, 132, 201): Plan's greedy merge over the tags,
// split wherever a request would cover one.
func minPlan(tags []modbus.Tag, lim modbus.Limits) int {
	refused := []int{40, 44, 90, 132, 201}
	n := 0
	var seg []modbus.Tag
	flush := func() {
		if len(seg) > 0 {
			n += len(modbus.Plan(seg, lim))
		}
		seg = nil
	}
	for _, t := range tags {
		if len(seg) > 0 {
			prev := seg[len(seg)-1].Address
			for _, r := range refused {
				if prev < r && r < t.Address {
					flush()
					break
				}
			}
		}
		seg = append(seg, t)
	}
	flush()
	return n
}

// throughput polls 250 contiguous registers (2 × 125) back to back on a
// bus paced at baud and compares with the wire limit.
func throughput(baud int, dur time.Duration) error {
	dir, err := os.MkdirTemp("", "edged-rtu-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := modbussim.StartPtyPair(dir)
	if err != nil {
		return err
	}
	defer p.Close()
	sim := modbussim.New()
	r, err := sim.ServeRTU(p.B, modbussim.RTUOptions{Baud: baud, BitsPerChar: 11})
	if err != nil {
		return err
	}
	defer r.Close()
	var tags strings.Builder
	for i := range 250 {
		fmt.Fprintf(&tags, "[[device.tag]]\nname = \"r%d\"\narea = \"holding\"\naddress = %d\ntype = \"uint16\"\n", i, i)
	}
	d := decode(fmt.Sprintf("[[device]]\nname = \"bench\"\nport = %q\nbaud = %d\nparity = \"even\"\nunit_id = 1\npoll_interval = \"1ms\"\ntimeout = \"1s\"\n%s",
		p.A, baud, tags.String()), modbus.NewRTU())
	if err := d.Init(); err != nil {
		return err
	}
	lanes := host.New()
	d.Provision(host.Env{Host: lanes})
	c := &counter{ch: make(chan struct{}, 1)}
	if err := d.Start(context.Background(), c); err != nil {
		return err
	}
	defer d.Stop(context.Background())
	for c.n() < 2 { // warm up: port open, first polls
		<-c.ch
	}
	// Count whole polls: from one poll's delivery to the last one's.
	n0, t0 := c.at()
	time.Sleep(dur)
	n1, t1 := c.at()
	polls, el := n1-n0, t1.Sub(t0)
	mode := serial.Mode{Baud: baud, DataBits: 8, Parity: "even", StopBits: 1}
	one := modbus.Request{Area: modbus.HoldingRegister, Count: 125}.WireTime(mode)
	limit := 125 / one.Seconds()
	got := float64(polls*250) / el.Seconds()
	st := modbus.BusStats(lanes)
	util := 0.0
	if len(st) > 0 {
		util = st[0].Utilisation
	}
	fmt.Printf("RTU %6d baud 8E1, 125-register reads: %7.1f registers/s, wire limit %7.1f/s (%.1f%%), %d polls in %v, bus utilisation %.0f%%\n",
		baud, got, limit, 100*got/limit, polls, el.Round(time.Millisecond), 100*util)
	return nil
}
