package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/image"
)

func TestSummarize(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, x := range n {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		want Summary
	}{
		{nil, Summary{}},
		{ms(7), Summary{N: 1, Median: 7 * time.Millisecond, Min: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{ms(9, 1, 5), Summary{N: 3, Median: 5 * time.Millisecond, Min: time.Millisecond, Max: 9 * time.Millisecond}},
		{ms(4, 1, 3, 2), Summary{N: 4, Median: 2500 * time.Microsecond, Min: time.Millisecond, Max: 4 * time.Millisecond}},
		{ms(10, 30, 20, 50, 40), Summary{N: 5, Median: 30 * time.Millisecond, Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}},
	}
	for _, tt := range tests {
		in := append([]time.Duration(nil), tt.in...)
		if got := Summarize(tt.in); got != tt.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", in, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Errorf("Summarize reordered its input")
			}
		}
	}
}

const procStat = `cpu  130745 0 41402 355269 2536 0 1302 195 0 0
cpu0 65000 0 20000 177000 1200 0 700 100 0 0
cpu1 65745 0 21402 178269 1336 0 602 95 0 0
intr 123 0 0
ctxt 456
`

func TestPearson(t *testing.T) {
	if r, ok := pearson([]float64{1, 2, 3, 4}, []float64{2, 4, 6, 8}); !ok || math.Abs(r-1) > 1e-9 {
		t.Errorf("pearson(perfect) = %v, %v", r, ok)
	}
	if r, ok := pearson([]float64{1, 2, 3, 4}, []float64{8, 6, 4, 2}); !ok || math.Abs(r+1) > 1e-9 {
		t.Errorf("pearson(inverse) = %v, %v", r, ok)
	}
	if _, ok := pearson([]float64{1, 1, 1}, []float64{1, 2, 3}); ok {
		t.Errorf("pearson without variance is defined")
	}
	if _, ok := pearson([]float64{1}, []float64{1}); ok {
		t.Errorf("pearson of one point is defined")
	}
}

func TestSignTest(t *testing.T) {
	for _, tt := range []struct {
		wins, n int
		want    float64
	}{
		{5, 5, 1.0 / 32},
		{4, 5, 6.0 / 32},
		{0, 5, 1},
		{11, 15, 1941.0 / 32768},
		{15, 15, 1.0 / 32768},
		{0, 0, 1},
	} {
		if got := signTest(tt.wins, tt.n); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("signTest(%d, %d) = %v, want %v", tt.wins, tt.n, got, tt.want)
		}
	}
	if got := twoSided(0, 5); math.Abs(got-2.0/32) > 1e-12 {
		t.Errorf("twoSided(0, 5) = %v", got)
	}
	if got := twoSided(3, 6); got != 1 {
		t.Errorf("twoSided(3, 6) = %v, want 1", got)
	}
}

func TestParseCPUStat(t *testing.T) {
	c, n, err := parseCPUStat(procStat)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("ncpu = %d, want 2", n)
	}
	if want := uint64(130745 + 41402 + 1302 + 195); c.busy != want {
		t.Errorf("busy = %d, want %d", c.busy, want)
	}
	if want := uint64(130745 + 41402 + 355269 + 2536 + 1302 + 195); c.total != want {
		t.Errorf("total = %d, want %d", c.total, want)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu a 0 0 0 0 0 0 0 0 0\n"} {
		if _, _, err := parseCPUStat(bad); err == nil {
			t.Errorf("parseCPUStat(%q) accepted", bad)
		}
	}
	// One core busy out of two for the whole interval, half of it ours.
	a := cpuSample{busy: 100, total: 1000}
	b := cpuSample{busy: 300, total: 1400}
	if got := busyCores(a, b, 2, 0); got != 1 {
		t.Errorf("busyCores = %v, want 1", got)
	}
	if got := busyCores(a, b, 2, 100); got != 0.5 {
		t.Errorf("busyCores excluding ours = %v, want 0.5", got)
	}
	if got := busyCores(a, b, 2, 500); got != 0 {
		t.Errorf("busyCores excluding more than busy = %v, want 0", got)
	}
	if got := busyCores(b, a, 2, 0); got != 0 {
		t.Errorf("busyCores backwards = %v, want 0", got)
	}
}

