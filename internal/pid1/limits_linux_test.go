package pid1

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/api"
)

func TestFileLimitFor(t *testing.T) {
	for _, c := range []struct {
		cur     unix.Rlimit
		ceiling uint64
		want    uint64
	}{
		{unix.Rlimit{Cur: 1024, Max: 4096}, 1 << 20, fileBudget}, // the kernel's default for init
		{unix.Rlimit{Cur: 4096, Max: 4096}, 0, fileBudget},
		{unix.Rlimit{Cur: 1024, Max: 1 << 20}, 1 << 20, 1 << 20}, // a higher hard limit is kept
		{unix.Rlimit{Cur: 1024, Max: 4096}, 8192, 8192},          // fs.nr_open caps it
	} {
		got := fileLimitFor(c.cur, c.ceiling)
		if got.Cur != c.want || got.Max != c.want {
			t.Errorf("fileLimitFor(%d/%d, %d) = %d/%d, want %d", c.cur.Cur, c.cur.Max, c.ceiling, got.Cur, got.Max, c.want)
		}
	}
	// The API's connections must sit well inside the budget.
	if api.DefaultMaxConns*4 > fileBudget/16 {
		t.Errorf("fileBudget %d leaves too little room over the API's %d connections", fileBudget, api.DefaultMaxConns)
	}
}

// Starting from the kernel's default for init, PID 1 ends with the budget
// (needs root: raising a hard limit takes CAP_SYS_RESOURCE).
// hasCap reads the effective capability set from /proc/self/status.
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}

func TestRaiseFileLimit(t *testing.T) {
	if !hasCap(unix.CAP_SYS_RESOURCE) {
		t.Skip("needs CAP_SYS_RESOURCE (PID 1 has it; this container does not)")
	}
	var saved unix.Rlimit
	unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &saved)
	defer unix.Prlimit(0, unix.RLIMIT_NOFILE, &saved, nil)
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 1024, Max: 4096}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now unix.Rlimit
	unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &now)
	if now != got || now.Cur < fileBudget || now.Max < fileBudget {
		t.Errorf("RLIMIT_NOFILE now %d/%d (returned %d/%d), want at least %d", now.Cur, now.Max, got.Cur, got.Max, fileBudget)
	}
}
