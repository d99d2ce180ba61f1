package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// initMetrics sets up a registry of the server's own (not the global one,
// which any imported package could fill): the node's status read at scrape
// time, the deploy counters, and PID 1's Go runtime and process.
func (s *Server) initMetrics() {
	s.registry = prometheus.NewRegistry()
	s.deploys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodeboot_deploys_total",
		Help: "Deploys through the management API since boot, by app and result (ok, unhealthy, rejected).",
	}, []string{"app", "result"})
	s.rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodeboot_rollbacks_total",
		Help: "Successful rollbacks through the management API since boot, by app.",
	}, []string{"app"})
	s.tlsFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nodeboot_api_tls_handshake_failures_total",
		Help: "Connections to the management API whose TLS handshake failed or timed out, since boot.",
	})
	s.connsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nodeboot_api_connections_refused_total",
		Help: "Connections to the management API closed at once because their source already held its share, since boot.",
	})
	s.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nodeboot_api_connections",
		Help: "Connections to the management API open now.",
	})
	s.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.deploys, s.rollbacks, s.tlsFailures, s.connsRefused, s.connsOpen,
		&statusCollector{s: s},
	)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog: promLogger(s.log),
		// A failing status read still leaves the runtime's metrics.
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP(w, r)
}

type promLogger func(format string, args ...any)

func (l promLogger) Println(v ...any) { l("management API: metrics: %s", fmt.Sprint(v...)) }

var (
	descBoot      = prometheus.NewDesc("nodeboot_boot_seconds", "Seconds from kernel start until every app first listened.", nil, nil)
	descUptime    = prometheus.NewDesc("nodeboot_uptime_seconds", "Seconds since the kernel started.", nil, nil)
	descMemTotal  = prometheus.NewDesc("nodeboot_memory_total_bytes", "RAM the kernel manages.", nil, nil)
	descMemAvail  = prometheus.NewDesc("nodeboot_memory_available_bytes", "RAM available to start new work without swapping (MemAvailable).", nil, nil)
	descDataTotal = prometheus.NewDesc("nodeboot_data_total_bytes", "Size of the /data file system.", nil, nil)
	descDataFree  = prometheus.NewDesc("nodeboot_data_free_bytes", "Free space on /data for apps.", nil, nil)
	descCPU       = prometheus.NewDesc("nodeboot_cpu_seconds_total", "CPU time spent outside idle and iowait since boot, all CPUs.", nil, nil)
	descAppUp     = prometheus.NewDesc("nodeboot_app_up", "1 while the app's process is running, else 0.", []string{"app"}, nil)
	descRestarts  = prometheus.NewDesc("nodeboot_app_restarts_total", "Times the app's process was restarted since boot.", []string{"app"}, nil)
	descAppReady  = prometheus.NewDesc("nodeboot_app_ready", "1 while the app's process has called ready() (require('nodeboot')), else 0.", []string{"app"}, nil)
	descWatchdog  = prometheus.NewDesc("nodeboot_app_watchdog_restarts_total", "Times the app was restarted since boot because its watchdog() keep-alives stopped.", []string{"app"}, nil)
	descAppLocks  = prometheus.NewDesc("nodeboot_app_locks", "lock()s the app holds now, overridden ones included.", []string{"app"}, nil)
	descOverride  = prometheus.NewDesc("nodeboot_app_locks_overridden", "lock()s the app holds now that outlived its maxLockSeconds and were overridden.", []string{"app"}, nil)
	descDegraded  = prometheus.NewDesc("nodeboot_degraded", "1 while the node runs degraded (status says why), else 0.", nil, nil)
	descDropped   = prometheus.NewDesc("nodeboot_console_dropped_lines_total", "Lines the console dropped since boot because output came faster than it could write.", nil, nil)
)

// statusCollector turns Node.Status into metrics at each scrape, so the
// numbers are as fresh as the status route's.
type statusCollector struct{ s *Server }

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBoot, descUptime, descMemTotal, descMemAvail, descDataTotal, descDataFree, descCPU, descAppUp, descRestarts, descAppReady, descWatchdog, descAppLocks, descOverride, descDegraded, descDropped, descSlot, descUpdateOK, descFollow, descFollowCheck, descFollowBehind, descFollowFailures, descClockSynced, descClockOffset, descClockLastSync, descClockSaved} {
		ch <- d
	}
	for _, d := range logsDescs {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := statusContext(context.Background())
	defer cancel()
	st, err := c.s.node.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descUptime, fmt.Errorf("reading the node's status: %w", err))
		return
	}
	n := st.Node
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descBoot, n.BootSeconds)
	gauge(descUptime, n.UptimeSeconds)
	gauge(descMemTotal, float64(n.Memory.TotalBytes))
	gauge(descMemAvail, float64(n.Memory.AvailableBytes))
	gauge(descDataTotal, float64(n.Data.TotalBytes))
	gauge(descDataFree, float64(n.Data.FreeBytes))
	ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, n.CPUSecondsTotal)
	degraded := 0.0
	if n.Degraded != "" {
		degraded = 1
	}
	gauge(descDegraded, degraded)
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n.ConsoleDroppedLines))
	for _, a := range st.Apps {
		up := 0.0
		if a.State == "running" {
			up = 1
		}
		gauge(descAppUp, up, a.Name)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(a.Restarts), a.Name)
		ready, overridden := 0.0, 0.0
		if a.Ready {
			ready = 1
		}
		for _, l := range a.Locks {
			if l.Overridden {
				overridden++
			}
		}
		gauge(descAppReady, ready, a.Name)
		ch <- prometheus.MustNewConstMetric(descWatchdog, prometheus.CounterValue, float64(a.WatchdogRestarts), a.Name)
		gauge(descAppLocks, float64(len(a.Locks)), a.Name)
		gauge(descOverride, overridden, a.Name)
	}
	collectOS(ch, st.OS)
	collectFollow(ch, st.Follow)
	if c := st.Clock; c != nil {
		synced := 0.0
		if c.Synced {
			synced = 1
		}
		gauge(descClockSynced, synced)
		gauge(descClockOffset, c.OffsetSeconds)
		if !c.LastSync.IsZero() {
			gauge(descClockLastSync, float64(c.LastSync.Unix()))
		}
		if !c.Saved.IsZero() {
			gauge(descClockSaved, float64(c.Saved.Unix()))
		}
	}
	collectLogs(ch, st.Logs) // logs.go
}

var (
	descClockSynced   = prometheus.NewDesc("nodeboot_clock_synced", "1 once an NTP server answered this boot, else 0 (the clock then comes from the time saved on /data or the image's build time).", nil, nil)
	descClockOffset   = prometheus.NewDesc("nodeboot_clock_offset_seconds", "The last NTP correction applied (server time minus node time).", nil, nil)
	descClockLastSync = prometheus.NewDesc("nodeboot_clock_last_sync_timestamp_seconds", "Unix time of the last NTP answer applied.", nil, nil)
	descClockSaved    = prometheus.NewDesc("nodeboot_clock_saved_timestamp_seconds", "Unix time last saved to /data, restored at the next boot when the clock is earlier.", nil, nil)
)
