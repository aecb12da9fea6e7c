package app

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// The OPC UA path as a user runs it: a config file, gopcua's server on a
// loopback port, the opcua driver (subscription), the gateway, the
// embedded broker and a real MQTT subscriber; then a server restart.

const opcuaConfig = `[gateway]
id = "it"
data_dir = "{{DIR}}/data"

[broker]
listen = "127.0.0.1:0"

[[device]]
name = "press"
driver = "opcua"
endpoint = "{{ENDPOINT}}"
security_policy = "None"
publishing_interval = "50ms"
sampling_interval = "0s"
keepalive = "500ms"
timeout = "2s"

  [[device.tag]]
  name = "speed"
  node = "ns=1;s=speed"
  unit = "rpm"

  [[device.tag]]
  name = "profile"
  node = "ns=1;s=profile"

  [[device.tag]]
  name = "ghost"
  node = "ns=1;s=missing"

  [[device.tag]]
  name = "setpoint"
  node = "ns=1;s=setpoint"
  writable = true
  max = 100.0
`

func TestEndToEndOPCUAToMQTT(t *testing.T) {
	log.SetOutput(io.Discard) // gopcua's server logs globally
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	port := freeTCPPort(t)
	srv := &uaServer{port: port, data: map[string]any{"speed": 12.5, "profile": []int32{1, 2, 3}, "setpoint": 10.0}}
	srv.start(t)
	t.Cleanup(srv.stop)

	dir := t.TempDir()
	cfgText := strings.NewReplacer("{{DIR}}", dir, "{{ENDPOINT}}", fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)).Replace(opcuaConfig)
	path := writeConfig(t, dir, cfgText)
	cfg, err := configs.Load(path, Drivers(nil))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#")

	sub.WaitTopic(15*time.Second, "edged/it/press/speed", func(p []byte) bool {
		return string(p[:len(`{"v":12.5,`)]) == `{"v":12.5,` && strings.Contains(string(p), `"q":"good","unit":"rpm"`)
	})
	sub.WaitTopic(15*time.Second, "edged/it/press/profile", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":[1,2,3],`) })
	sub.WaitTopic(15*time.Second, "edged/it/press/ghost", func(p []byte) bool {
		return strings.Contains(string(p), `"q":"bad"`) && strings.Contains(string(p), "BadNodeIdUnknown (0x80340000)")
	})
	sub.WaitTopic(15*time.Second, "edged/it/press/_status", func(p []byte) bool { return strings.Contains(string(p), `"state":"online"`) })

	srv.set("speed", 20.0)
	sub.WaitTopic(10*time.Second, "edged/it/press/speed", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":20,`) })

	// A write through the driver lands on the server; one above max is refused.
	drv := cfg.Devices[0].Settings.(southbound.Writer)
	if err := drv.Write(context.Background(), "setpoint", mapping.Value{Kind: mapping.KindFloat, Float: 55}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := srv.get("setpoint"); got != 55.0 {
		t.Errorf("server setpoint %v after write", got)
	}
	if err := drv.Write(context.Background(), "setpoint", mapping.Value{Kind: mapping.KindFloat, Float: 500}); err == nil {
		t.Error("write above max accepted")
	}

	// Server restart: offline, then values again without touching edged.
	srv.stop()
	sub.WaitTopic(15*time.Second, "edged/it/press/_status", func(p []byte) bool { return strings.Contains(string(p), `"state":"offline"`) })
	sub.WaitTopic(15*time.Second, "edged/it/press/speed", func(p []byte) bool { return strings.Contains(string(p), `"q":"bad"`) })
	srv.data["speed"] = 20.0
	srv.start(t)
	sub.WaitTopic(20*time.Second, "edged/it/press/_status", func(p []byte) bool { return strings.Contains(string(p), `"state":"online"`) })
	srv.set("speed", 33.0)
	sub.WaitTopic(15*time.Second, "edged/it/press/speed", func(p []byte) bool { return strings.HasPrefix(string(p), `{"v":33,`) })
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// uaServer is gopcua's server with one map namespace (ns=1), restartable on
// the same port. Values change under mu, notifications go out after it
// (gopcua's MapNamespace reads its map unlocked; see southbound/opcua tests).
type uaServer struct {
	port int
	data map[string]any
	mu   sync.RWMutex
	srv  *server.Server
	ns   *server.MapNamespace
}

type lockedMap struct {
	*server.MapNamespace
	u *uaServer
}

func (n lockedMap) Attribute(id *ua.NodeID, a ua.AttributeID) *ua.DataValue {
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	return n.MapNamespace.Attribute(id, a)
}

func (n lockedMap) SetAttribute(id *ua.NodeID, a ua.AttributeID, v *ua.DataValue) ua.StatusCode {
	n.u.mu.Lock()
	n.Data[id.StringID()] = v.Value.Value()
	n.u.mu.Unlock()
	n.u.srv.ChangeNotification(id)
	return ua.StatusOK
}

func (u *uaServer) start(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := server.New(server.EndPoint("127.0.0.1", u.port),
			server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous))
		// Index 1 is the locked wrapper; the raw map is only its storage.
		raw := server.NewMapNamespace(s, "edged-e2e")
		wrapped := lockedMap{MapNamespace: raw, u: u}
		replaceNamespace(s, 1, wrapped)
		u.mu.Lock()
		for k, v := range u.data {
			raw.Data[k] = v
		}
		u.mu.Unlock()
		if err := s.Start(context.Background()); err == nil {
			u.mu.Lock()
			u.srv, u.ns = s, raw
			u.mu.Unlock()
			return
		}
		_ = s.Close()
		if time.Now().After(deadline) {
			t.Fatalf("OPC UA server on port %d did not start", u.port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replaceNamespace puts ns at index i of the server's namespace list.
func replaceNamespace(s *server.Server, i int, ns server.NameSpace) {
	s.Namespaces()[i] = ns
}

func (u *uaServer) stop() {
	u.mu.Lock()
	s, ns := u.srv, u.ns
	u.srv = nil
	if ns != nil {
		for k, v := range ns.Data {
			u.data[k] = v
		}
	}
	u.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

func (u *uaServer) set(key string, v any) {
	u.mu.Lock()
	u.ns.Data[key] = v
	s := u.srv
	u.mu.Unlock()
	s.ChangeNotification(ua.NewStringNodeID(1, key))
}

func (u *uaServer) get(key string) any {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.ns.Data[key]
}

// TestOPCUADeviceMetrics: OPC UA devices, subscribing and polling, export
// the same per-device request, error, poll-duration and overrun series as
// Modbus devices do (the host counts them for every driver).
func TestOPCUADeviceMetrics(t *testing.T) {
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	port := freeTCPPort(t)
	srv := &uaServer{port: port, data: map[string]any{"speed": 12.5, "profile": []int32{1, 2, 3}, "setpoint": 10.0}}
	srv.start(t)
	t.Cleanup(srv.stop)
	dir := t.TempDir()
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
	cfgText := strings.NewReplacer("{{DIR}}", dir, "{{ENDPOINT}}", endpoint).Replace(opcuaConfig) + fmt.Sprintf(`
[[device]]
name = "poller"
driver = "opcua"
endpoint = %q
security_policy = "None"
mode = "poll"
poll_interval = "20ms"
timeout = "2s"

  [[device.tag]]
  name = "speed"
  node = "ns=1;s=speed"
`, endpoint)
	path := writeConfig(t, dir, cfgText)
	withMetrics(t, path)
	rt, _ := startFromFile(t, path)
	base := "http://" + rt.Metrics.Addr()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := get(t, base+"/metrics")
		if strings.Contains(body, `edged_device_up{device="press",driver="opcua"} 1`) &&
			strings.Contains(body, `edged_device_up{device="poller",driver="opcua"} 1`) &&
			metric(t, body, `edged_device_requests_total{device="press"}`) >= 2 && // subscribe, monitor, keepalives
			metric(t, body, `edged_device_requests_total{device="poller"}`) >= 3 &&
			metric(t, body, `edged_device_poll_duration_seconds_sum{device="poller"}`) > 0 &&
			metric(t, body, `edged_device_poll_duration_seconds_sum{device="press"}`) > 0 {
			for _, dev := range []string{"press", "poller"} {
				for _, kind := range []string{"timeout", "exception", "other"} {
					metric(t, body, fmt.Sprintf(`edged_device_errors_total{device=%q,kind=%q}`, dev, kind))
				}
				metric(t, body, fmt.Sprintf(`edged_device_overruns_total{device=%q}`, dev))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OPC UA device metrics missing:\n%s", grepLines(body, "edged_device_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
