package app

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/mqtttest"
)

func startFromFile(t *testing.T, path string) (*Runtime, *configs.Config) {
	t.Helper()
	cfg, err := configs.Load(path, Drivers(nil))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	return rt, cfg
}

func withMetrics(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "[broker]", "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[broker]", 1))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the series line that starts with name{labels}.
func metric(t *testing.T, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("series %s not exported", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetricsHealthAndReadiness(t *testing.T) {
	boiler, meter := startSim(t), startSim(t)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	withMetrics(t, path)
	rt, _ := startFromFile(t, path)
	if rt.Metrics == nil {
		t.Fatal("metrics endpoint not started")
	}
	base := "http://" + rt.Metrics.Addr()
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#")
	sub.WaitTopic(10*time.Second, "edged/it/meter/_status", func(p []byte) bool { return strings.Contains(string(p), "online") })
	sub.WaitTopic(10*time.Second, "edged/it/boiler/_status", func(p []byte) bool { return strings.Contains(string(p), "online") })

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz with every device online = %d %q", code, body)
	}

	_ = boiler.Close()
	sub.WaitTopic(10*time.Second, "edged/it/boiler/_status", func(p []byte) bool { return strings.Contains(string(p), "offline") })
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "device boiler: offline") || strings.Contains(body, "meter") {
		t.Fatalf("/readyz with the boiler down = %d %q", code, body)
	}

	_, m := get(t, base+"/metrics")
	if metric(t, m, `edged_device_up{device="boiler",driver="modbus-tcp"}`) != 0 ||
		metric(t, m, `edged_device_up{device="meter",driver="modbus-tcp"}`) != 1 {
		t.Fatalf("edged_device_up wrong:\n%s", grepLines(m, "edged_device_up"))
	}
	if metric(t, m, `edged_device_state{device="boiler",state="offline"}`) != 1 {
		t.Fatal("boiler not offline in edged_device_state")
	}
	if metric(t, m, `edged_device_tags{device="boiler"}`) != 5 || metric(t, m, `edged_device_tags{device="meter"}`) != 1 {
		t.Fatalf("edged_device_tags wrong:\n%s", grepLines(m, "edged_device_tags"))
	}
	if metric(t, m, `edged_device_bad_samples_total{device="boiler"}`) < 5 {
		t.Fatal("the boiler's bad samples are not counted")
	}
	polls := metric(t, m, `edged_device_polls_total{device="meter"}`)
	last := metric(t, m, `edged_device_last_success_timestamp_seconds{device="meter"}`)
	if polls < 1 || last < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("meter polls %v, last success %v", polls, last)
	}
	if reqs := metric(t, m, `edged_device_requests_total{device="meter"}`); reqs < polls {
		t.Fatalf("meter requests %v < polls %v", reqs, polls)
	}
	bootErrs := metric(t, m, `edged_device_errors_total{device="boiler",kind="other"}`) + metric(t, m, `edged_device_errors_total{device="boiler",kind="timeout"}`)
	if bootErrs < 1 {
		t.Fatalf("the dead boiler's failed requests are not counted:\n%s", grepLines(m, "edged_device_errors_total"))
	}
	if metric(t, m, `edged_device_errors_total{device="meter",kind="timeout"}`) != 0 {
		t.Fatal("the healthy meter shows timeouts")
	}
	// Poll durations are a histogram of every poll, not the last one.
	count := metric(t, m, `edged_device_poll_duration_seconds_count{device="meter"}`)
	sum := metric(t, m, `edged_device_poll_duration_seconds_sum{device="meter"}`)
	if count < 1 || sum <= 0 || sum/count > 5 {
		t.Fatalf("meter poll durations: count %v sum %v s:\n%s", count, sum, grepLines(m, "edged_device_poll_duration_seconds"))
	}
	if inf := metric(t, m, `edged_device_poll_duration_seconds_bucket{device="meter",le="+Inf"}`); inf != count {
		t.Fatalf("+Inf bucket %v, count %v", inf, count)
	}
	if le30 := metric(t, m, `edged_device_poll_duration_seconds_bucket{device="meter",le="30"}`); le30 != count {
		t.Fatalf("%v polls within 30 s of %v: a loopback poll takes milliseconds", le30, count)
	}
	if !regexp.MustCompile(`(?m)^edged_build_info\{commit="[^"]+",goversion="` + regexp.QuoteMeta(runtime.Version()) + `",version="[^"]+"\} 1$`).MatchString(m) {
		t.Fatalf("edged_build_info:\n%s", grepLines(m, "edged_build_info"))
	}
	boundedLabels(t, m)
	c := rt.Gateway.Counters()
	if got := metric(t, m, "edged_published_messages_total"); got < 1 || got > float64(c.Published) {
		t.Fatalf("edged_published_messages_total %v, gateway counted %d", got, c.Published)
	}
	if metric(t, m, "edged_broker_clients") < 1 || metric(t, m, "edged_broker_retained_messages") < 8 {
		t.Fatalf("broker series wrong:\n%s", grepLines(m, "edged_broker"))
	}
	if !strings.Contains(m, "go_goroutines ") || !strings.Contains(m, "process_resident_memory_bytes ") {
		t.Fatal("Go and process collectors missing")
	}
}

