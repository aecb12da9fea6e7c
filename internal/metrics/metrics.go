// Package metrics serves edged's operational view on a local HTTP port:
// Prometheus metrics (/metrics, on a registry of its own), liveness
// (/healthz) and readiness (/readyz, 503 listing what is not ready). The
// values are read from the gateway and broker when scraped, so the hot path
// pays nothing for them.
package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound"
)

// DefaultListen is where the HTTP endpoints listen unless configured.
const DefaultListen = "127.0.0.1:9272"

// Server is the HTTP server of /metrics, /healthz and /readyz.
type Server struct {
	Registry *prometheus.Registry
	// TLS, when set before Start, makes the port speak HTTPS.
	TLS *tls.Config

	extra  map[string]http.Handler // Handle
	listen string
	log    *slog.Logger
	ready  func() []string
	ln     net.Listener
	srv    *http.Server
}

// NewServer makes a server for listen. ready returns what is not ready (an
// empty list means ready).
func NewServer(listen string, ready func() []string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{Registry: reg, listen: listen, log: log, ready: ready}
}

// Handle adds a handler (the console) to the port; call it before Start.
func (s *Server) Handle(pattern string, h http.Handler) {
	if s.extra == nil {
		s.extra = map[string]http.Handler{}
	}
	s.extra[pattern] = h
}

// Start listens and serves in the background. A busy port is reported here.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w (set [metrics] listen to a free address, or disabled = true)", s.listen, err)
	}
	if s.TLS != nil {
		ln = tls.NewListener(ln, s.TLS)
	}
	s.ln = ln
	mux := http.NewServeMux()
	for p, h := range s.extra {
		mux.Handle(p, h)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.serveReady)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Stop ends long-lived requests (the console's event streams) too.
	base, cancel := context.WithCancel(context.Background())
	s.srv.BaseContext = func(net.Listener) context.Context { return base }
	s.srv.RegisterOnShutdown(cancel)
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	}()
	s.log.Info("metrics listening", "address", ln.Addr().String())
	return nil
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var missing []string
	if s.ready != nil {
		missing = s.ready()
	}
	if len(missing) == 0 {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "not ready:\n%s\n", strings.Join(missing, "\n"))
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop shuts the server down; safe if Start failed or was not called.
func (s *Server) Stop(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Readiness lists what is not ready: the gateway's devices that are not
// online (with the reason) — a device still connecting or offline means
// its values are not flowing.
func Readiness(gw *gateway.Gateway) []string {
	var out []string
	for _, d := range gw.Snapshot() {
		if d.State == southbound.StateOnline {
			continue
		}
		line := fmt.Sprintf("device %s: %s", d.Name, d.State)
		if d.Err != nil {
			line += " (" + d.Err.Error() + ")"
		}
		out = append(out, line)
	}
	return out
}

// pollBounds are southbound.PollBuckets as a slice, for the histogram.
var pollBounds = southbound.PollBuckets[:]

func pollHistogram(h southbound.PollHistogram, device string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(pollBounds))
	for i, le := range pollBounds {
		if i < len(h.Counts) {
			buckets[le] = h.Counts[i]
		}
	}
	return prometheus.MustNewConstHistogram(descPollSeconds, h.Count, h.Sum, buckets, device)
}

// BuildInfo is the edged_build_info gauge (always 1): the version and
// commit edged was built from and the Go version that built it, so a fleet
// dashboard can tell which build each box runs.
func BuildInfo(version, commit string) prometheus.Collector {
	if version == "" {
		version = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "edged_build_info",
		Help:        "The build of edged running (always 1): version, commit and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": runtime.Version()},
	}, func() float64 { return 1 })
}

// GatewayCollector exports per-device and gateway-wide series.
type GatewayCollector struct {
	GW     *gateway.Gateway
	Broker *northbound.Broker
}

