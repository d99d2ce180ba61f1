package cli

import (
	"strings"
	"testing"
)

// TestRunFollowsBoots feeds run's boot follower a console as it grows: a
// reboot the node asked for is followed and said; a guest that then fails
// three boots in a row is a loop to stop, with each failure named.
func TestRunFollowsBoots(t *testing.T) {
	const (
		kernel = "[    0.000000] Linux version 6.1.192-nodeboot-vm #1 SMP\n"
		up     = "[    2.0] nodeboot: init started (pid 1)\n[    9.2] nodeboot: app web listening on port 8080\n[    9.3] nodeboot: management API on https port 9443\n"
		asked  = "[   50.0] nodeboot: reboot requested: stopping 1 app(s)\n[   50.6] nodeboot: system halted: reboot\n"
		crash  = "[    2.0] nodeboot: init started (pid 1)\n[    3.0] nodeboot: FATAL: reading runtime.json: unexpected end of JSON input\n[    3.1] nodeboot: rebooting in 10s\n[   13.1] nodeboot: system halted: reboot\n"
	)
	var stderr strings.Builder
	f := &bootFollower{stderr: &stderr}
	con := ""
	feed := func(s string) string { con += s; return f.check(con) }
	for _, s := range []string{kernel, up[:40], up[40:], asked, kernel, up} {
		if why := feed(s); why != "" {
			t.Fatalf("stopped a guest that rebooted as asked: %s", why)
		}
	}
	if got := stderr.String(); got != "nodeboot run: the guest boots again (boot 2); it rebooted as asked\n" {
		t.Errorf("after the asked reboot: %q", got)
	}
	con += asked
	var why string
	for i := 0; i < 3 && why == ""; i++ {
		why = feed(kernel + crash)
	}
	if why != "" {
		t.Fatalf("stopped before the third failure ended: %s", why)
	}
	why = feed(kernel)
	for _, want := range []string{"the guest failed 3 boots in a row", "boot 3: PID 1's fatal error: reading runtime.json", "boot 5: PID 1's fatal error"} {
		if !strings.Contains(why, want) {
			t.Errorf("loop reason %q lacks %q", why, want)
		}
	}
	if !strings.Contains(stderr.String(), "(boot 4); it failed: PID 1's fatal error: reading runtime.json: unexpected end of JSON input\n") {
		t.Errorf("stderr: %s", stderr.String())
	}
}