// boundedLabels fails the test if a label value of any series looks like
// free text (an error message: spaces, a colon followed by more): label
// values must come from small fixed sets or from the config's names, or
// every new error text would make a new series.
func boundedLabels(t *testing.T, body string) {
	t.Helper()
	lv := regexp.MustCompile(`([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"`)
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		open, closing := strings.IndexByte(l, '{'), strings.LastIndexByte(l, '}')
		if open < 0 || closing < open {
			continue
		}
		for _, m := range lv.FindAllStringSubmatch(l[open+1:closing], -1) {
			if strings.ContainsAny(m[2], " \t") || strings.Contains(m[2], ": ") {
				t.Errorf("label %s has free text %q: %s", m[1], m[2], l)
			}
		}
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestReloadChangesOneDeviceAndKeepsTheOtherPolling(t *testing.T) {
	boiler, meter := startSim(t), startSim(t)
	meter.SetHolding(9, 4242)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	rt, running := startFromFile(t, path)
	sub := mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#")
	sub.WaitTopic(10*time.Second, "edged/it/meter/energy", nil)
	sub.WaitTopic(10*time.Second, "edged/it/boiler/temperature", nil)
	pollsBefore := pollsOf(rt, "meter")

	// Change the boiler's map: a new tag.
	mapPath := filepath.Join(filepath.Dir(path), "maps", "boiler.toml")
	b, _ := os.ReadFile(mapPath)
	b = append(b, []byte("\n[[tag]]\nname = \"setpoint\"\narea = \"holding_register\"\naddress = 20\ntype = \"uint16\"\n")...)
	boiler.SetHolding(20, 65)
	if err := os.WriteFile(mapPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, rep, err := rt.Reload(context.Background(), path, running)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Restarted, []string{"boiler"}) || !slices.Equal(rep.Unchanged, []string{"meter"}) {
		t.Fatalf("reload report %+v", rep)
	}
	sub.WaitTopic(10*time.Second, "edged/it/boiler/setpoint", func(p []byte) bool { return strings.Contains(string(p), `"v":65,`) })
	// The meter kept running: its poll counter continued instead of starting over.
	if after := pollsOf(rt, "meter"); after < pollsBefore {
		t.Fatalf("meter polls went from %d to %d: it was restarted", pollsBefore, after)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pollsOf(rt, "meter") < pollsBefore+5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pollsOf(rt, "meter") < pollsBefore+5 {
		t.Fatal("the meter stopped polling across the reload")
	}

	// An invalid config is refused and the running one stays.
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(good, []byte("\n[[device]]\nname = \"x\"\ndriver = \"nope\"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Reload(context.Background(), path, cfg); err == nil || !strings.Contains(err.Error(), `unknown driver "nope"`) {
		t.Fatalf("invalid reload: %v", err)
	}
	if n := len(rt.Gateway.Snapshot()); n != 2 {
		t.Fatalf("%d devices after a refused reload", n)
	}
	before := pollsOf(rt, "boiler")
	deadline = time.Now().Add(5 * time.Second)
	for pollsOf(rt, "boiler") < before+3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pollsOf(rt, "boiler") < before+3 {
		t.Fatal("the boiler stopped polling after a refused reload")
	}
}

// writeConfig writes text as dir/edged.toml and returns its path.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "edged.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
