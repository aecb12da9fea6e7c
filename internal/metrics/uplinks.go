package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edged-gw/edged/northbound"
)

// UplinkCollector exports per-uplink series (label upstream): connection,
// buffer and delivery figures, read from each uplink when scraped.
type UplinkCollector struct {
	// Uplinks returns the running uplinks; it is called on every scrape, so
	// uplinks replaced by a reload are followed.
	Uplinks func() []*northbound.Uplink
}

var (
	upLabel           = []string{"upstream"}
	descUplinkUp      = prometheus.NewDesc("edged_uplink_up", "1 if the uplink has a session with its cloud broker, else 0.", upLabel, nil)
	descUplinkState   = prometheus.NewDesc("edged_uplink_state", "The uplink's state: 1 for the current one.", []string{"upstream", "state"}, nil)
	descUplinkErr     = prometheus.NewDesc("edged_uplink_last_error_info", "Why the uplink's last connection failed, while it is not connected (always 1): reason is one of dns, connection_refused, timeout, tls, broker_refused, connection_lost, other (the error's text is in the log and /readyz).", []string{"upstream", "reason"}, nil)
	descUplinkConns   = prometheus.NewDesc("edged_uplink_connects_total", "Sessions established with the cloud broker.", upLabel, nil)
	descUplinkTries   = prometheus.NewDesc("edged_uplink_connect_attempts_total", "Connection attempts, failed ones included.", upLabel, nil)
	descUplinkSent    = prometheus.NewDesc("edged_uplink_published_total", "PUBLISH packets written to the cloud broker (live and replayed, resends included).", upLabel, nil)
	descUplinkReplay  = prometheus.NewDesc("edged_uplink_replayed_total", "Buffered (historical) messages published.", upLabel, nil)
	descUplinkAcked   = prometheus.NewDesc("edged_uplink_acked_total", "Messages the cloud broker acknowledged (PUBACK) and that were removed from the buffer.", upLabel, nil)
	descUplinkBacklog = prometheus.NewDesc("edged_uplink_replay_backlog_messages", "Buffered messages the current session has still to replay (an upper bound).", upLabel, nil)
	descUplinkReadErr = prometheus.NewDesc("edged_uplink_read_errors_total", "Buffer reads that failed (each retried with backoff; the session is kept).", upLabel, nil)
	descUplinkAckTO   = prometheus.NewDesc("edged_uplink_ack_timeouts_total", "Sessions ended because no PUBACK came for ack_timeout while messages were in flight.", upLabel, nil)
	descUplinkDelay   = prometheus.NewDesc("edged_uplink_reconnect_delay_seconds", "The wait before the next connect attempt while not connected (0 while connected).", upLabel, nil)
	descUplinkRefused = prometheus.NewDesc("edged_uplink_refused_total", "PUBACKs in which the cloud broker refused a message (MQTT 5 reason code 0x80 or above), by reason.", []string{"upstream", "reason"}, nil)
	descUplinkLost    = prometheus.NewDesc("edged_uplink_lost_total", "Messages given up after the cloud broker refused them (dropped from the buffer, never counted as acked), by reason.", []string{"upstream", "reason"}, nil)
	descBufDepth      = prometheus.NewDesc("edged_uplink_buffer_messages", "Messages in the buffer not yet acknowledged by the cloud broker.", upLabel, nil)
	descBufBytes      = prometheus.NewDesc("edged_uplink_buffer_bytes", "Size of the messages in the buffer (kept to 69–75% of max_bytes).", upLabel, nil)
	descBufAge        = prometheus.NewDesc("edged_uplink_buffer_oldest_age_seconds", "Age of the oldest message in the buffer (0 when empty).", upLabel, nil)
	descBufAppended   = prometheus.NewDesc("edged_uplink_buffer_appended_total", "Messages appended to the buffer since it was opened.", upLabel, nil)
	descBufWritten    = prometheus.NewDesc("edged_uplink_buffer_written_total", "Messages written to disk since the buffer was opened (the rest were delivered within write_delay).", upLabel, nil)
	descBufDropped    = prometheus.NewDesc("edged_uplink_buffer_dropped_total", "Messages dropped unsent by the buffer's caps (max_bytes, max_age) or a full disk.", upLabel, nil)
	descBufDiskFull   = prometheus.NewDesc("edged_uplink_buffer_disk_full", "1 while buffer writes are paused because the file system is (nearly) full.", upLabel, nil)
	descBufAtCap      = prometheus.NewDesc("edged_uplink_buffer_at_cap", "1 while buffer writes are paused because the store reached max_bytes on disk (compactions behind a flood).", upLabel, nil)
	descBufDisk       = prometheus.NewDesc("edged_uplink_buffer_disk_bytes", "Disk space the buffer's store takes (at most max_bytes).", upLabel, nil)
	descBufWriteErrs  = prometheus.NewDesc("edged_uplink_buffer_write_errors_total", "Failed buffer writes (retried).", upLabel, nil)
	descBufLost       = prometheus.NewDesc("edged_uplink_buffer_lost_total", "Messages lost unsent and not dropped by a cap: reason damaged (the store's files were damaged; a store moved aside counts what it held), unstored (accepted but not yet written when edged died, counted at the next start).", []string{"upstream", "reason"}, nil)
	descBufRecovered  = prometheus.NewDesc("edged_uplink_buffer_recovered", "1 if the buffer could not be opened and was moved aside for a fresh one (an alarm).", upLabel, nil)
)

