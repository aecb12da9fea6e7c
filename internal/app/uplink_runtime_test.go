package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/mosquittotest"
	"github.com/edged-gw/edged/internal/mqtttest"
	"github.com/edged-gw/edged/internal/testwait"
	"github.com/edged-gw/edged/northbound"
)

// upstreamTOML is one [[upstream]] table for mosquittotest's TLS listener
// at addr (the broker itself or a proxy in front of it).
func upstreamTOML(mq *mosquittotest.Broker, addr, name, extra string) string {
	return fmt.Sprintf(`
[[upstream]]
name = %q
url = "mqtts://%s"
client_id = "edged-it-%s"
ca_file = %q
cert_file = %q
key_file = %q
max_bytes = "16MiB"
%s
`, name, addr, name, mq.CAFile, mq.ClientCert, mq.ClientKey, extra)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, text...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// publishSeq publishes {"seq":i} for i in [from, to) on topic.
func publishSeq(t *testing.T, rt *Runtime, topic string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := rt.Broker.Publish(topic, fmt.Appendf(nil, `{"seq":%d}`, i), false, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// seqsOn returns the sequence numbers received on topic.
func seqsOn(ms []mqtttest.Message, topic string) map[int]bool {
	seen := map[int]bool{}
	for _, m := range ms {
		if m.Topic != topic {
			continue
		}
		var p struct{ Seq int }
		if json.Unmarshal(m.Payload, &p) == nil {
			seen[p.Seq] = true
		}
	}
	return seen
}

func allSeqs(seen map[int]bool, n int) bool {
	for i := range n {
		if !seen[i] {
			return false
		}
	}
	return true
}

// TestUplinkMetricsAndReadiness scrapes the uplink series of a real TLS
// uplink to mosquitto through a healthy link, an outage and the recovery.
func TestUplinkMetricsAndReadiness(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	proxy := mosquittotest.NewProxy(t, mq.TLSAddr())
	cloud := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/it/seq/#")
	boiler, meter := startSim(t), startSim(t)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	withMetrics(t, path)
	appendFile(t, path, upstreamTOML(mq, proxy.Addr(), "cloud", `topics = ["edged/it/seq/#"]`))
	rt, _ := startFromFile(t, path)
	if rt.Metrics == nil {
		t.Fatal("metrics endpoint not started")
	}
	base := "http://" + rt.Metrics.Addr()
	scrape := func(series string) float64 {
		_, body := get(t, base+"/metrics")
		return metric(t, body, series)
	}
	mqtttest.Subscribe(t, rt.Broker.Addr(), "edged/it/#") // counts in edged_broker_subscriptions
	const topic = "edged/it/seq/a"

	testwait.For(t, 10*time.Second, "uplink up", func() bool { return scrape(`edged_uplink_up{upstream="cloud"}`) == 1 })
	testwait.For(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	const n = 200
	publishSeq(t, rt, topic, 0, n)
	cloud.WaitFor(10*time.Second, "the first messages", func(ms []mqtttest.Message) bool { return allSeqs(seqsOn(ms, topic), n) })
	testwait.For(t, 10*time.Second, "acked ≥ n and an empty buffer", func() bool {
		return scrape(`edged_uplink_acked_total{upstream="cloud"}`) >= n && scrape(`edged_uplink_buffer_messages{upstream="cloud"}`) == 0
	})
	_, m := get(t, base+"/metrics")
	for series, ok := range map[string]func(float64) bool{
		`edged_uplink_up{upstream="cloud"}`:                                    func(v float64) bool { return v == 1 },
		`edged_uplink_state{state="online",upstream="cloud"}`:                  func(v float64) bool { return v == 1 },
		`edged_uplink_state{state="offline",upstream="cloud"}`:                 func(v float64) bool { return v == 0 },
		`edged_uplink_published_total{upstream="cloud"}`:                       func(v float64) bool { return v >= n },
		`edged_uplink_connects_total{upstream="cloud"}`:                        func(v float64) bool { return v == 1 },
		`edged_uplink_connect_attempts_total{upstream="cloud"}`:                func(v float64) bool { return v == 1 },
		`edged_uplink_buffer_appended_total{upstream="cloud"}`:                 func(v float64) bool { return v == n },
		`edged_uplink_buffer_bytes{upstream="cloud"}`:                          func(v float64) bool { return v == 0 },
		`edged_uplink_buffer_oldest_age_seconds{upstream="cloud"}`:             func(v float64) bool { return v == 0 },
		`edged_uplink_buffer_dropped_total{upstream="cloud"}`:                  func(v float64) bool { return v == 0 },
		`edged_uplink_replay_backlog_messages{upstream="cloud"}`:               func(v float64) bool { return v == 0 },
		`edged_broker_subscriptions`:                                           func(v float64) bool { return v >= 1 },
		`edged_uplink_reconnect_delay_seconds{upstream="cloud"}`:               func(v float64) bool { return v == 0 },
		`edged_uplink_ack_timeouts_total{upstream="cloud"}`:                    func(v float64) bool { return v == 0 },
		`edged_uplink_read_errors_total{upstream="cloud"}`:                     func(v float64) bool { return v == 0 },
		`edged_uplink_refused_total{reason="not_authorized",upstream="cloud"}`: func(v float64) bool { return v == 0 },
		`edged_uplink_lost_total{reason="quota_exceeded",upstream="cloud"}`:    func(v float64) bool { return v == 0 },
	} {
		if v := metric(t, m, series); !ok(v) {
			t.Errorf("%s = %v while connected:\n%s", series, v, grepLines(m, "edged_uplink"))
		}
	}
	if strings.Contains(m, "edged_uplink_last_error_info") {
		t.Errorf("a last error is exported while connected:\n%s", grepLines(m, "edged_uplink_last_error_info"))
	}

	// Outage: the path to the cloud breaks.
	proxy.Cut()
	testwait.For(t, 10*time.Second, "uplink down", func() bool { return scrape(`edged_uplink_up{upstream="cloud"}`) == 0 })
	const outage = 150
	publishSeq(t, rt, topic, n, n+outage)
	testwait.For(t, 10*time.Second, "the outage's messages in the buffer", func() bool {
		return scrape(`edged_uplink_buffer_messages{upstream="cloud"}`) == outage
	})
	testwait.For(t, 10*time.Second, "/readyz listing the uplink with its error", func() bool {
		code, body := get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, "upstream cloud: ") && strings.Contains(body, "(") && !strings.Contains(body, "device ")
	})
	testwait.For(t, 10*time.Second, "a last error series and the age of the oldest message", func() bool {
		_, m := get(t, base+"/metrics")
		return strings.Contains(m, `edged_uplink_last_error_info{reason="`) &&
			metric(t, m, `edged_uplink_buffer_oldest_age_seconds{upstream="cloud"}`) > 0 &&
			metric(t, m, `edged_uplink_buffer_bytes{upstream="cloud"}`) > 0 &&
			metric(t, m, `edged_uplink_buffer_disk_bytes{upstream="cloud"}`) > 0 &&
			metric(t, m, `edged_uplink_buffer_at_cap{upstream="cloud"}`) == 0 &&
			metric(t, m, `edged_uplink_reconnect_delay_seconds{upstream="cloud"}`) > 0 &&
			metric(t, m, `edged_uplink_connect_attempts_total{upstream="cloud"}`) >= 2
	})

	// The error is a bounded reason, its text only in /readyz and the log.
	_, m = get(t, base+"/metrics")
	boundedLabels(t, m)
	if reason := regexp.MustCompile(`edged_uplink_last_error_info\{reason="([^"]*)",upstream="cloud"\} 1`).FindStringSubmatch(m); reason == nil || !slices.Contains(northbound.ErrorReasons, reason[1]) {
		t.Errorf("edged_uplink_last_error_info during the outage:\n%s", grepLines(m, "edged_uplink_last_error_info"))
	}

	// Recovery: the backlog drains.
	proxy.Restore()
	cloud.WaitFor(30*time.Second, "every message after the outage", func(ms []mqtttest.Message) bool {
		return allSeqs(seqsOn(ms, topic), n+outage)
	})
	testwait.For(t, 10*time.Second, "an empty buffer after the outage", func() bool {
		_, m := get(t, base+"/metrics")
		return metric(t, m, `edged_uplink_buffer_messages{upstream="cloud"}`) == 0 &&
			metric(t, m, `edged_uplink_up{upstream="cloud"}`) == 1 &&
			metric(t, m, `edged_uplink_acked_total{upstream="cloud"}`) >= n+outage
	})
	_, m = get(t, base+"/metrics")
	if v := metric(t, m, `edged_uplink_replayed_total{upstream="cloud"}`); v < outage {
		t.Errorf("replayed %v < %d buffered during the outage", v, outage)
	}
	if v := metric(t, m, `edged_uplink_connects_total{upstream="cloud"}`); v != 2 {
		t.Errorf("connects %v, want 2", v)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz after the recovery = %d %q", code, body)
	}
}

// TestReloadUplinks reloads three uplinks under a steady stream of
// messages: a changed one restarts on its buffer and the cloud gets every
// message, an unchanged one keeps running as the same object, a removed
// one stops and leaves its buffer folder.
func TestReloadUplinks(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	cloudSub := mqtttest.Subscribe(t, mq.PlainAddr(), "edged/it/#", "archive/it/#", "spare/it/#")
	boiler, meter := startSim(t), startSim(t)
	path := writeE2E(t, boiler.Addr(), meter.Addr())
	e2e, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	archive := upstreamTOML(mq, mq.TLSAddr(), "archive", "topics = [\"edged/it/seq/#\"]\ntopic_prefix = \"archive\"")
	spare := upstreamTOML(mq, mq.TLSAddr(), "spare", "topics = [\"edged/it/seq/#\"]\ntopic_prefix = \"spare\"")
	before := upstreamTOML(mq, mq.TLSAddr(), "cloud", "topics = [\"edged/it/seq/#\"]\nkeepalive = \"5s\"") + archive + spare
	after := upstreamTOML(mq, mq.TLSAddr(), "cloud", "topics = [\"edged/it/seq/#\", \"edged/it/extra/#\"]\nkeepalive = \"7s\"") + archive
	appendFile(t, path, before)
	rt, running := startFromFile(t, path)
	ups := rt.Uplinks()
	if len(ups) != 3 {
		t.Fatalf("%d uplinks", len(ups))
	}
	oldCloud, oldArchive := ups[0], ups[1]
	online := func(u *northbound.Uplink) bool { return u.Stats().State == "online" }
	testwait.For(t, 10*time.Second, "every uplink online", func() bool {
		return online(ups[0]) && online(ups[1]) && online(ups[2])
	})

	// A steady stream, ~1 message/ms, across the reload.
	const topic = "edged/it/seq/a"
	var mu sync.Mutex
	sent := 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = rt.Broker.Publish(topic, fmt.Appendf(nil, `{"seq":%d}`, i), false, 0)
			mu.Lock()
			sent = i + 1
			mu.Unlock()
		}
	}()
	sentNow := func() int { mu.Lock(); defer mu.Unlock(); return sent }
	testwait.For(t, 10*time.Second, "the archive acknowledging the stream", func() bool { return oldArchive.Stats().Acked >= 100 })
	archiveAcked := oldArchive.Stats().Acked

	if err := os.WriteFile(path, append(slices.Clip(e2e), after...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rt.Reload(context.Background(), path, running); err != nil {
		t.Fatal(err)
	}
	rep := rt.LastUplinkReload()
	if !slices.Equal(rep.Restarted, []string{"cloud"}) || !slices.Equal(rep.Unchanged, []string{"archive"}) ||
		!slices.Equal(rep.Stopped, []string{"spare"}) || len(rep.Started)+len(rep.Failed) != 0 {
		t.Fatalf("uplink reload report %+v", rep)
	}
	ups = rt.Uplinks()
	if len(ups) != 2 || ups[1] != oldArchive || ups[0] == oldCloud {
		t.Fatalf("after the reload: %d uplinks, archive kept %v, cloud replaced %v", len(ups), ups[1] == oldArchive, ups[0] != oldCloud)
	}
	newCloud := ups[0]
	testwait.For(t, 10*time.Second, "the new cloud uplink online", func() bool { return online(newCloud) })
	mark := sentNow()
	testwait.For(t, 10*time.Second, "the stream continuing after the reload", func() bool { return sentNow() > mark+100 })
	close(stop)
	<-done
	total := sentNow()

	cloudSub.WaitFor(30*time.Second, fmt.Sprintf("every seq below %d at the cloud and the archive", total), func(ms []mqtttest.Message) bool {
		return allSeqs(seqsOn(ms, topic), total) && allSeqs(seqsOn(ms, "archive/it/seq/a"), total)
	})
	if got := oldArchive.Stats().Acked; got < archiveAcked+uint64(total/2) {
		t.Errorf("the archive's acked counter went from %d to %d: it was restarted or stalled", archiveAcked, got)
	}
	if st := oldCloud.Stats(); st.State != "stopped" {
		t.Errorf("the replaced cloud uplink is %s", st.State)
	}
	// The new settings are in force: the added filter goes up.
	if err := rt.Broker.Publish("edged/it/extra/b", []byte(`{"seq":0}`), false, 0); err != nil {
		t.Fatal(err)
	}
	cloudSub.WaitTopic(10*time.Second, "edged/it/extra/b", nil)
	// The removed uplink announced itself offline and left its buffer.
	cloudSub.WaitTopic(10*time.Second, "spare/it/status", func(p []byte) bool { return string(p) == "offline" })
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "buffer", "spare")); err != nil {
		t.Errorf("the removed uplink's buffer folder: %v", err)
	}
	testwait.For(t, 10*time.Second, "the restarted cloud uplink's buffer drained", func() bool {
		return newCloud.Stats().Buffer.Depth == 0
	})
	t.Logf("%d messages streamed; the restarted uplink replayed %d buffered across the switch", total, newCloud.Stats().Replayed)
}
