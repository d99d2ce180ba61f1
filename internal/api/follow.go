package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodeboot/nodeboot/internal/contract"
)

var (
	descFollow = prometheus.NewDesc("nodeboot_follow_info",
		"1 on a node that follows a tag: the ref, the follower's state, the digest the tag names, the one applied, and the last error (empty when none).",
		[]string{"ref", "state", "target", "applied", "error"}, nil)
	descFollowCheck = prometheus.NewDesc("nodeboot_follow_last_check_timestamp_seconds",
		"When the followed tag was last resolved (Unix time); 0 before the first success.", nil, nil)
	descFollowBehind = prometheus.NewDesc("nodeboot_follow_behind",
		"1 while the node does not run what its tag names (waiting for its wave, paused, refused, or not yet applied), else 0.", nil, nil)
	descFollowFailures = prometheus.NewDesc("nodeboot_follow_registry_failures",
		"Registry errors in a row (0 once the registry answers again).", nil, nil)
)

// maxLabel bounds the error label: a metric label is no place for a
// whole story, status has it.
const maxLabel = 200

// collectFollow adds the followed tag's metrics.
func collectFollow(ch chan<- prometheus.Metric, f *contract.FollowStatus) {
	if f == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	e := f.LastError
	if len(e) > maxLabel {
		e = e[:maxLabel] + "..."
	}
	gauge(descFollow, 1, f.Ref, f.State, f.Target, f.Applied, e)
	check := 0.0
	if !f.LastCheck.IsZero() {
		check = float64(f.LastCheck.UnixMilli()) / 1000
	}
	gauge(descFollowCheck, check)
	behind := 0.0
	if f.Behind() {
		behind = 1
	}
	gauge(descFollowBehind, behind)
	gauge(descFollowFailures, float64(f.Failures))
}
