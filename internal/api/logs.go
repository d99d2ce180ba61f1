package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodeboot/nodeboot/internal/contract"
)

var (
	descLogsInfo = prometheus.NewDesc("nodeboot_logs_remote_info",
		"1 on a node that ships its log lines (nodeboot.json logs.remote): the endpoint and the last error (empty when none).",
		[]string{"endpoint", "error"}, nil)
	descLogsConnected = prometheus.NewDesc("nodeboot_logs_remote_connected",
		"1 while the log endpoint takes lines, else 0.", nil, nil)
	descLogsBufBytes = prometheus.NewDesc("nodeboot_logs_remote_buffered_bytes",
		"Bytes of log lines waiting for the endpoint (in the buffer on /data and in memory).", nil, nil)
	descLogsBufLines = prometheus.NewDesc("nodeboot_logs_remote_buffered_lines",
		"Log lines waiting for the endpoint.", nil, nil)
	descLogsCap = prometheus.NewDesc("nodeboot_logs_remote_buffer_cap_bytes",
		"The bound of the buffer on /data: past it the oldest lines are dropped.", nil, nil)
	descLogsDelivered = prometheus.NewDesc("nodeboot_logs_remote_delivered_lines_total",
		"Log lines delivered to the endpoint since PID 1 started.", nil, nil)
	descLogsDropped = prometheus.NewDesc("nodeboot_logs_remote_dropped_lines_total",
		"Log lines dropped since PID 1 started (buffer full, or refused by the endpoint).", nil, nil)
)

var logsDescs = []*prometheus.Desc{descLogsInfo, descLogsConnected, descLogsBufBytes, descLogsBufLines, descLogsCap, descLogsDelivered, descLogsDropped}

// collectLogs adds the remote log shipper's metrics.
func collectLogs(ch chan<- prometheus.Metric, l *contract.LogsStatus) {
	if l == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	e := l.LastError
	if len(e) > maxLabel {
		e = e[:maxLabel] + "..."
	}
	gauge(descLogsInfo, 1, l.Endpoint, e)
	connected := 0.0
	if l.Connected {
		connected = 1
	}
	gauge(descLogsConnected, connected)
	gauge(descLogsBufBytes, float64(l.BufferedBytes))
	gauge(descLogsBufLines, float64(l.BufferedLines))
	gauge(descLogsCap, float64(l.CapBytes))
	ch <- prometheus.MustNewConstMetric(descLogsDelivered, prometheus.CounterValue, float64(l.Delivered))
	ch <- prometheus.MustNewConstMetric(descLogsDropped, prometheus.CounterValue, float64(l.Dropped))
}
