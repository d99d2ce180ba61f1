package pid1

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fileBudget is PID 1's RLIMIT_NOFILE. The kernel starts init with 1024
// soft / 4096 hard, and 4096 was not enough: 4,300 connections to the
// API in one second took every fd, and PID 1's own open and pipe2 then
// failed (issue 12 item 6). PID 1 holds per app about six fds (pipes, the
// log file, the helper's status pipe), a few for the console, netlink and
// the watchdog, and the API's connections, which internal/api bounds at
// api.DefaultMaxConns (128) plus each connection's TLS state: the budget
// leaves two orders of magnitude between what the API may take and the
// limit.
const fileBudget = 1 << 16

// raiseFileLimit sets PID 1's soft and hard RLIMIT_NOFILE to fileBudget
// (never lowering a higher hard limit, never above fs.nr_open). It uses
// prlimit directly, not setrlimit: Go restores its start-up limit in the
// processes it starts only as long as setrlimit was not called, so the
// apps keep the kernel's 1024/4096 (node raises its soft limit itself).
func raiseFileLimit() (unix.Rlimit, error) {
	var cur unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &cur); err != nil {
		return cur, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	want := fileLimitFor(cur, nrOpen())
	if want == cur {
		return cur, nil
	}
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &want, nil); err != nil {
		return cur, fmt.Errorf("raising RLIMIT_NOFILE from %d/%d to %d/%d: %w", cur.Cur, cur.Max, want.Cur, want.Max, err)
	}
	return want, nil
}

// fileLimitFor is the limit to set given the current one and the
// kernel's ceiling (0: unknown).
func fileLimitFor(cur unix.Rlimit, ceiling uint64) unix.Rlimit {
	n := max(uint64(fileBudget), cur.Max)
	if ceiling > 0 && n > ceiling {
		n = max(ceiling, cur.Max)
	}
	return unix.Rlimit{Cur: n, Max: n}
}

// nrOpen is fs.nr_open, the most any process may have; 0 if unreadable.
func nrOpen() uint64 {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}
