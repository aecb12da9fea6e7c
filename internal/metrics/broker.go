package metrics

import (
	"github.com/edged-gw/edged/northbound"
	"github.com/prometheus/client_golang/prometheus"
)

// BrokerCollector exports the local broker's logins and byte bounds. The
// drops are labelled by user name (bounded by the config; "" is the
// anonymous clients), never by client id, which clients choose freely.
type BrokerCollector struct{ Broker *northbound.Broker }

var (
	descHeldBytes = prometheus.NewDesc("edged_broker_held_bytes", "Bytes the local broker holds for its clients (queued for their sockets or unacknowledged).", nil, nil)
	descDropping  = prometheus.NewDesc("edged_broker_clients_dropping", "Local clients too slow for their byte bound, whose messages are being dropped.", nil, nil)
	descUserDrops = prometheus.NewDesc("edged_broker_client_dropped_total", "Messages not queued for a slow local client (byte bound or in-flight window), by user name (\"\": anonymous).", []string{"user"}, nil)
	descChecks    = prometheus.NewDesc("edged_broker_password_checks_total", "Password hashes compared by the local broker.", nil, nil)
	descRefused   = prometheus.NewDesc("edged_broker_logins_refused_total", "Connections the local broker refused at login.", nil, nil)
	descThrottled = prometheus.NewDesc("edged_broker_logins_throttled_total", "Logins refused by the failed-login rate limit, without hashing.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c BrokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHeldBytes, descDropping, descUserDrops, descChecks, descRefused, descThrottled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c BrokerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.Broker.Stats()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(descHeldBytes, gauge, float64(s.Held.HeldBytes))
	ch <- prometheus.MustNewConstMetric(descDropping, gauge, float64(s.Held.Dropping))
	for user, n := range s.Held.DroppedByUser {
		ch <- prometheus.MustNewConstMetric(descUserDrops, counter, float64(n), user)
	}
	ch <- prometheus.MustNewConstMetric(descChecks, counter, float64(s.Auth.PasswordChecks))
	ch <- prometheus.MustNewConstMetric(descRefused, counter, float64(s.Auth.LoginsRefused))
	ch <- prometheus.MustNewConstMetric(descThrottled, counter, float64(s.Auth.LoginThrottled))
}
