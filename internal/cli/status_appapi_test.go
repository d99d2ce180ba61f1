package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
)

// Readiness, watchdogs and locks show in `nodeboot status`.
func TestPrintStatusAppAPI(t *testing.T) {
	var s client.Status
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	s.Apps = []contract.AppStatus{
		{Name: "worker", State: "running", Health: "ready", Ready: true, WatchdogMs: 1000, WatchdogRestarts: 2,
			Locks: []contract.AppLock{{Reason: "migrating", Since: since}}},
		{Name: "db", State: "running", Health: "ready",
			Locks: []contract.AppLock{{Reason: "backup", Since: since, Overridden: true}}, LastLockOverride: "lock \"backup\" overridden after 5s by deploy of db"},
		{Name: "web", State: "running"},
	}
	var out bytes.Buffer
	if err := printStatus(&out, &s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"worker: ready, watchdog every 1s, 2 watchdog restart(s)",
		`worker: lock "migrating" held since 2026-12-03T10:00:00Z`,
		"db: not ready (deploys wait for ready())",
		`db: lock "backup" OVERRIDDEN (held past maxLockSeconds)`,
		"db: last lock override: lock \"backup\" overridden",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "web:") {
		t.Errorf("an app that uses none of it has a line:\n%s", out.String())
	}
}
