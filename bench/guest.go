package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/vm"
)

// loadDuration is how long wrk loads the app after each boot.
const loadDuration = 10 * time.Second

// wrkConnections is how many connections wrk keeps open: enough to keep a
// one-vCPU guest busy, few enough not to measure queueing.
const wrkConnections = 8

// runWrk loads url for d with wrk (one thread, from the host, through the
// forwarded port) and returns the requests per second it reports.
func runWrk(ctx context.Context, url string, d time.Duration) (float64, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return 0, fmt.Errorf("wrk not found: apt-get install wrk (requests/s are left out)")
	}
	secs := int(d / time.Second)
	// A slow guest under TCG can take over wrk's default 2 s per request
	// while it warms up; a timeout is then an error, not a dropped sample.
	cmd := exec.CommandContext(ctx, bin, "-t1", fmt.Sprintf("-c%d", wrkConnections), fmt.Sprintf("-d%ds", secs), "--timeout", "10s", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %w: %s", err, tailLines(string(out), 5))
	}
	return parseWrk(string(out))
}

// parseWrk reads "Requests/sec: N" from wrk's report. Socket errors or
// non-2xx answers make the figure meaningless, so they are an error.
func parseWrk(s string) (float64, error) {
	rps, found := 0.0, false
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil || v < 0 || v > 1e12 {
				return 0, fmt.Errorf("wrk: unreadable %q", line)
			}
			rps, found = v, true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			return 0, fmt.Errorf("wrk: %s", line)
		case strings.HasPrefix(line, "Socket errors:") && !strings.Contains(line, "read 0, write 0, timeout 0") && socketErrors(line):
			return 0, fmt.Errorf("wrk: %s", line)
		}
	}
	if !found {
		return 0, fmt.Errorf("wrk printed no Requests/sec line")
	}
	return rps, nil
}

// socketErrors tells whether a wrk "Socket errors:" line counts errors other
// than connect errors at the end of the run.
func socketErrors(line string) bool {
	_, rest, _ := strings.Cut(line, ":")
	for _, part := range strings.Split(rest, ",") {
		f := strings.Fields(part)
		if len(f) == 2 && f[0] != "connect" && f[1] != "0" {
			return true
		}
	}
	return false
}

// guestUsed reads the guest's used memory (MemTotal - MemAvailable) from
// the balloon driver's statistics, waiting for a report newer than the call
// so that it describes the booted, idle system.
func guestUsed(ctx context.Context, g *vm.VM) (int64, error) {
	after := time.Now().Unix()
	// Ask again here: a KVM failure relaunches QEMU under TCG, and the new
	// QEMU has not been told to poll.
	if err := g.StartMemoryStats(time.Second); err != nil {
		return 0, fmt.Errorf("balloon: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		m, err := g.ReadGuestMemory()
		if err == nil && m.Updated > after {
			return m.Used(), nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no fresh report in 10 s")
	}
	return 0, fmt.Errorf("guest memory: %w", lastErr)
}

// bisectMiB finds the smallest memory, in step MiB steps within [lo, hi],
// at which ok holds, assuming ok is monotonic: it holds at hi (known) and
// lo is tried first. It returns the smallest passing size and the largest
// failing one (0 when none failed), and tries at most maxTries sizes.
func bisectMiB(lo, hi, step, maxTries int, ok func(mib int) bool) (pass, fail, tries int) {
	pass = hi
	if tries++; ok(lo) {
		return lo, 0, tries
	}
	fail = lo
	for pass-fail > step && tries < maxTries {
		mid := fail + (pass-fail)/2
		mid -= (mid - lo) % step
		if mid <= fail {
			mid = fail + step
		}
		tries++
		if ok(mid) {
			pass = mid
		} else {
			fail = mid
		}
	}
	return pass, fail, tries
}
