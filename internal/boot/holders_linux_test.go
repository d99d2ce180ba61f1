package boot

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHolders mounts a tmpfs and holds it as PID 1's subsystems could: an
// open file, a bound unix socket, a child's working directory and another
// mount namespace (a child of unshare -m). Holders names each, with the
// holding process, and the unmount that failed with EBUSY then succeeds
// once they are gone.
func TestHolders(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if h := Holders("/proc", dir); len(h) != 0 {
		t.Fatalf("a fresh tmpfs has holders: %q", h)
	}

	f, err := os.Create(filepath.Join(dir, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "work")
	os.Mkdir(sub, 0o755)
	cwd := exec.Command("sleep", "600")
	cwd.Dir = sub
	ns := exec.Command("unshare", "-m", "--propagation", "private", "sleep", "600")
	for _, c := range []*exec.Cmd{cwd, ns} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	// unshare execs sleep once its namespace exists.
	for deadline := time.Now().Add(time.Minute); ; {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(ns.Process.Pid) + "/comm")
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare did not exec sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := unix.Unmount(dir, 0); err != unix.EBUSY {
		t.Fatalf("unmount with holders: %v, want EBUSY", err)
	}
	got := strings.Join(Holders("/proc", dir), "\n")
	me := "pid " + strconv.Itoa(os.Getpid()) + " ("
	for _, want := range []string{
		me, "fd " + strconv.Itoa(int(f.Fd())) + ": " + f.Name(),
		"unix socket " + sock,
		"pid " + strconv.Itoa(cwd.Process.Pid) + " (sleep) cwd: " + sub,
		"pid " + strconv.Itoa(ns.Process.Pid) + " (sleep): its mount namespace mnt:[",
		"has " + dir + " mounted on " + dir,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("holders lack %q:\n%s", want, got)
		}
	}

	f.Close()
	l.Close()
	for _, c := range []*exec.Cmd{cwd, ns} {
		c.Process.Kill()
		c.Wait()
	}
	if h := Holders("/proc", dir); len(h) != 0 {
		t.Errorf("holders after they were closed: %q", h)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("unmount once nothing holds it: %v", err)
	}
}
