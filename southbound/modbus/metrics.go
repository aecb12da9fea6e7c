package modbus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edged-gw/edged/southbound/host"
)

func init() {
	host.RegisterCollector(func(h *host.Host) prometheus.Collector { return collector{h} })
}

// collector exports the state of every Modbus RTU serial bus in use (how
// busy the line is, whether the configured poll intervals fit it, what
// goes wrong on the wire) and what the adaptive planner learned about each
// running Modbus device.
type collector struct{ lanes *host.Host }

var (
	busLabels       = []string{"port"}
	descBusUtil     = prometheus.NewDesc("edged_serial_bus_utilisation_ratio", "Share of wall time the line carried frames since the bus started.", busLabels, nil)
	descBusTx       = prometheus.NewDesc("edged_serial_bus_transactions_total", "Requests sent on the line.", busLabels, nil)
	descBusErrors   = prometheus.NewDesc("edged_serial_bus_errors_total", "Failed transactions by kind.", []string{"port", "kind"}, nil)
	descBusOverruns = prometheus.NewDesc("edged_serial_bus_overruns_total", "Polls that started a whole interval late because the line was busy.", busLabels, nil)
	descBusOpens    = prometheus.NewDesc("edged_serial_bus_opens_total", "Successful opens of the port (1 + reconnects).", busLabels, nil)
	descBusCycle    = prometheus.NewDesc("edged_serial_device_cycle_seconds", "Wall time of the device's last poll on the bus.", []string{"port", "device"}, nil)
	descBusInterval = prometheus.NewDesc("edged_serial_device_interval_seconds", "The device's configured poll interval.", []string{"port", "device"}, nil)
	descBusDevOver  = prometheus.NewDesc("edged_serial_device_overruns_total", "Polls of the device that started a whole interval late.", []string{"port", "device"}, nil)
)

// Describe implements prometheus.Collector.
func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBusUtil, descBusTx, descBusErrors, descBusOverruns, descBusOpens, descBusCycle, descBusInterval, descBusDevOver,
		descPlanRequests, descPlanChanges, descUnreadable, descMaxRegisters} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for _, l := range c.lanes.Lanes() {
		for _, m := range l.Members {
			if d, ok := m.Driver.(learner); ok {
				collectLearned(ch, m.Name, d)
			}
		}
	}
	for _, b := range BusStats(c.lanes) {
		ch <- prometheus.MustNewConstMetric(descBusUtil, gauge, b.Utilisation, b.Port)
		ch <- prometheus.MustNewConstMetric(descBusTx, counter, float64(b.Transactions), b.Port)
		for kind, v := range map[string]uint64{"timeout": b.Timeouts, "crc": b.CRCErrors, "frame": b.FrameErrors, "exception": b.Exceptions, "port": b.PortErrors} {
			ch <- prometheus.MustNewConstMetric(descBusErrors, counter, float64(v), b.Port, kind)
		}
		ch <- prometheus.MustNewConstMetric(descBusOverruns, counter, float64(b.Overruns), b.Port)
		ch <- prometheus.MustNewConstMetric(descBusOpens, counter, float64(b.Opens), b.Port)
		for _, d := range b.Devices {
			ch <- prometheus.MustNewConstMetric(descBusCycle, gauge, d.LastCycle.Seconds(), b.Port, d.Name)
			ch <- prometheus.MustNewConstMetric(descBusInterval, gauge, d.Interval.Seconds(), b.Port, d.Name)
			ch <- prometheus.MustNewConstMetric(descBusDevOver, counter, float64(d.Overruns), b.Port, d.Name)
		}
	}
}

// learner is implemented by Modbus devices (TCP and RTU): what the
// adaptive planner learned about the device.
type learner interface{ Learned() Learned }

var (
	descPlanRequests = prometheus.NewDesc("edged_modbus_plan_requests", "Reads per poll in the plan in use (after learning).", []string{"device"}, nil)
	descPlanChanges  = prometheus.NewDesc("edged_modbus_plan_changes_total", "Things the planner learned: splits of refused reads, unreadable tags, lowered read limits.", []string{"device"}, nil)
	descUnreadable   = prometheus.NewDesc("edged_modbus_unreadable_tags", "Tags the device refuses to read even alone (reported bad, re-read now and then).", []string{"device"}, nil)
	descMaxRegisters = prometheus.NewDesc("edged_modbus_max_registers", "Registers per read in use (lowered when the device refused long reads).", []string{"device"}, nil)
)

func collectLearned(ch chan<- prometheus.Metric, device string, l learner) {
	ln := l.Learned()
	ch <- prometheus.MustNewConstMetric(descPlanRequests, prometheus.GaugeValue, float64(len(ln.Plan)), device)
	ch <- prometheus.MustNewConstMetric(descPlanChanges, prometheus.CounterValue, float64(ln.Changes), device)
	ch <- prometheus.MustNewConstMetric(descUnreadable, prometheus.GaugeValue, float64(len(ln.Unreadable)), device)
	ch <- prometheus.MustNewConstMetric(descMaxRegisters, prometheus.GaugeValue, float64(ln.MaxRegisters), device)
}
