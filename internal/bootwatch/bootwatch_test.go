package bootwatch

import (
	"strings"
	"testing"
)

// Console fragments as a guest prints them (time stamps and all).
const (
	kernel   = "[    0.000000] Linux version 6.1.192-nodeboot-vm (nodeboot@nodeboot) #1 SMP\n[    0.000000] Command line: console=ttyS0,115200 panic=10\n"
	initUp   = "[    2.100000] nodeboot: init started (pid 1)\n"
	appUp    = "[    9.200000] nodeboot: app web listening on port 8080 (init CPU since it started: 800 ms)\n[    9.300000] nodeboot: management API on https port 9443\n"
	reboot   = "[   50.000000] nodeboot: reboot requested: stopping 1 app(s)\n[   50.500000] nodeboot: unmounted /data\n[   50.600000] nodeboot: system halted: reboot\n"
	fatalRun = "[    3.000000] nodeboot: FATAL: mounting proc on /proc: no such device\n[    3.000100] nodeboot: system halted: reboot\n"
	kpanic   = "[    1.500000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n[    1.500100] ---[ end Kernel panic - not syncing: VFS ]---\n"
	firmware = "BdsDxe: loading Boot0001 \"UEFI Misc Device\"\n"
)

func TestSplit(t *testing.T) {
	con := firmware + kernel + initUp + appUp + reboot +
		firmware + kernel + initUp + fatalRun +
		kernel + kpanic +
		kernel + initUp + // a watchdog reset: no halt, no reason
		kernel + initUp + appUp
	boots := Split(con)
	if len(boots) != 5 {
		t.Fatalf("%d boots, want 5: %+v", len(boots), boots)
	}
	want := []struct {
		up     bool
		end    End
		reason string
	}{
		{true, Requested, ""},
		{false, Failed, "PID 1's fatal error: mounting proc on /proc: no such device"},
		{false, Failed, "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{false, Failed, "it was reset without a clean shutdown"},
		{true, Running, ""},
	}
	for i, w := range want {
		b := boots[i]
		if b.Up != w.up || b.End != w.end || !strings.HasPrefix(b.Reason, w.reason) || (w.reason == "") != (b.Reason == "") {
			t.Errorf("boot %d: %+v, want up %v, end %v, reason %q", i+1, b, w.up, w.end, w.reason)
		}
	}
	if boots[0].Start != 0 || !strings.HasPrefix(con[boots[1].Start:], "[    0.000000] Linux version") {
		t.Errorf("boot starts %d, %d", boots[0].Start, boots[1].Start)
	}
	if b := Split(""); len(b) != 1 || b[0].End != Running {
		t.Errorf("an empty console: %+v", b)
	}
}

// TestLoop: a guest that reboots when asked, after it came up, is followed
// for ever; three failed boots in a row (or boots that never came up) stop
// it, naming each failure; one good boot between failures starts the count
// again.
func TestLoop(t *testing.T) {
	good := kernel + initUp + appUp + reboot
	crash := kernel + initUp + fatalRun
	early := kernel + initUp + reboot // asked to reboot before it came up
	for _, c := range []struct {
		name, console string
		stop          bool
	}{
		{"first boot", kernel + initUp, false},
		{"asked reboots", good + good + good + good + kernel, false},
		{"two crashes", good + crash + crash + kernel, false},
		{"three crashes", good + crash + crash + crash + kernel, true},
		{"three crashes, the last running", crash + crash + crash, false},
		{"kernel panics", kernel + kpanic + kernel + kpanic + kernel + kpanic + kernel, true},
		{"a good boot between", crash + crash + good + crash + crash + kernel, false},
		{"reboots before coming up", early + early + crash + kernel, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			why := Loop(Split(c.console), 3)
			if (why != "") != c.stop {
				t.Fatalf("Loop = %q, want a stop: %v", why, c.stop)
			}
		})
	}
	why := Loop(Split(good+crash+kernel+kpanic+early+kernel), 3)
	for _, want := range []string{
		"the guest failed 3 boots in a row",
		"boot 2: PID 1's fatal error: mounting proc on /proc: no such device",
		"boot 3: kernel panic: VFS: Unable to mount root fs",
		"boot 4: rebooted before the apps came up",
	} {
		if !strings.Contains(why, want) {
			t.Errorf("Loop = %q, lacks %q", why, want)
		}
	}
}