func TestParseProcCPU(t *testing.T) {
	line := "23560 (qemu-system-x86) S 1 23560 16565 0 -1 4194560 5102 0 0 0 912 37 0 0 20 0 4 0 267752 2447700 103368 18446744073709551615"
	if got, err := parseProcCPU(line); err != nil || got != 949 {
		t.Errorf("parseProcCPU = %d, %v; want 949", got, err)
	}
	// A command name with spaces and parentheses.
	line = "42 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1 1"
	if got, err := parseProcCPU(line); err != nil || got != 10 {
		t.Errorf("parseProcCPU with spaces = %d, %v; want 10", got, err)
	}
	for _, bad := range []string{"", "42 (x) R 1 2", "42 (x) R 1 1 1 0 -1 0 0 0 0 0 x 3"} {
		if _, err := parseProcCPU(bad); err == nil {
			t.Errorf("parseProcCPU(%q) accepted", bad)
		}
	}
}

func TestParseHostInfo(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n"
	if model, n := parseCPUInfo(cpuinfo, 9); model != "Intel(R) Xeon(R) Processor" || n != 2 {
		t.Errorf("parseCPUInfo = %q, %d", model, n)
	}
	if model, n := parseCPUInfo("", 3); model != "unknown" || n != 3 {
		t.Errorf("parseCPUInfo(empty) = %q, %d", model, n)
	}
	if got := parseMemTotal("MemTotal:       24683520 kB\nMemFree:        23834112 kB\n"); got != 24683520*1024 {
		t.Errorf("parseMemTotal = %d", got)
	}
	if got := parseMemTotal("MemFree: 1 kB\n"); got != 0 {
		t.Errorf("parseMemTotal without MemTotal = %d", got)
	}
}

