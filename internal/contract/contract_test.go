package contract

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAppPath(t *testing.T) {
	for app, want := range map[string]string{
		"hello": "/v1/apps/hello",
		"a/b":   "/v1/apps/a%2Fb",
		"..":    "/v1/apps/..",
	} {
		if got := AppPath(app); got != want {
			t.Errorf("AppPath(%q) = %q, want %q", app, got, want)
		}
	}
	if got := AppPath("hello") + SuffixLogs; got != "/v1/apps/hello/logs" {
		t.Errorf("logs path %q", got)
	}
}

func TestAppListening(t *testing.T) {
	if got := ConsolePrefix + AppListening("hello", 8080); got != "nodeboot: app hello listening on port 8080" {
		t.Errorf("marker %q", got)
	}
}

// TestAppStatusJSON: StartedAt is RFC 3339 in UTC, or "" while the app
// never started, both ways (docs/api.md).
func TestAppStatusJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 11, 0, 0, 0, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		a    AppStatus
		want string
	}{
		{AppStatus{Name: "a", StartedAt: at}, `"startedAt":"2026-12-01T10:00:00Z"`},
		{AppStatus{Name: "b"}, `"startedAt":""`},
	} {
		b, err := json.Marshal(tc.a)
		if err != nil || !strings.Contains(string(b), tc.want) {
			t.Errorf("%+v: %s, %v; want %s", tc.a, b, err, tc.want)
		}
		var back AppStatus
		if err := json.Unmarshal(b, &back); err != nil || back.Name != tc.a.Name || !back.StartedAt.Equal(tc.a.StartedAt) {
			t.Errorf("round trip of %s: %+v, %v", b, back, err)
		}
	}
	var a AppStatus
	if err := json.Unmarshal([]byte(`{"startedAt":"yesterday"}`), &a); err == nil || !strings.Contains(err.Error(), "startedAt") {
		t.Errorf("a bad startedAt: %v", err)
	}
}
