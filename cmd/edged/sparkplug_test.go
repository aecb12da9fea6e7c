package main

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/northbound/sparkplughost"
)

// TestSparkplugOutagesKillAndRestart runs the edged binary as a Sparkplug
// edge node through a proxy to Debian's mosquitto, watched by a primary
// host simulation: through 5 uplink outages, a kill -9 and a restart the
// host sees an NDEATH for every connection that ended, delivered by the
// broker as the will with the bdSeq of that connection's NBIRTH, new
// births after each, historical data replayed after the outages, and no
// gap or unborn data it cannot explain; a device outage gives a DDEATH
// and, when the device answers again, a DBIRTH.
func TestSparkplugOutagesKillAndRestart(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	var sim atomic.Pointer[modbussim.Server] // replaced by the device outage
	sim.Store(modbussim.New())
	if err := sim.Load().Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	simAddr := sim.Load().Addr()
	t.Cleanup(func() { sim.Load().Close() })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the value changes: DDATA by exception all along
		defer wg.Done()
		for i := uint16(1); ; i++ {
			sim.Load().SetHolding(0, i)
			select {
			case <-stop:
				return
			case <-time.After(60 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	host := sparkplughost.Start(t, mq.PlainAddr(), "host1", "plant")
	wire := mqtttest.Subscribe(t, mq.PlainAddr(), "spBv1.0/plant/#")

	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`[gateway]
id = "gw-sp"
data_dir = %q
[broker]
listen = "127.0.0.1:0"
[[device]]
name = "plc"
driver = "modbus-tcp"
address = %q
poll_interval = "50ms"
  [[device.tag]]
  name = "level"
  area = "holding_register"
  address = 0
  type = "uint16"
  [[device.tag]]
  name = "temp"
  area = "holding_register"
  address = 2
  type = "float32"
  [[device.tag]]
  name = "count"
  area = "holding_register"
  address = 4
  type = "uint32"
  [[device.tag]]
  name = "total"
  area = "holding_register"
  address = 6
  type = "int64"
  [[device.tag]]
  name = "scaled"
  area = "holding_register"
  address = 10
  type = "int16"
  scale = 0.1
  unit = "bar"
[[upstream]]
name = "scada"
url = "mqtts://%s"
ca_file = %q
cert_file = %q
key_file = %q
max_bytes = "16MiB"
reconnect_max = "1s"
format = "sparkplug"
group_id = "plant"
primary_host = "host1"
`, dir+"/data", simAddr, proxy.Addr(), mq.CAFile, mq.ClientCert, mq.ClientKey))
	node := func(s sparkplughost.Snapshot) sparkplughost.Node { return s.Nodes["gw-sp"] }
	cmd, _ := startRun(t, path)
	host.WaitFor(30*time.Second, "births and live data", func(s sparkplughost.Snapshot) bool {
		return node(s).Births == 1 && node(s).LiveMetrics > 0
	})
	for i := range 5 {
		proxy.Cut()
		host.WaitFor(30*time.Second, fmt.Sprintf("NDEATH %d (the will)", i+1), func(s sparkplughost.Snapshot) bool { return node(s).Deaths == i+1 })
		time.Sleep(300 * time.Millisecond) // the outage: values change meanwhile and wait in the buffer
		hist := node(host.Snapshot()).Historical
		proxy.Restore()
		host.WaitFor(30*time.Second, fmt.Sprintf("births and the backlog after outage %d", i+1), func(s sparkplughost.Snapshot) bool {
			return node(s).Births == i+2 && node(s).Historical > hist
		})
	}
	// A device outage: DDEATH, then DBIRTH when it answers again.
	if err := sim.Load().Close(); err != nil {
		t.Fatal(err)
	}
	host.WaitFor(30*time.Second, "DDEATH", func(s sparkplughost.Snapshot) bool { return node(s).Messages["DDEATH"] == 1 })
	back := modbussim.New()
	if err := back.Listen(simAddr); err != nil {
		t.Fatal(err)
	}
	sim.Store(back)
	dbirths := node(host.Snapshot()).Messages["DBIRTH"]
	host.WaitFor(30*time.Second, "DBIRTH after the device outage", func(s sparkplughost.Snapshot) bool { return node(s).Messages["DBIRTH"] == dbirths+1 })
	reborn := node(host.Snapshot()).LiveMetrics
	host.WaitFor(30*time.Second, "data after the DBIRTH", func(s sparkplughost.Snapshot) bool { return node(s).LiveMetrics > reborn })
	killedBdSeq := node(host.Snapshot()).BdSeq
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	host.WaitFor(30*time.Second, "the NDEATH of the killed edged", func(s sparkplughost.Snapshot) bool { return node(s).Deaths == 6 && !node(s).Online })
	live := node(host.Snapshot()).LiveMetrics
	cmd, out := startRun(t, path)
	host.WaitFor(30*time.Second, "births and live data after the restart", func(s sparkplughost.Snapshot) bool {
		return node(s).Births == 7 && node(s).LiveMetrics > live
	})
	// bdSeq goes on from the killed run's, so its late will could never
	// match the new NBIRTH.
	if bd := node(host.Snapshot()).BdSeq; bd != killedBdSeq+1 {
		t.Errorf("bdSeq after the restart = %d, want %d (the killed run's + 1)", bd, killedBdSeq+1)
	}
	// A clean stop publishes the NDEATH itself, then disconnects (the
	// broker then sends no will).
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	host.WaitFor(30*time.Second, "the NDEATH of the stopped edged", func(s sparkplughost.Snapshot) bool { return node(s).Deaths == 7 && !node(s).Online })
	s := host.Snapshot()
	for _, k := range []sparkplughost.EventKind{sparkplughost.Gap, sparkplughost.NotBorn, sparkplughost.UnknownAlias, sparkplughost.NamedData,
		sparkplughost.Undecodable, sparkplughost.BadBirth, sparkplughost.StaleDeath, sparkplughost.DuplicateDeath, sparkplughost.RebirthSent} {
		if n := s.Count(k); n != 0 {
			t.Errorf("the host saw %d %s: %+v", n, k, s.Events)
		}
	}
	if t.Failed() {
		out.mu.Lock()
		t.Logf("edged output:\n%s", strings.Join(out.lines, "\n"))
		out.mu.Unlock()
	}
	t.Logf("host saw %+v", node(s).Messages)
	// Everything edged sent, through Tahu's decoder and the host rules
	// again: bdSeq, seq continuity, births before data, aliases, types.
	sparkplughost.CheckWithTahu(t, wire.Messages(), map[string]string{"level": "UInt16", "temp": "Float", "count": "UInt32", "total": "Int64", "scaled": "Double"}, 7)
}
