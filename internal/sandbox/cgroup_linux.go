package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupRoot is where PID 1 mounts cgroup2; apps live in CgroupRoot/apps/<name>.
const CgroupRoot = "/sys/fs/cgroup"

// cpuPeriod is cpu.max's period in µs (the kernel's default).
const cpuPeriod = 100000

// Cgroup is one app's cgroup.
type Cgroup struct {
	Dir    string
	Limits Limits
	// Memory reports whether the kernel has the memory controller
	// (CONFIG_MEMCG); without it MemoryMax is enforced by a watchdog.
	Memory bool
	// Missing names the limit files the kernel lacks: configured limits
	// it cannot enforce (memory.high without CONFIG_MEMCG, cpu.max
	// without CONFIG_CFS_BANDWIDTH).
	Missing []string
}

// PrepareCgroup creates (or reuses) the app's cgroup under root and writes
// its limits. The previous process of the app must be gone: limits are
// rewritten at each start, so a changed config needs no reboot.
func PrepareCgroup(root, app string, l Limits) (*Cgroup, error) {
	parent := filepath.Join(root, "apps")
	// Controllers are enabled top-down: a child can use only what its
	// parent's subtree_control lists.
	for _, dir := range []string{root, parent} {
		if dir == parent {
			if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("creating cgroup %s: %w", parent, err)
			}
		}
		if err := enableControllers(dir); err != nil {
			return nil, err
		}
	}
	cg := &Cgroup{Dir: filepath.Join(parent, app), Limits: l}
	if err := os.Mkdir(cg.Dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating cgroup %s: %w", cg.Dir, err)
	}
	max := func(v int64) string {
		if v <= 0 {
			return "max"
		}
		return strconv.FormatInt(v, 10)
	}
	cpuMax := "max " + strconv.Itoa(cpuPeriod)
	if l.CPUMax > 0 {
		cpuMax = fmt.Sprintf("%d %d", int64(l.CPUMax)*cpuPeriod/100, cpuPeriod)
	}
	weight := 100
	if l.CPUWeight > 0 {
		weight = l.CPUWeight
	}
	files := []struct {
		name, val string
		needed    bool // set by the config: failing to apply it is an error
	}{
		{"memory.max", max(l.MemoryMax), l.MemoryMax > 0},
		{"memory.high", max(l.MemoryHigh), l.MemoryHigh > 0},
		// The whole app goes when the OOM killer picks one of its
		// processes: a node without its worker, or a helper without
		// node, is not worth keeping, and the supervisor restarts it.
		{"memory.oom.group", "1", l.MemoryMax > 0},
		{"cpu.weight", strconv.Itoa(weight), l.CPUWeight > 0},
		{"cpu.max", cpuMax, l.CPUMax > 0},
		{"pids.max", strconv.Itoa(l.PIDsMax()), true},
	}
	for _, f := range files {
		p := filepath.Join(cg.Dir, f.name)
		if _, err := os.Stat(p); err != nil {
			// The kernel lacks the controller or the feature.
			if f.needed {
				cg.Missing = append(cg.Missing, f.name)
			}
			continue
		}
		if f.name == "memory.max" {
			cg.Memory = true
		}
		if err := os.WriteFile(p, []byte(f.val), 0o644); err != nil && f.needed {
			return nil, fmt.Errorf("cgroup %s: setting %s to %s: %w", cg.Dir, f.name, f.val, err)
		}
	}
	return cg, nil
}

func enableControllers(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup2 at %s: %w (is cgroup2 mounted?)", dir, err)
	}
	var want []string
	for _, c := range strings.Fields(string(avail)) {
		if c == "memory" || c == "cpu" || c == "pids" {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(want, " ")), 0o644); err != nil {
		return fmt.Errorf("cgroup %s: enabling %s: %w", dir, strings.Join(want, " "), err)
	}
	return nil
}

// Open returns an fd of the cgroup's directory for CLONE_INTO_CGROUP.
func (c *Cgroup) Open() (int, error) {
	fd, err := unix.Open(c.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening cgroup %s: %w", c.Dir, err)
	}
	return fd, nil
}

// OOMKills reads memory.events' oom_kill: how many processes of the cgroup
// the OOM killer has killed so far.
func (c *Cgroup) OOMKills() int64 {
	b, err := os.ReadFile(filepath.Join(c.Dir, "memory.events"))
	if err != nil {
		return 0
	}
	return parseEvent(b, "oom_kill")
}

// parseEvent reads one "key value" line of a cgroup events file.
func parseEvent(b []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// Kill kills everything left in the cgroup (cgroup.kill, Linux 5.14+).
func (c *Cgroup) Kill() error {
	err := os.WriteFile(filepath.Join(c.Dir, "cgroup.kill"), []byte("1"), 0o644)
	if err != nil {
		return fmt.Errorf("cgroup %s: kill: %w", c.Dir, err)
	}
	return nil
}

// PSS sums the proportional anonymous and shmem memory of the cgroup's
// processes (smaps_rollup): what the app itself holds, with pages shared by
// forked children counted once, not once per child.
func (c *Cgroup) PSS() (int64, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "cgroup.procs"))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", c.Dir, err)
	}
	var total int64
	for _, pid := range strings.Fields(string(b)) {
		r, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
		if err != nil {
			continue // exited meanwhile
		}
		total += parseKB(r, "Pss_Anon:") + parseKB(r, "Pss_Shmem:")
	}
	return total, nil
}

// parseKB reads "Key:   123 kB" from a /proc file, in bytes.
func parseKB(b []byte, key string) int64 {
	i := bytes.Index(b, []byte("\n"+key))
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1+len(key):]))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n << 10
}
