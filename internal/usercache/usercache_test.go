package usercache

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain doubles as a `nodeboot run` stand-in: with USERCACHE_HOLD set it
// takes the run lock on that dir as run does and keeps it until its stdin
// closes, so the lock is held by another process, as in real use.
func TestMain(m *testing.M) {
	if dir := os.Getenv("USERCACHE_HOLD"); dir != "" {
		release, err := LockRun(dir)
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		io.Copy(io.Discard, os.Stdin)
		release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func write(t *testing.T, p string, size int64) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Written, not truncated, so the blocks are allocated.
	if _, err := f.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
}

// hold starts a process holding the run lock on dir; the returned func
// ends it.
func hold(t *testing.T, dir string) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "USERCACHE_HOLD="+dir)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("lock holder: %q %v", line, err)
	}
	return func() { in.Close(); cmd.Wait() }
}

func TestListAndPruneSparesRunningVM(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "node", "22.11.0-amd64", "bin", "node"), 64<<10)
	write(t, filepath.Join(root, "modules", "github.com", "gokrazy", "kernel.amd64@v0.0.0-1", "vmlinuz"), 32<<10)
	write(t, filepath.Join(root, "modules", "github.com", "gokrazy", ".tmp-123", "x"), 1)
	running := filepath.Join(root, "run", "aaaa")
	idle := filepath.Join(root, "run", "bbbb")
	write(t, filepath.Join(running, "disk.img"), 128<<10)
	write(t, filepath.Join(idle, "initramfs.cpio"), 16<<10)
	// A sparse image counts what it uses on disk, not its length.
	f, _ := os.OpenFile(filepath.Join(idle, "sparse.img"), os.O_CREATE|os.O_RDWR, 0o644)
	f.Truncate(2 << 30)
	f.Close()
	part := filepath.Join(root, "parts", "initramfs-0123")
	write(t, filepath.Join(part, "part"), 8<<10)
	write(t, filepath.Join(root, "parts", ".tmp-9", "part"), 1)
	write(t, filepath.Join(root, "digests", "ab12"), 64)
	write(t, filepath.Join(root, "digests", "cd34"), 64)

	stop := hold(t, running)
	ents, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		s := e.Kind + ":" + e.Name
		if e.InUse {
			s += "*"
		}
		got = append(got, s)
		if e.Name == "bbbb" && (e.Bytes < 16<<10 || e.Bytes > 1<<20) {
			t.Errorf("bbbb uses %d bytes: the sparse file's length was counted", e.Bytes)
		}
	}
	want := "kernel:github.com/gokrazy/kernel.amd64@v0.0.0-1 node:22.11.0-amd64 parts:digests parts:initramfs-0123 run:aaaa* run:bbbb"
	if strings.Join(got, " ") != want {
		t.Fatalf("List = %v\nwant    %s", got, want)
	}

	removed, inUse, err := Prune(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 5 || len(inUse) != 1 || inUse[0].Name != "aaaa" {
		t.Errorf("removed %v, in use %v", removed, inUse)
	}
	if _, err := os.Stat(filepath.Join(running, "disk.img")); err != nil {
		t.Errorf("the running VM's disk was deleted: %v", err)
	}
	for _, p := range []string{idle, part, filepath.Join(root, "digests"), filepath.Join(root, "node", "22.11.0-amd64"), filepath.Join(root, "modules", "github.com", "gokrazy", "kernel.amd64@v0.0.0-1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the prune", p)
		}
	}

	// Once the run ends, its image goes too.
	stop()
	if removed, _, err := Prune(root, nil); err != nil || len(removed) != 1 {
		t.Errorf("after the run: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(running); !os.IsNotExist(err) {
		t.Error("the finished run's image survived")
	}
}

// A run that waited for a prune's lock finds its lock file removed and
// locks a fresh one rather than a file nobody else can see.
func TestLockRunAfterPrune(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "run", "cccc")
	write(t, filepath.Join(dir, "x"), 1)
	if ok, err := removeUnlessBusy(dir); err != nil || !ok {
		t.Fatal(ok, err)
	}
	release, err := LockRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if !busy(dir) {
		t.Error("the new run's lock is not seen by prune")
	}
}
