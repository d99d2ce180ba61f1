package api

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/api/apitest"
)

// following reports whether someone follows app's log now.
func (f *fakeNode) following(app string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.subs {
		if a == app {
			return true
		}
	}
	return false
}

// TestStatusPageInChromium logs in through the form in a real browser and
// waits for the app's state and a line the app printed only after the page
// began to follow its log, so the line can only have come by streaming.
func TestStatusPageInChromium(t *testing.T) {
	if _, err := apitest.FindChromium(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	h := start(t, Options{})
	// The page follows the first app by itself; the check must pick hello.
	h.fake.mu.Lock()
	apps := h.fake.status.Apps
	h.fake.status.Apps = []AppStatus{apps[1], apps[0]}
	h.fake.mu.Unlock()

	const live = "printed while the page watches"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.fake.followed:
				if h.fake.following("hello") {
					h.fake.print("hello", live)
				}
			}
		}
	}()
	st, err := apitest.CheckPageState(ctx, h.base+"/", h.owner.Token, "hello", live,
		"remote logssyslog+tls://logs.example.com:6514: not connected",
		"log buffer40 lines (4.0 KiB of 16.0 MiB) waiting, 1200 delivered, 5 dropped",
		"log errorconnecting to syslog+tls://logs.example.com:6514: connection refused (2026-12-01T10:06:00Z)")
	if err != nil {
		t.Fatal(err)
	}
	// What hello told its node through require('nodeboot') (fakeNode).
	for _, want := range []string{"ready", "watchdog every 5 s", "2 watchdog restart(s)", "lock: migrating (since 2026-12-01T10:01:00Z)", "lock OVERRIDDEN: stuck"} {
		if !strings.Contains(st.AppAPI, want) {
			t.Errorf("the page's readiness, watchdog and locks of hello: %q, want %q in it", st.AppAPI, want)
		}
	}
}
