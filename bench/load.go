package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The host may be shared: other work (another QEMU, a compile) competing for
// the CPU inflates boot times under TCG. The harness waits for a quiet host
// before each boot and measures how much CPU everything else used during it,
// so a disturbed boot is visible in the report instead of passing for a slow
// image.

// cpuSample is the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuSample struct {
	busy, total uint64
}

// parseCPUStat reads the aggregate cpu line of /proc/stat and counts the
// per-CPU lines. busy excludes idle and iowait; guest time is already part of
// user time and is not counted twice.
func parseCPUStat(s string) (cpuSample, int, error) {
	var c cpuSample
	found, ncpu := false, 0
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			ncpu++
			continue
		}
		if len(f) < 9 {
			return c, 0, fmt.Errorf("/proc/stat: short cpu line %q", line)
		}
		for i, name := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
			v, err := strconv.ParseUint(f[1+i], 10, 64)
			if err != nil {
				return c, 0, fmt.Errorf("/proc/stat: cpu %s: %w", name, err)
			}
			c.total += v
			if name != "idle" && name != "iowait" {
				c.busy += v
			}
		}
		found = true
	}
	if !found {
		return c, 0, fmt.Errorf("/proc/stat has no cpu line")
	}
	if ncpu == 0 {
		ncpu = 1
	}
	return c, ncpu, nil
}

func readCPUStat() (cpuSample, int, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, 0, err
	}
	return parseCPUStat(string(b))
}

// busyCores is how many CPUs' worth of busy time passed between a and b, with
// exclude ticks (our own processes) taken out.
func busyCores(a, b cpuSample, ncpu int, exclude uint64) float64 {
	if b.total <= a.total {
		return 0
	}
	busy := float64(b.busy-a.busy) - float64(exclude)
	if busy < 0 {
		busy = 0
	}
	return busy * float64(ncpu) / float64(b.total-a.total)
}

// parseProcCPU returns utime+stime of a /proc/PID/stat line, in clock ticks.
// The command name in parentheses may contain spaces, so fields are counted
// from the last ')'.
func parseProcCPU(s string) (uint64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat line")
	}
	u, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return u + st, nil
}

func procCPU(pid string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseProcCPU(string(b))
}

// findQEMUPid finds the QEMU this harness started for a boot by its port
// forward, which names a port unique to that boot.
func findQEMUPid(hostPort int) (string, error) {
	needle := []byte(fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-", hostPort))
	ents, err := os.ReadDir("/proc")
	if len(ents) == 0 && err != nil {
		return "", err
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, needle) {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("no process with %s in its command line", needle)
}

// loadMeter measures the CPU that everything but this harness and its QEMU
// used over an interval.
type loadMeter struct {
	err      error
	qemuPid  string
	ncpu     int
	host     cpuSample
	self, vm uint64
}

func startLoadMeter(hostPort int) *loadMeter {
	m := &loadMeter{}
	for try := 0; ; try++ {
		if m.qemuPid, m.err = findQEMUPid(hostPort); m.err == nil || try == 10 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m.err != nil {
		return m
	}
	if m.vm, m.err = procCPU(m.qemuPid); m.err != nil {
		return m
	}
	if m.host, m.ncpu, m.err = readCPUStat(); m.err != nil {
		return m
	}
	m.self, m.err = procCPU("self")
	return m
}

// others returns the CPUs' worth (cores) of busy time of everything else
// since the meter started.
func (m *loadMeter) others() (float64, error) {
	if m.err != nil {
		return 0, m.err
	}
	host, _, err := readCPUStat()
	if err != nil {
		return 0, err
	}
	self, err := procCPU("self")
	if err != nil {
		return 0, err
	}
	vmTicks, err := procCPU(m.qemuPid)
	if err != nil {
		return 0, fmt.Errorf("QEMU's CPU time: %w", err)
	}
	return busyCores(m.host, host, m.ncpu, (self-m.self)+(vmTicks-m.vm)), nil
}

// quietThreshold is how many cores of other work make the host "busy".
const quietThreshold = 0.25

// waitQuiet waits until the rest of the host uses under quietThreshold cores
// over a one-second sample, for at most max. It returns the last sample and
// how long it waited.
func waitQuiet(ctx context.Context, max time.Duration) (float64, time.Duration) {
	start := time.Now()
	var load float64
	for {
		a, ncpu, err := readCPUStat()
		if err != nil {
			return 0, 0
		}
		self, err := procCPU("self")
		if err != nil {
			return 0, 0
		}
		select {
		case <-ctx.Done():
			return load, time.Since(start)
		case <-time.After(time.Second):
		}
		b, _, err := readCPUStat()
		if err != nil {
			return 0, 0
		}
		self2, err := procCPU("self")
		if err != nil {
			return 0, 0
		}
		load = busyCores(a, b, ncpu, self2-self)
		if load < quietThreshold || time.Since(start) >= max {
			return load, time.Since(start)
		}
	}
}

// calibrate times a fixed amount of CPU and memory work (pseudo-random reads
// and writes over a 16 MiB table). Taken before each boot, it shows how the
// host's own speed drifted during the run; a shared or virtualised host can
// slow down with no sign of it in its own CPU accounting.
func calibrate() time.Duration {
	const size = 16 << 20 / 8
	table := make([]uint64, size)
	x := uint64(0x9E3779B97F4A7C15)
	start := time.Now()
	for i := 0; i < 10_000_000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := x % size
		table[j] += x
	}
	d := time.Since(start)
	sink = table[x%size]
	return d
}

// sink keeps the calibration loop from being optimised away.
var sink uint64