var (
	descUp          = prometheus.NewDesc("edged_device_up", "1 if the device answered its last poll, else 0.", []string{"device", "driver"}, nil)
	descState       = prometheus.NewDesc("edged_device_state", "The device's state: 1 for the current one.", []string{"device", "state"}, nil)
	descPolls       = prometheus.NewDesc("edged_device_polls_total", "Sample batches (polls or notifications) received from the device.", []string{"device"}, nil)
	descBad         = prometheus.NewDesc("edged_device_bad_samples_total", "Samples whose quality was not good.", []string{"device"}, nil)
	descLastGood    = prometheus.NewDesc("edged_device_last_success_timestamp_seconds", "When the device last delivered a good value (Unix seconds; 0 never).", []string{"device"}, nil)
	descTags        = prometheus.NewDesc("edged_device_tags", "Tags configured on the device.", []string{"device"}, nil)
	descRequests    = prometheus.NewDesc("edged_device_requests_total", "Requests sent to the device.", []string{"device"}, nil)
	descErrors      = prometheus.NewDesc("edged_device_errors_total", "Failed requests by kind.", []string{"device", "kind"}, nil)
	descPollSeconds = prometheus.NewDesc("edged_device_poll_duration_seconds", "How long complete poll cycles took (a subscribing device: its keepalive requests).", []string{"device"}, nil)
	descOverruns    = prometheus.NewDesc("edged_device_overruns_total", "Polls that started a whole poll interval late: the device (or its lane) cannot carry the configured interval.", []string{"device"}, nil)
	descSamples     = prometheus.NewDesc("edged_samples_total", "Samples received from all devices.", nil, nil)
	descPublished   = prometheus.NewDesc("edged_published_messages_total", "Value messages published to the local broker.", nil, nil)
	descPubErrors   = prometheus.NewDesc("edged_publish_errors_total", "Value messages the local broker refused.", nil, nil)
	descClients     = prometheus.NewDesc("edged_broker_clients", "Clients connected to the local broker.", nil, nil)
	descSent        = prometheus.NewDesc("edged_broker_messages_sent_total", "PUBLISH packets written to local broker clients.", nil, nil)
	descDropped     = prometheus.NewDesc("edged_broker_messages_dropped_total", "Messages dropped because a local client's queue was full.", nil, nil)
	descRetained    = prometheus.NewDesc("edged_broker_retained_messages", "Retained messages held by the local broker.", nil, nil)
	descSubs        = prometheus.NewDesc("edged_broker_subscriptions", "Subscriptions of clients connected to the local broker.", nil, nil)
)

var states = []southbound.State{southbound.StateConnecting, southbound.StateOnline, southbound.StateOffline, southbound.StateStopped}

// Describe implements prometheus.Collector.
func (c GatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descPolls, descBad, descLastGood, descTags, descRequests, descErrors,
		descPollSeconds, descOverruns, descSamples, descPublished, descPubErrors, descClients, descSent, descDropped, descRetained, descSubs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c GatewayCollector) Collect(ch chan<- prometheus.Metric) {
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for _, d := range c.GW.Snapshot() {
		up := 0.0
		if d.State == southbound.StateOnline {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, gauge, up, d.Name, d.Driver)
		for _, s := range states {
			v := 0.0
			if d.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, gauge, v, d.Name, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descPolls, counter, float64(d.Polls), d.Name)
		ch <- prometheus.MustNewConstMetric(descBad, counter, float64(d.BadSamples), d.Name)
		ch <- prometheus.MustNewConstMetric(descLastGood, gauge, float64(d.LastGoodMs)/1000, d.Name)
		ch <- prometheus.MustNewConstMetric(descTags, gauge, float64(len(d.Tags)), d.Name)
		if sr, ok := d.Source.(southbound.StatsReporter); ok {
			st := sr.Stats()
			ch <- prometheus.MustNewConstMetric(descRequests, counter, float64(st.Requests), d.Name)
			other := st.Errors - min(st.Errors, st.Timeouts+st.Exceptions)
			ch <- prometheus.MustNewConstMetric(descErrors, counter, float64(st.Timeouts), d.Name, "timeout")
			ch <- prometheus.MustNewConstMetric(descErrors, counter, float64(st.Exceptions), d.Name, "exception")
			ch <- prometheus.MustNewConstMetric(descErrors, counter, float64(other), d.Name, "other")
			ch <- pollHistogram(st.PollTimes, d.Name)
			ch <- prometheus.MustNewConstMetric(descOverruns, counter, float64(st.Overruns), d.Name)
		}
	}
	cn := c.GW.Counters()
	ch <- prometheus.MustNewConstMetric(descSamples, counter, float64(cn.Samples))
	ch <- prometheus.MustNewConstMetric(descPublished, counter, float64(cn.Published))
	ch <- prometheus.MustNewConstMetric(descPubErrors, counter, float64(cn.PublishErrors))
	if c.Broker != nil {
		bs := c.Broker.Stats()
		ch <- prometheus.MustNewConstMetric(descClients, gauge, float64(bs.Clients))
		ch <- prometheus.MustNewConstMetric(descSent, counter, float64(bs.MessagesSent))
		ch <- prometheus.MustNewConstMetric(descDropped, counter, float64(bs.MessagesDropped))
		ch <- prometheus.MustNewConstMetric(descRetained, gauge, float64(bs.RetainedMessages))
		ch <- prometheus.MustNewConstMetric(descSubs, gauge, float64(bs.Subscriptions))
	}
}
