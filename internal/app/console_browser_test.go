package app

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/mapping"
)

// chromiumPath is Debian's chromium, installed by scripts/test-deps.sh.
const chromiumPath = "/usr/bin/chromium"

// artifactsDir is where the browser test leaves its screenshots: the
// EDGED_ARTIFACTS folder, or testdata/artifacts/console (ignored by git).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDGED_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is a headless chromium tab with the page's errors collected.
type browser struct {
	t    *testing.T
	ctx  context.Context
	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run `make test-deps` (scripts/test-deps.sh installs Debian's chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 900),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		switch e := ev.(type) {
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				b.mu.Lock()
				b.errs = append(b.errs, e.Entry.Text)
				b.mu.Unlock()
			}
		case *runtime.EventExceptionThrown:
			b.mu.Lock()
			b.errs = append(b.errs, "exception: "+e.ExceptionDetails.Text)
			b.mu.Unlock()
		}
	}))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b.ctx = ctx
	enableLog := chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return chromedp.Void{}, err
	})
	if err := chromedp.Do(ctx, enableLog); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) open(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	b.waitText("#live", time.Minute, "the event stream connected", func(s string) bool { return s == "live" })
}

// text is the text of the first element matching the CSS selector ("" if
// none).
func (b *browser) text(sel string) string {
	b.t.Helper()
	js := fmt.Sprintf(`(function(){var e=document.querySelector(%s);return e?e.textContent:""})()`, strconv.Quote(sel))
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

func key(k string) string { return fmt.Sprintf(`[data-k=%q]`, k) }

// waitText polls the element's text until cond holds; it returns the text.
func (b *browser) waitText(sel string, timeout time.Duration, what string, cond func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := b.text(sel)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %v waiting for %s: %s shows %q", timeout, what, sel, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *browser) shot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifactsDir(b.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
	return path
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

func number(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1
	}
	return n
}

// TestConsoleInBrowser opens the console of a running edged (a Modbus
// simulator, an in-process OPC UA server, a TLS uplink to mosquitto behind a
// proxy) in headless chromium: values change on the page as the devices
// change, a killed device shows offline with its reason within two poll
// intervals, an uplink outage shows the backlog growing and then draining,
// a refused reload shows its errors, and every page is photographed with
// no script or CSP error.
func TestConsoleInBrowser(t *testing.T) {
	log.SetOutput(io.Discard) // gopcua's server logs globally
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	ConsoleEvery.Sample = 500 * time.Millisecond // plots with points in a short test; live values at the default
	t.Cleanup(func() { ConsoleEvery.Sample = 0 })

	sim := startSim(t)
	sim.SetFloat32(modbussim.Holding, 0, 21.5, mapping.OrderABCD)
	port := freeTCPPort(t)
	ua := &uaServer{port: port, data: map[string]any{"speed": 12.5}}
	ua.start(t)
	t.Cleanup(ua.stop)
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())

	const poll = 2 * time.Second
	extra := fmt.Sprintf(`
[[device]]
name = "press"
driver = "opcua"
endpoint = "opc.tcp://127.0.0.1:%d"
security_policy = "None"
publishing_interval = "50ms"
sampling_interval = "0s"
keepalive = "500ms"
timeout = "2s"

  [[device.tag]]
  name = "speed"
  node = "ns=1;s=speed"
  unit = "rpm"
`, port) + upstreamTOML(mq, proxy.Addr(), "cloud", `topics = ["edged/it/seq/#"]`)
	path := writeConsoleConfig(t, sim.Addr(), consoleSetup{listen: "127.0.0.1:0", poll: poll.String(), extra: extra})
	rt, cfg := startFromFile(t, path)
	base := consoleURL(t, rt, "http")
	b := newBrowser(t)

	// Modbus: the value on the page follows the simulator without a reload.
	b.open(base + "/console/device/boiler")
	temp := key("t:boiler:temperature:v")
	b.waitText(temp, 30*time.Second, "the first temperature", func(s string) bool { return s == "21.5" })
	sim.SetFloat32(modbussim.Holding, 0, 22.75, mapping.OrderABCD)
	b.waitText(temp, 30*time.Second, "the new temperature", func(s string) bool { return s == "22.75" })
	b.waitText(key("t:boiler:temperature:ch"), 10*time.Second, "a last change time", func(s string) bool { return s != "–" && s != "" })
	if s := b.text("#tags"); !strings.Contains(s, "holding_register 0") || !strings.Contains(s, "float32 ABCD") {
		t.Errorf("the tag table lacks address or type: %q", s)
	}
	if s := b.text("#plan"); !strings.Contains(s, "holding_register") {
		t.Errorf("no read plan on the device page: %q", s)
	}
	b.shot("device-boiler.png")

	// OPC UA: likewise.
	b.open(base + "/console/device/press")
	speed := key("t:press:speed:v")
	b.waitText(speed, 30*time.Second, "the first speed", func(s string) bool { return s == "12.5" })
	ua.set("speed", 99.5)
	b.waitText(speed, 30*time.Second, "the new speed", func(s string) bool { return s == "99.5" })
	b.shot("device-press.png")

	// A killed device shows offline, with its reason, within two polls.
	b.open(base + "/console/")
	b.waitText(key("d:boiler:state"), 30*time.Second, "boiler online", func(s string) bool { return s == "online" })
	b.waitText(key("u:cloud:state"), 30*time.Second, "uplink online", func(s string) bool { return s == "online" })
	killed := time.Now()
	_ = sim.Close()
	b.waitText(key("d:boiler:state"), 30*time.Second, "boiler offline", func(s string) bool { return s == "offline" })
	shown := time.Since(killed)
	reason := b.waitText(key("d:boiler:err"), 5*time.Second, "the reason", func(s string) bool { return s != "" })
	t.Logf("killed device shown offline after %v: %q", shown, reason)
	if shown > 2*poll {
		t.Errorf("the killed device showed offline after %v, more than two poll intervals (%v)", shown, 2*poll)
	}

	// An uplink outage: the backlog grows on the page, then drains.
	proxy.Cut()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i += 20 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			publishSeq(t, rt, "edged/it/seq/a", i, i+20)
		}
	}()
	depth := key("u:cloud:depth")
	first := number(b.waitText(depth, 30*time.Second, "a backlog", func(s string) bool { return number(s) > 0 }))
	grown := number(b.waitText(depth, 30*time.Second, "a growing backlog", func(s string) bool { return number(s) > first+50 }))
	b.waitText(key("u:cloud:state"), 30*time.Second, "uplink not online", func(s string) bool { return s != "online" })
	t.Logf("backlog on the page: %d then %d", first, grown)
	time.Sleep(1500 * time.Millisecond) // a few plot points of the outage for the picture
	close(stop)
	wg.Wait()
	b.shot("overview-outage.png")
	b.open(base + "/console/uplinks")
	b.shot("uplinks-outage.png")
	proxy.Restore()
	b.waitText(key("u:cloud:state"), 60*time.Second, "uplink back online", func(s string) bool { return s == "online" })
	b.waitText(depth, 60*time.Second, "the backlog drained", func(s string) bool { return s == "0" })
	if acked := number(b.text(key("u:cloud:acked"))); acked < grown {
		t.Errorf("the page shows %d acknowledged after a backlog of %d drained", acked, grown)
	}
	time.Sleep(1500 * time.Millisecond)
	b.open(base + "/console/uplinks")
	b.shot("uplinks-drained.png")
	if s := b.text(".history"); !strings.Contains(s, "online") || !strings.Contains(s, "offline") && !strings.Contains(s, "connecting") {
		t.Errorf("the connection history does not show the outage: %q", s)
	}

	// A refused reload: the config page lists its errors at file:line.
	bad := filepath.Join(filepath.Dir(path), "bad.toml")
	if err := os.WriteFile(bad, []byte("[gateway]\nid = \"it\"\nlog_level = \"loud\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Reload(context.Background(), bad, cfg); err == nil {
		t.Fatal("a bad config reloaded")
	}
	b.open(base + "/console/config")
	if s := b.text("main"); !strings.Contains(s, "refused") || !strings.Contains(s, "bad.toml:3") || !strings.Contains(s, path) {
		t.Errorf("the config page does not show the refused reload at file:line: %q", s)
	}
	b.shot("config.png")
	b.open(base + "/console/")
	b.shot("overview.png")

	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("the browser logged errors (CSP violations, script errors): %q", errs)
	}
}
