package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
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

// TestRender checks that a report renders failures as failures, computes
// the ratios against the floor and the peer, and names the phase that misses
// a target.
func TestRender(t *testing.T) {
	boot := func(seq int, sys string, wall, pre, kern time.Duration, used int64, rps float64) Boot {
		return Boot{Seq: seq, System: sys, Accel: "tcg", Memory: "512M", Wall: wall, PreKernel: pre, KernelToInit: kern,
			InitToHTTP: wall - pre - kern, HasInit: true, Used: used, RPS: rps, HasLoad: true, Calibration: 100 * time.Millisecond}
	}
	sys := func(name, kind string, alloc, zst int64) *System {
		return &System{Name: name, Kind: kind, Label: name + " label", Cmdline: "console=ttyS0", Size: ImageSize{Apparent: alloc, Allocated: alloc, Zstd: zst}}
	}
	r := &Report{
		Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Host: HostInfo{CPU: "Test CPU", Cores: 2, RAM: 1 << 30, Kernel: "6.1"},
		QEMU: "QEMU emulator version 7.2", AccelFlag: "auto", KVMOpens: true, Memory: "512M", N: 2,
		Systems: []*System{sys("initramfs", kindNodeboot, 50<<20, 50<<20), sys("floor", kindFloor, 48<<20, 48<<20), sys("debian", kindPeer, 400<<20, 120<<20),
			sys("initramfs-quiet", kindNodeboot, 50<<20, 50<<20)},
		Boots: []Boot{
			boot(1, "initramfs", 9000*time.Millisecond, 1500*time.Millisecond, 5000*time.Millisecond, 150<<20, 900),
			boot(2, "floor", 7000*time.Millisecond, 1500*time.Millisecond, 4800*time.Millisecond, 140<<20, 1000),
			boot(3, "debian", 20000*time.Millisecond, 1500*time.Millisecond, 2000*time.Millisecond, 100<<20, 950),
			boot(4, "initramfs-quiet", 8000*time.Millisecond, 1500*time.Millisecond, 4500*time.Millisecond, 150<<20, 900),
			boot(5, "initramfs", 9200*time.Millisecond, 1500*time.Millisecond, 5000*time.Millisecond, 150<<20, 900),
			boot(6, "floor", 7200*time.Millisecond, 1500*time.Millisecond, 4800*time.Millisecond, 140<<20, 1000),
			{Seq: 7, System: "debian", Accel: "tcg", Memory: "512M", Err: `guest died: kernel panic while waiting for "x"`},
			boot(8, "initramfs-quiet", 8100*time.Millisecond, 1500*time.Millisecond, 4500*time.Millisecond, 150<<20, 900),
		},
		MinRAM: map[string]*MinRAM{"initramfs": {Pass: 320, Fail: 304, FailWhy: "initramfs unpacking failed"}, "debian": {Pass: 128, Fail: 112}},
	}
	var b strings.Builder
	r.Render(&b)
	out := b.String()
	for _, want := range []string{
		"<!-- Generated by `make bench`",
		"| 7 | debian | 512M | tcg | - | - | - | - | - |",
		"**failed**: guest died: kernel panic while waiting for \"x\"",
		"| initramfs | 2 of 2 | 9100 ms (9000–9200) | 5000 ms | 2600 ms | 50.0 MiB | 50.0 MiB | 320 MiB (fails at 304) | 150.0 MiB | 900 |",
		"| debian | 1 of 2 | 20000 ms |",
		"| initramfs | QEMU start → HTTP 200 | floor | 9100 ms | 7100 ms | 1.28 | ≤ 1.10 | **no** |",
		"| initramfs | QEMU start → HTTP 200 | debian | 9100 ms | 20000 ms | 0.46 | ≤ 0.35 | **no** |",
		"| initramfs | image zstd | debian | 50.0 MiB | 120.0 MiB | 0.42 | ≤ 0.50 | yes |",
		"| initramfs | min RAM | debian | 320 MiB | 128 MiB | 2.50 | ≤ 0.60 | **no** |",
		"the phase that costs it most is **init → HTTP 200** (+1800 ms",
		"initramfs needs 320 MiB; at 304 MiB: initramfs unpacking failed.",
		"**initramfs-quiet is faster**, 8050 ms against 9100 ms (medians), 1050 ms or 11.5% less; every initramfs-quiet boot beat every initramfs boot.",
		"1 of 2 debian boots failed",
		"KVM fails at run time",
		"All of this ran under TCG",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestCompareSignTest(t *testing.T) {
	r := &Report{}
	walls := [][2]int{{7000, 6900}, {9000, 8000}, {7500, 7000}, {7600, 7100}, {7700, 7200}}
	for i, w := range walls {
		r.Boots = append(r.Boots, Boot{Seq: 2*i + 1, System: "a", Wall: time.Duration(w[0]) * time.Millisecond},
			Boot{Seq: 2*i + 2, System: "b", Wall: time.Duration(w[1]) * time.Millisecond})
	}
	if got, want := r.compare("a", "b"), "**b is faster**, 7100 ms against 7600 ms (medians), 500 ms or 6.6% less; it won 5 of 5 pairs (sign test p = 0.031)."; got != want {
		t.Errorf("compare = %q, want %q", got, want)
	}
	r.Boots = r.Boots[:6]
	r.Boots[1].Wall = 7100 * time.Millisecond
	if got := r.compare("a", "b"); !strings.Contains(got, "**not separated**") {
		t.Errorf("compare of split pairs = %q", got)
	}
}

func TestSpliceUpdates(t *testing.T) {
	doc := "# B\n\n## Results\n\nx\n\n## Method\n\nm\n"
	sec := "## OS updates\n\nrow 1\n\n"
	got := spliceSection(doc, "## OS updates\n", sec)
	if got != "# B\n\n## Results\n\nx\n\n## OS updates\n\nrow 1\n\n## Method\n\nm\n" {
		t.Fatalf("inserted:\n%s", got)
	}
	again := spliceSection(got, "## OS updates\n", "## OS updates\n\nrow 2\n\n")
	if again != strings.Replace(got, "row 1", "row 2", 1) {
		t.Fatalf("replaced:\n%s", again)
	}
	var b strings.Builder
	renderUpdates(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, []UpdateRun{
		{What: "the app changed", From: "v20.20.2", To: "v20.20.2", Kernel: 16 << 20, RootFS: 40 << 20, Sent: 56<<20 + 900,
			Build: 20 * time.Second, Payload: time.Second, Upload: 30 * time.Second, Trial: 70 * time.Second},
		{What: "node 22", From: "v20.20.2", Err: "build: no node 22\nmore"},
	})
	for _, want := range []string{"| the app changed | v20.20.2 → v20.20.2 | 56.0 MiB (16.0 MiB + 40.0 MiB) |", "121", "| node 22 | v20.20.2 | failed: build: no node 22 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the section lacks %q:\n%s", want, b.String())
		}
	}
}
