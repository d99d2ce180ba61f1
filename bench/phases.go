package main

import (
	"fmt"
	"strings"
	"time"
)

// Marks are the console timestamps of one boot's markers: time since the
// kernel started, read from the "[    5.861258] " prefix that the kernel's
// printk and the init's logger (same clock, CLOCK_BOOTTIME) both write.
type Marks struct {
	// UnpackStart and UnpackEnd bracket the kernel unpacking the initramfs
	// ("Unpacking initramfs..." to "Freeing initrd memory"). The kernel's
	// wording is not a stable interface, so they are optional: HasUnpack
	// says whether both were found.
	UnpackStart, UnpackEnd time.Duration
	HasUnpack              bool

	Init       time.Duration // "nodeboot: init started"
	Network    time.Duration // "nodeboot: network configured"
	AppStarted time.Duration // "nodeboot: <app>: started (pid N)"
	Listening  time.Duration // "nodeboot: app <app> listening on port N"
}

// Phases are the durations between the marks.
type Phases struct {
	Marks
	KernelToInit      time.Duration // kernel start → init started (= Init)
	Unpack            time.Duration // initramfs unpack; valid when HasUnpack
	InitToNetwork     time.Duration // init started → network configured
	InitToApp         time.Duration // init started → <app>: started: what PID 1 adds before node runs
	NetworkToApp      time.Duration // network configured → <app>: started
	AppToListening    time.Duration // <app>: started → app <app> listening: node's own start-up
	KernelToListening time.Duration // kernel start → app <app> listening (= Listening)
}

// maxStampSeconds bounds the seconds of a timestamp, so that converting it to
// a time.Duration cannot overflow (the console is untrusted bytes).
const maxStampSeconds = 999_999_999

// parseStamp reads a console line that starts with a printk timestamp,
// "[%5d.%06d] ", and returns the time and the rest of the line. Only a stamp
// at the very start of the line counts: an app's output is prefixed with the
// app's name, so an app printing a fake stamp cannot forge a marker.
func parseStamp(line string) (time.Duration, string, bool) {
	if !strings.HasPrefix(line, "[") {
		return 0, "", false
	}
	i := 1
	for i < len(line) && line[i] == ' ' {
		i++
	}
	var sec int64
	digits := 0
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		sec = sec*10 + int64(line[i]-'0')
		digits++
		i++
		if sec > maxStampSeconds {
			return 0, "", false
		}
	}
	if digits == 0 || i >= len(line) || line[i] != '.' {
		return 0, "", false
	}
	i++
	// The fraction is read as a decimal fraction of a second (the kernel
	// writes microseconds); digits past nanoseconds are ignored.
	var ns int64
	scale := int64(100_000_000)
	digits = 0
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		ns += int64(line[i]-'0') * scale
		scale /= 10
		digits++
		i++
	}
	if digits == 0 || i >= len(line) || line[i] != ']' {
		return 0, "", false
	}
	i++
	rest := strings.TrimPrefix(line[i:], " ")
	return time.Duration(sec)*time.Second + time.Duration(ns), rest, true
}

// ParsePhases reads the boot phases of app off a guest console. The first
// occurrence of each marker counts (a restarted app prints "started" again).
// The init markers are required; the initramfs unpack markers are optional.
// Markers out of order are an error rather than negative durations.
func ParsePhases(console, app string) (Phases, error) {
	var (
		m                                      Marks
		unpackStart, unpackEnd                 bool
		seenInit, seenNet, seenApp, seenListen bool
	)
	started := "nodeboot: " + app + ": started (pid "
	listening := "nodeboot: app " + app + " listening on port "
	for _, line := range strings.Split(console, "\n") {
		ts, msg, ok := parseStamp(strings.TrimSuffix(line, "\r"))
		if !ok {
			continue
		}
		switch {
		case !unpackStart && (strings.HasPrefix(msg, "Unpacking initramfs") || strings.HasPrefix(msg, "Trying to unpack rootfs image as initramfs")):
			m.UnpackStart, unpackStart = ts, true
		case !unpackEnd && strings.HasPrefix(msg, "Freeing initrd memory"):
			m.UnpackEnd, unpackEnd = ts, true
		case !seenInit && strings.HasPrefix(msg, "nodeboot: init started"):
			m.Init, seenInit = ts, true
		case !seenNet && strings.HasPrefix(msg, "nodeboot: network configured"):
			m.Network, seenNet = ts, true
		case !seenApp && strings.HasPrefix(msg, started):
			m.AppStarted, seenApp = ts, true
		case !seenListen && strings.HasPrefix(msg, listening):
			m.Listening, seenListen = ts, true
		}
	}
	var missing []string
	for _, c := range []struct {
		seen bool
		name string
	}{
		{seenInit, `"init started"`},
		{seenNet, `"network configured"`},
		{seenApp, fmt.Sprintf("%q", app+": started")},
		{seenListen, fmt.Sprintf("%q", "app "+app+" listening")},
	} {
		if !c.seen {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return Phases{}, fmt.Errorf("console has no %s marker", strings.Join(missing, ", "))
	}
	m.HasUnpack = unpackStart && unpackEnd
	for _, o := range []struct {
		a, b       time.Duration
		check      bool
		what, then string
	}{
		{m.UnpackStart, m.UnpackEnd, m.HasUnpack, "initramfs unpack start", "its end"},
		{m.UnpackEnd, m.Init, m.HasUnpack, "initramfs unpack end", "init started"},
		{m.Init, m.Network, true, "init started", "network configured"},
		{m.Init, m.AppStarted, true, "init started", app + ": started"},
		{m.AppStarted, m.Listening, true, app + ": started", "app " + app + " listening"},
	} {
		if o.check && o.b < o.a {
			return Phases{}, fmt.Errorf("console markers out of order: %s at %v comes after %s at %v", o.what, o.a, o.then, o.b)
		}
	}
	p := Phases{
		Marks:             m,
		KernelToInit:      m.Init,
		InitToNetwork:     m.Network - m.Init,
		InitToApp:         m.AppStarted - m.Init,
		NetworkToApp:      m.AppStarted - m.Network,
		AppToListening:    m.Listening - m.AppStarted,
		KernelToListening: m.Listening,
	}
	if m.HasUnpack {
		p.Unpack = m.UnpackEnd - m.UnpackStart
	}
	return p, nil
}