var uplinkStates = []string{"connecting", "online", "offline", "stopped"}

// Describe implements prometheus.Collector.
func (c UplinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUplinkUp, descUplinkState, descUplinkErr, descUplinkConns, descUplinkTries,
		descUplinkSent, descUplinkReplay, descUplinkAcked, descUplinkBacklog,
		descUplinkReadErr, descUplinkAckTO, descUplinkDelay, descUplinkRefused, descUplinkLost, descBufDepth, descBufBytes, descBufAge,
		descBufAppended, descBufWritten, descBufDropped, descBufDiskFull, descBufAtCap, descBufDisk, descBufWriteErrs, descBufLost, descBufRecovered} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c UplinkCollector) Collect(ch chan<- prometheus.Metric) {
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, u := range c.Uplinks() {
		s := u.Stats()
		n := s.Name
		ch <- prometheus.MustNewConstMetric(descUplinkUp, gauge, flag(s.State == "online"), n)
		for _, st := range uplinkStates {
			ch <- prometheus.MustNewConstMetric(descUplinkState, gauge, flag(s.State == st), n, st)
		}
		if s.LastErrReason != "" && s.State != "online" {
			ch <- prometheus.MustNewConstMetric(descUplinkErr, gauge, 1, n, s.LastErrReason)
		}
		ch <- prometheus.MustNewConstMetric(descUplinkConns, counter, float64(s.Connects), n)
		ch <- prometheus.MustNewConstMetric(descUplinkTries, counter, float64(s.ConnectAttempts), n)
		ch <- prometheus.MustNewConstMetric(descUplinkSent, counter, float64(s.Sent), n)
		ch <- prometheus.MustNewConstMetric(descUplinkReplay, counter, float64(s.Replayed), n)
		ch <- prometheus.MustNewConstMetric(descUplinkAcked, counter, float64(s.Acked), n)
		ch <- prometheus.MustNewConstMetric(descUplinkBacklog, gauge, float64(s.ReplayBacklog), n)
		ch <- prometheus.MustNewConstMetric(descUplinkReadErr, counter, float64(s.ReadErrors), n)
		ch <- prometheus.MustNewConstMetric(descUplinkAckTO, counter, float64(s.AckTimeouts), n)
		ch <- prometheus.MustNewConstMetric(descUplinkDelay, gauge, s.ReconnectDelay.Seconds(), n)
		for _, r := range northbound.RefusalReasons {
			ch <- prometheus.MustNewConstMetric(descUplinkRefused, counter, float64(s.Refused[r]), n, r)
			ch <- prometheus.MustNewConstMetric(descUplinkLost, counter, float64(s.Lost[r]), n, r)
		}
		b := s.Buffer
		ch <- prometheus.MustNewConstMetric(descBufDepth, gauge, float64(b.Depth), n)
		ch <- prometheus.MustNewConstMetric(descBufBytes, gauge, float64(b.Bytes), n)
		ch <- prometheus.MustNewConstMetric(descBufAge, gauge, b.OldestAge, n)
		ch <- prometheus.MustNewConstMetric(descBufAppended, counter, float64(b.Appended), n)
		ch <- prometheus.MustNewConstMetric(descBufWritten, counter, float64(b.Written), n)
		ch <- prometheus.MustNewConstMetric(descBufDropped, counter, float64(b.Dropped), n)
		ch <- prometheus.MustNewConstMetric(descBufDiskFull, gauge, flag(b.DiskFull), n)
		ch <- prometheus.MustNewConstMetric(descBufAtCap, gauge, flag(b.AtCap), n)
		ch <- prometheus.MustNewConstMetric(descBufDisk, gauge, float64(b.DiskBytes), n)
		ch <- prometheus.MustNewConstMetric(descBufWriteErrs, counter, float64(b.WriteErrors), n)
		ch <- prometheus.MustNewConstMetric(descBufLost, counter, float64(b.LostDamaged), n, "damaged")
		ch <- prometheus.MustNewConstMetric(descBufLost, counter, float64(b.LostUnstored), n, "unstored")
		ch <- prometheus.MustNewConstMetric(descBufRecovered, gauge, flag(b.Recovered), n)
	}
}

// UplinkReadiness lists the uplinks without a session with their cloud
// broker (with the last error): their messages are only being buffered.
func UplinkReadiness(ups []*northbound.Uplink) []string {
	var out []string
	for _, u := range ups {
		s := u.Stats()
		if s.State == "online" {
			continue
		}
		line := fmt.Sprintf("upstream %s: %s", s.Name, s.State)
		if s.LastErr != "" {
			line += " (" + s.LastErr + ")"
		}
		out = append(out, line)
	}
	return out
}
