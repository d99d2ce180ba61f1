package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
)

// `nodeboot status` says whether the node's clock can be trusted.
func TestPrintStatusClock(t *testing.T) {
	now := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		clock *contract.ClockStatus
		want  []string
	}{
		{"synced", &contract.ClockStatus{Now: now, Synced: true, Source: "10.0.2.2:123", OffsetSeconds: 3600.25, LastSync: now, Saved: now},
			[]string{"clock 2026-12-03T16:00:00Z: synced with 10.0.2.2:123 (last 2026-12-03T16:00:00Z, offset 1h0m0.25s)", "saved to /data at 2026-12-03T16:00:00Z"}},
		{"restored, waiting", &contract.ClockStatus{Now: now, Source: "saved time", NTP: []string{"10.0.2.2", "0.pool.ntp.org"}},
			[]string{"not synced, set from the saved time", "asking 10.0.2.2, 0.pool.ntp.org"}},
		{"off", &contract.ClockStatus{Now: now, NTPOff: true}, []string{"clock 2026-12-03T16:00:00Z: NTP off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := client.Status{Clock: tc.clock}
			var out bytes.Buffer
			if err := printStatus(&out, &s); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("status lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
	var out bytes.Buffer
	printStatus(&out, &client.Status{})
	if strings.Contains(out.String(), "clock") {
		t.Errorf("a node without clock status prints one:\n%s", out.String())
	}
}
