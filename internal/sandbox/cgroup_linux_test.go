package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fakeCgroup lays out a directory like cgroup2 with the given controllers'
// files, which PrepareCgroup writes to like the kernel's.
func fakeCgroup(t *testing.T, app string, controllers string, files []string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{root, filepath.Join(root, "apps")} {
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "cgroup.controllers"), []byte(controllers+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), nil, 0o644)
	}
	dir := filepath.Join(root, "apps", app)
	os.MkdirAll(dir, 0o755)
	for _, f := range files {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	return root
}

func TestPrepareCgroup(t *testing.T) {
	all := []string{"memory.max", "memory.high", "memory.oom.group", "cpu.weight", "cpu.max", "pids.max"}
	tests := []struct {
		name        string
		controllers string
		files       []string
		limits      Limits
		want        map[string]string
		missing     []string
		memory      bool
	}{
		{"everything", "cpu memory pids io", all,
			Limits{MemoryMax: 256 << 20, MemoryHigh: 200 << 20, CPUWeight: 50, CPUMax: 150, PIDs: 64},
			map[string]string{"memory.max": "268435456", "memory.high": "209715200", "memory.oom.group": "1", "cpu.weight": "50", "cpu.max": "150000 100000", "pids.max": "64"}, nil, true},
		{"defaults lift old limits", "cpu memory pids", all, Limits{},
			map[string]string{"memory.max": "max", "memory.high": "max", "cpu.max": "max 100000", "cpu.weight": "100", "pids.max": "1024"}, nil, true},
		{"the default kernel: no memcg, no cpu bandwidth", "cpu pids", []string{"cpu.weight", "pids.max"},
			Limits{MemoryMax: 128 << 20, CPUMax: 50, PIDs: 64},
			map[string]string{"pids.max": "64"}, []string{"memory.max", "memory.oom.group", "cpu.max"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeCgroup(t, "app", tc.controllers, tc.files)
			cg, err := PrepareCgroup(root, "app", tc.limits)
			if err != nil {
				t.Fatal(err)
			}
			for f, want := range tc.want {
				b, _ := os.ReadFile(filepath.Join(cg.Dir, f))
				if string(b) != want {
					t.Errorf("%s = %q, want %q", f, b, want)
				}
			}
			if !slices.Equal(cg.Missing, tc.missing) || cg.Memory != tc.memory {
				t.Errorf("missing %q memory %v, want %q %v", cg.Missing, cg.Memory, tc.missing, tc.memory)
			}
			sc, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
			for _, c := range strings.Fields(tc.controllers) {
				if c != "io" && !strings.Contains(string(sc), "+"+c) {
					t.Errorf("subtree_control %q lacks +%s", sc, c)
				}
			}
		})
	}
}

func TestPrepareCgroupWithoutCgroup2(t *testing.T) {
	_, err := PrepareCgroup(t.TempDir(), "app", Limits{})
	if err == nil || !strings.Contains(err.Error(), "is cgroup2 mounted?") {
		t.Errorf("err = %v", err)
	}
}

func TestEventsAndRollup(t *testing.T) {
	if n := parseEvent([]byte("low 0\nhigh 3\nmax 9\noom 2\noom_kill 1\noom_group_kill 1\n"), "oom_kill"); n != 1 {
		t.Errorf("oom_kill = %d", n)
	}
	if n := parseEvent([]byte("oom 2\n"), "oom_kill"); n != 0 {
		t.Errorf("absent oom_kill = %d", n)
	}
	rollup := []byte("55d0-7ffd [rollup]\nRss:  5000 kB\nPss:  4000 kB\nPss_Anon:  3000 kB\nPss_File: 900 kB\nPss_Shmem:   100 kB\n")
	if a, s := parseKB(rollup, "Pss_Anon:"), parseKB(rollup, "Pss_Shmem:"); a != 3000<<10 || s != 100<<10 {
		t.Errorf("Pss_Anon %d Pss_Shmem %d", a, s)
	}
}

// TestCgroupPSS measures this test process through a fake cgroup.procs.
func TestCgroupPSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("no smaps_rollup")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strings.Join([]string{itoa(os.Getpid()), "999999999"}, "\n")), 0o644)
	buf := make([]byte, 32<<20)
	for i := range buf {
		buf[i] = 1
	}
	n, err := (&Cgroup{Dir: dir}).PSS()
	if err != nil || n < 32<<20 {
		t.Errorf("PSS = %d, %v; want at least the 32 MiB just touched", n, err)
	}
	_ = buf[len(buf)-1]
}

func itoa(n int) string { return strconv.Itoa(n) }
