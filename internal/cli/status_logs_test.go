package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
)

func TestPrintLogs(t *testing.T) {
	var b strings.Builder
	printLogs(&b, nil)
	if b.Len() != 0 {
		t.Errorf("no shipper, yet %q", b.String())
	}
	printLogs(&b, &contract.LogsStatus{
		Endpoint: "syslog+tls://logs.example.com:6514", BufferedBytes: 4096, BufferedLines: 40, CapBytes: 16 << 20,
		Delivered: 1200, Dropped: 5, LastError: "connecting: connection refused", LastErrorAt: time.Date(2026, 12, 1, 10, 6, 0, 0, time.UTC),
	})
	want := "\nremote logs to syslog+tls://logs.example.com:6514: not connected\n" +
		"  40 lines (4.0 KiB of 16.0 MiB) waiting, 1200 delivered, 5 dropped\n" +
		"  last error (2026-12-01T10:06:00Z): connecting: connection refused\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
