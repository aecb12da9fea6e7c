package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"sync"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/internal/modbussim"
)

// demoPlant is the simulated plant of `edged demo`: a Modbus TCP PLC, a
// Modbus TCP energy meter and an OPC UA server (gopcua's, in-process), all
// on loopback, moving like a small process.
type demoPlant struct {
	plc, meter *modbussim.Server
	ua         *server.Server
	uaNS       *demoNamespace
	uaURL      string
}

// setpointAddr is the holding register of the PLC's level_setpoint
// (float32, big-endian): the tank level follows it, and `edged write`
// changes it.
const setpointAddr = 20

func startPlant() (*demoPlant, error) {
	p := &demoPlant{plc: modbussim.New(), meter: modbussim.New()}
	for _, s := range []*modbussim.Server{p.plc, p.meter} {
		if err := s.Listen("127.0.0.1:0"); err != nil {
			p.Close()
			return nil, fmt.Errorf("start Modbus simulator: %w", err)
		}
	}
	p.plc.SetHolding(10, stringWords("EDGED-DEMO-0001", 8)...)
	p.plc.SetHolding(setpointAddr, f32words(50)...)
	if err := p.startOPCUA(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// startOPCUA runs gopcua's server on a free loopback port with the nodes
// ns=1;s=Line1.Speed, Line1.GoodParts and Line1.State.
func (p *demoPlant) startOPCUA() error {
	log.SetOutput(io.Discard) // gopcua's server logs every request through the global logger
	var err error
	for range 5 { // a free port may be taken before the server binds it: try another
		var l net.Listener
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("start OPC UA simulator: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s := server.New(server.EndPoint("127.0.0.1", port),
			server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous))
		raw := server.NewMapNamespace(s, "urn:edged:demo")
		ns := &demoNamespace{MapNamespace: raw, srv: s}
		s.Namespaces()[raw.ID()] = ns // serve through the locking wrapper
		ns.Data["Line1.Speed"] = 1450.0
		ns.Data["Line1.GoodParts"] = uint32(0)
		ns.Data["Line1.State"] = "RUNNING"
		if err = s.Start(context.Background()); err == nil {
			p.ua, p.uaNS = s, ns
			p.uaURL = fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
			return nil
		}
		_ = s.Close()
	}
	return fmt.Errorf("start OPC UA simulator: %w", err)
}

// Close stops the simulators.
func (p *demoPlant) Close() {
	for _, s := range []*modbussim.Server{p.plc, p.meter} {
		if s != nil {
			s.Close()
		}
	}
	if p.ua != nil {
		_ = p.ua.Close()
	}
}

// run moves the simulators' registers and nodes until ctx ends.
func (p *demoPlant) run(ctx context.Context) {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var energy uint32 = 1234500 // 12345.00 kWh
	level := 50.0
	var parts uint32
	lastState := "RUNNING"
	for i := 0; ; i++ {
		t := time.Since(start).Seconds()
		count := uint32(t)
		// The PLC regulates the tank level to its setpoint, with a ripple.
		w := p.plc.Holding(setpointAddr, 2)
		sp := float64(math.Float32frombits(uint32(w[0])<<16 | uint32(w[1])))
		if math.IsNaN(sp) || math.IsInf(sp, 0) {
			sp = level
		}
		level += (sp - level) * 0.02
		shown := float32(level + 2*math.Sin(2*math.Pi*t/20))
		flow := float32(12.5 + 3*math.Sin(2*math.Pi*t/17))
		temp := int16(215 + 80*math.Sin(2*math.Pi*t/45)) // 13.5 … 29.5 °C
		status := uint16(0)
		if shown < 80 {
			status |= 1 // pump running while not full
		}
		if int(t)%20 < 10 {
			status |= 2 // valve cycles every 10 s
		}
		if shown > 85 {
			status |= 4
		}
		p.plc.SetHolding(0, uint16(count>>16), uint16(count))
		p.plc.SetHolding(2, f32words(shown)...)
		p.plc.SetHolding(4, status)
		fw := f32words(flow)
		p.plc.SetHolding(6, fw[1], fw[0]) // word-swapped on the wire
		p.plc.SetInput(0, uint16(temp))
		p.plc.SetCoil(0, status&1 == 1)

		volts := f32words(float32(230 + 2*math.Sin(2*math.Pi*t/7)))
		energy++
		p.meter.SetInput(0, volts[1], volts[0])
		p.meter.SetInput(2, uint16(energy), uint16(energy>>16))

		// The line runs for 50 s, then stops 10 s for a changeover.
		running := int(t)%60 < 50
		if state := map[bool]string{true: "RUNNING", false: "CHANGEOVER"}[running]; state != lastState {
			p.uaNS.set("Line1.State", state)
			lastState = state
		}
		speed := 0.0
		if running {
			speed = math.Round((1450+30*math.Sin(2*math.Pi*t/13))*10) / 10
			if i%5 == 0 { // two parts a second
				parts++
				p.uaNS.set("Line1.GoodParts", parts)
			}
		}
		p.uaNS.set("Line1.Speed", speed)

		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// demoNamespace guards gopcua's map namespace: the library reads its map
// without the lock that SetValue takes, which the race detector reports.
type demoNamespace struct {
	*server.MapNamespace
	srv *server.Server
	mu  sync.RWMutex
}

func (n *demoNamespace) Attribute(id *ua.NodeID, a ua.AttributeID) *ua.DataValue {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.MapNamespace.Attribute(id, a)
}

func (n *demoNamespace) Browse(bd *ua.BrowseDescription) *ua.BrowseResult {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.MapNamespace.Browse(bd)
}

// SetAttribute refuses writes: the demo's writable setpoint is on the PLC.
func (n *demoNamespace) SetAttribute(*ua.NodeID, ua.AttributeID, *ua.DataValue) ua.StatusCode {
	return ua.StatusBadNotWritable
}

func (n *demoNamespace) set(key string, v any) {
	n.mu.Lock()
	n.Data[key] = v
	n.mu.Unlock()
	n.srv.ChangeNotification(ua.NewStringNodeID(n.ID(), key))
}

func f32words(f float32) []uint16 {
	b := math.Float32bits(f)
	return []uint16{uint16(b >> 16), uint16(b)}
}

func stringWords(s string, n int) []uint16 {
	w := make([]uint16, n)
	for i := 0; i < n && 2*i < len(s); i++ {
		hi := uint16(s[2*i]) << 8
		var lo uint16
		if 2*i+1 < len(s) {
			lo = uint16(s[2*i+1])
		}
		w[i] = hi | lo
	}
	return w
}