// TestRender checks that a report with a failed boot renders it as a
// failure, and that the findings follow from the numbers.
func TestRender(t *testing.T) {
	man := &build.Manifest{
		Kernel:    build.Component{Version: "7.1.2", Source: "module", Size: 16 << 20},
		Node:      build.Component{Version: "20.20.2", Source: "host", Size: 94 << 20},
		Initramfs: build.Component{Size: 35 << 20, Uncompressed: 104 << 20},
	}
	boot := func(seq int, c image.Compression, wall, unpack time.Duration) Boot {
		m := Marks{UnpackStart: time.Second, UnpackEnd: time.Second + unpack, HasUnpack: true}
		m.Init = m.UnpackEnd + time.Second
		m.Network = m.Init + 200*time.Millisecond
		m.AppStarted = m.Init + 300*time.Millisecond
		m.Listening = m.AppStarted + 1500*time.Millisecond
		return Boot{Seq: seq, Compression: c, Accel: "tcg", Wall: wall, PreKernel: time.Second, SeenToHTTP: 50 * time.Millisecond,
			Phases: Phases{Marks: m, KernelToInit: m.Init, Unpack: unpack, InitToNetwork: 200 * time.Millisecond, InitToApp: 300 * time.Millisecond,
				NetworkToApp: 100 * time.Millisecond, AppToListening: 1500 * time.Millisecond, KernelToListening: m.Listening},
			HasLoad: true, Calibration: 100 * time.Millisecond}
	}
	r := &Report{
		Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Host: HostInfo{CPU: "Test CPU", Cores: 2, RAM: 1 << 30, Kernel: "6.1"},
		QEMU: "QEMU emulator version 7.2", AccelFlag: "auto", KVMOpens: true, Memory: "512M", N: 2,
		Variants: []*Variant{
			{Compression: image.Zstd, Result: &build.Result{Manifest: man}},
			{Compression: image.Gzip, Result: &build.Result{Manifest: man}},
		},
		Boots: []Boot{
			boot(1, image.Zstd, 7000*time.Millisecond, 2000*time.Millisecond),
			boot(2, image.Gzip, 8000*time.Millisecond, 3000*time.Millisecond),
			boot(3, image.Zstd, 7200*time.Millisecond, 2100*time.Millisecond),
			{Seq: 4, Compression: image.Gzip, Accel: "tcg", Err: `guest died: kernel panic while waiting for "x"`},
		},
	}
	var b strings.Builder
	r.Render(&b)
	out := b.String()
	for _, want := range []string{
		"<!-- Generated by `make bench`",
		"| 4 | gzip | tcg | - |",
		"**failed**: guest died: kernel panic while waiting for \"x\"",
		"| ok | 2 of 2 | | | 1 of 2 | | |",
		"| **QEMU start → first HTTP 200** (host clock) | 7100 ms | 7000 ms | 7200 ms | 8000 ms | 8000 ms | 8000 ms |",
		"**zstd boots faster than gzip**: 7100 ms against 8000 ms",
		"900 ms or 11.2% less",
		"every zstd boot was faster than every gzip boot",
		"1 of 2 gzip boots failed",
		"KVM fails at run time",
		"300 ms (zstd) and 300 ms (gzip)",
		"**over the 100 ms target**",
		"200 ms of it (zstd) is spent until the network is configured, DHCP lease included.",
		"and the DHCP lease: in these boots node\nstarted after `network configured`",
		"All of this ran under TCG",
		"For scale, phases that do not depend on the compression differ between the two sets of boots too: node's start-up took 1500 ms with zstd and 1500 ms with gzip (0% apart); the init's overhead took 300 ms with zstd and 300 ms with gzip (0% apart).",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}

	// Node started before the network was configured.
	saved := r.Boots
	r.Boots = nil
	for _, b := range saved {
		if b.OK() {
			b.Phases.Network = b.Phases.AppStarted + 150*time.Millisecond
			b.Phases.NetworkToApp = -150 * time.Millisecond
		}
		r.Boots = append(r.Boots, b)
	}
	b.Reset()
	r.Render(&b)
	for _, want := range []string{
		"so the DHCP lease is not part of it",
		"The DHCP lease is not part of it: node starts first, and `network configured` follows 150 ms later (zstd, median), still before hello listens",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}

	// Overlapping ranges, pairs split: no winner is declared.
	r.Boots = []Boot{
		boot(1, image.Zstd, 7000*time.Millisecond, 2000*time.Millisecond),
		boot(2, image.Gzip, 7500*time.Millisecond, 2500*time.Millisecond),
		boot(3, image.Zstd, 9000*time.Millisecond, 2000*time.Millisecond),
		boot(4, image.Gzip, 8000*time.Millisecond, 2500*time.Millisecond),
		boot(5, image.Zstd, 7100*time.Millisecond, 2000*time.Millisecond),
		boot(6, image.Gzip, 7000*time.Millisecond, 2500*time.Millisecond),
	}
	f := strings.Join(r.Findings(), "\n")
	for _, want := range []string{
		"**This run does not separate zstd and gzip.** zstd's median is lower, 7100 ms against 7500 ms",
		"zstd was faster in 1 of the 3 pairs of boots that ran back to back (sign test p = 0.875; median difference within a pair: 100 ms in gzip's favour): too few",
		"took 2000 ms with zstd and 2500 ms with gzip (medians; zstd faster in 3 of 3 pairs, sign test p = 0.250)",
		"Kernel start → `init started`, which contains the unpack, took 4000 ms with zstd and 4500 ms with gzip (medians; zstd faster in 3 of 3 pairs, sign test p = 0.250).",
	} {
		if !strings.Contains(f, want) {
			t.Errorf("findings lack %q:\n%s", want, f)
		}
	}
	// Overlapping ranges, every pair of five won by gzip: gzip is declared
	// faster (sign test p = 1/32).
	r.Boots = []Boot{
		boot(1, image.Zstd, 7000*time.Millisecond, 2000*time.Millisecond),
		boot(2, image.Gzip, 6900*time.Millisecond, 2500*time.Millisecond),
		boot(3, image.Zstd, 9000*time.Millisecond, 2000*time.Millisecond),
		boot(4, image.Gzip, 8000*time.Millisecond, 2500*time.Millisecond),
		boot(5, image.Zstd, 7500*time.Millisecond, 2000*time.Millisecond),
		boot(6, image.Gzip, 7000*time.Millisecond, 2500*time.Millisecond),
		boot(7, image.Zstd, 7600*time.Millisecond, 2000*time.Millisecond),
		boot(8, image.Gzip, 7100*time.Millisecond, 2500*time.Millisecond),
		boot(9, image.Zstd, 7700*time.Millisecond, 2000*time.Millisecond),
		boot(10, image.Gzip, 7200*time.Millisecond, 2500*time.Millisecond),
	}
	f = strings.Join(r.Findings(), "\n")
	if want := "**gzip boots faster than zstd**: 7100 ms against 7600 ms"; !strings.Contains(f, want) {
		t.Errorf("findings lack %q:\n%s", want, f)
	}
	if want := "gzip won 5 of the 5 pairs of boots that ran back to back (sign test p = 0.031; median difference within a pair: 500 ms in gzip's favour)"; !strings.Contains(f, want) {
		t.Errorf("findings lack %q:\n%s", want, f)
	}
}
