// Package bootwatch reads a guest's serial console across its boots, for
// `nodeboot run`: QEMU restarts a guest that reboots, as a real machine
// would, so run follows a reboot the node asked for (nodeboot reboot, an
// OS update's trial), but a guest that fails boot after boot (PID 1's
// fatal error, a kernel panic, a watchdog reset, or a reboot before the
// apps ever came up) would loop for ever with nobody told. Split finds the
// boots in the console and how each ended; Loop says when to stop.
package bootwatch

import (
	"fmt"
	"strings"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// The console lines this package reads. The kernel prints its banner at
// the start of every boot; the others are PID 1's (internal/crash,
// internal/boot, internal/pid1).
const (
	banner    = "Linux version "
	panicked  = "Kernel panic - not syncing"
	fatal     = contract.ConsolePrefix + "FATAL: "
	halted    = contract.ConsolePrefix + "system halted: "
	apiOn     = contract.ConsolePrefix + "management API on "
	apiOff    = contract.ConsolePrefix + "management API off"
	appPrefix = contract.ConsolePrefix + "app "
	listening = " listening on port "
)

// End is how a boot ended.
type End int

const (
	// Running: the boot has not ended (the last one in the console).
	Running End = iota
	// Requested: PID 1 halted cleanly for a reboot asked of it.
	Requested
	// Failed: PID 1's fatal error, a kernel panic, or a reset without a
	// clean shutdown (the hardware watchdog, a hang, a triple fault).
	Failed
)

// Boot is one boot of the guest in its console.
type Boot struct {
	// Start is the console offset of its kernel banner's line.
	Start int
	// Up: PID 1 got as far as starting the management API (or saying
	// it has none), or an app listened.
	Up  bool
	End End
	// Reason says why a Failed boot failed.
	Reason string
}

// Split finds the boots in console, each from its kernel banner. Text
// before the first banner (the firmware's) belongs to the first boot.
func Split(console string) []Boot {
	var starts []int
	for off := 0; ; {
		i := strings.Index(console[off:], banner)
		if i < 0 {
			break
		}
		at := off + i
		// The line's start: the banner follows a time stamp.
		ls := strings.LastIndexByte(console[:at], '\n') + 1
		starts = append(starts, ls)
		off = at + len(banner)
	}
	if len(starts) == 0 {
		starts = []int{0}
	}
	starts[0] = 0
	boots := make([]Boot, len(starts))
	for i, s := range starts {
		end := len(console)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		boots[i] = classify(console[s:end], i+1 == len(starts))
		boots[i].Start = s
	}
	return boots
}

// classify reads one boot's text; last: no boot came after it.
func classify(text string, last bool) Boot {
	var b Boot
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.Contains(l, apiOn), strings.Contains(l, apiOff):
			b.Up = true
		case strings.Contains(l, appPrefix) && strings.Contains(l, listening):
			b.Up = true
		}
		if b.Reason != "" {
			continue
		}
		if i := strings.Index(l, fatal); i >= 0 {
			b.Reason = "PID 1's fatal error: " + strings.TrimSpace(l[i+len(fatal):])
		} else if i := strings.Index(l, panicked); i >= 0 {
			b.Reason = "kernel panic: " + strings.TrimSpace(strings.TrimPrefix(l[i+len(panicked):], ":"))
		}
	}
	switch {
	case last:
		b.End, b.Reason = Running, ""
	case b.Reason != "":
		b.End = Failed
	case strings.Contains(text, halted):
		b.End = Requested
	default:
		b.End = Failed
		b.Reason = "it was reset without a clean shutdown (the hardware watchdog after a hang, or a crash before the kernel could say why)"
	}
	return b
}

// Loop says why to stop following the guest, "" to go on: its last n
// ended boots each failed or ended before PID 1 came up. A reboot the node
// asked for after it came up breaks the series: that is a machine being
// rebooted, not a loop.
func Loop(boots []Boot, n int) string {
	var ended []Boot
	for _, b := range boots {
		if b.End != Running {
			ended = append(ended, b)
		}
	}
	if len(ended) < n {
		return ""
	}
	last := ended[len(ended)-n:]
	var why []string
	for i, b := range last {
		switch {
		case b.End == Failed:
			why = append(why, fmt.Sprintf("boot %d: %s", len(ended)-n+i+1, b.Reason))
		case !b.Up:
			why = append(why, fmt.Sprintf("boot %d: rebooted before the apps came up", len(ended)-n+i+1))
		default:
			return ""
		}
	}
	return fmt.Sprintf("the guest failed %d boots in a row (%s)", n, strings.Join(why, "; "))
}
