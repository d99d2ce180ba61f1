package disk

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/kernel"
)

// probeInit is a PID 1 that reports what it finds and powers off.
const probeInit = `package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	syscall.Mount("proc", "/proc", "proc", 0, "")
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, l := range []string{"/dev/root / squashfs ro"} {
		if !contains(string(mounts), l) {
			fmt.Printf("PROBE-FAIL mounts lack %q:\n%s", l, mounts)
		}
	}
	b, err := os.ReadFile("/etc/probe")
	fmt.Printf("PROBE-FILE %q %v\n", b, err)
	var st syscall.Stat_t
	err = syscall.Stat("/srv/app", &st)
	fmt.Printf("PROBE-OWNER %d:%d %o %v\n", st.Uid, st.Gid, st.Mode&0o7777, err)
	fmt.Println("PROBE-DONE")
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
`

// TestBootUEFI boots an image the way a PC would: OVMF, systemd-boot from
// the ESP, the kernel finding its root by PARTUUID, /init from the squashfs.
// It needs QEMU and OVMF and takes 15–40 s under TCG, so it runs only with
// NODEBOOT_E2E=1.
func TestBootUEFI(t *testing.T) {
	if os.Getenv("NODEBOOT_E2E") == "" {
		t.Skip("set NODEBOOT_E2E=1 to boot an image in QEMU")
	}
	qemu := needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	const ovmf = "/usr/share/ovmf/OVMF.fd"
	if _, err := os.Stat(ovmf); err != nil {
		t.Fatalf("%v (apt-get install ovmf)", err)
	}
	k, err := kernel.Default("amd64")
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "main.go"), []byte(probeInit), 0o644)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module probeinit\n\ngo 1.22\n"), 0o644)
	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", initBin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe init: %v\n%s", err, out)
	}

	tr := image.NewTree()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddFile("/init", initBin, 0o755, 0))
	must(tr.AddDir("/proc", 0o555, 0, 0))
	must(tr.AddData("/etc/probe", []byte("squashfs says hi"), 0o644))
	must(tr.AddDir("/srv/app", 0o750, 1000, 1001))
	l, err := Write(Options{
		Path:    filepath.Join(dir, "disk.img"),
		Size:    testSize,
		Root:    tr,
		Kernel:  k.Path,
		Cmdline: "console=ttyS0,115200 panic=-1 oops=panic",
		Seed:    "boot-test",
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-nodefaults", "-no-user-config", "-M", "pc", "-m", "256M",
		"-display", "none", "-serial", "stdio", "-no-reboot", "-accel", "tcg", "-bios", ovmf,
		"-drive", "file="+filepath.Join(dir, "disk.img")+",format=raw,if=virtio,snapshot=on")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var console []string
	found := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		console = append(console, line)
		for _, m := range []string{"PROBE-FILE \"squashfs says hi\" <nil>", "PROBE-OWNER 1000:1001 750 <nil>", "PROBE-DONE", "PROBE-FAIL", "Kernel panic"} {
			if strings.Contains(line, m) {
				found[m] = true
			}
		}
		if strings.Contains(line, "root=PARTUUID="+l.RootA.GUID) {
			found["cmdline"] = true
		}
		if found["PROBE-DONE"] || found["Kernel panic"] {
			break
		}
	}
	elapsed := time.Since(start)
	tail := console[max(0, len(console)-40):]
	if found["Kernel panic"] || found["PROBE-FAIL"] || !found["PROBE-DONE"] {
		t.Fatalf("boot failed after %v; console tail:\n%s", elapsed, strings.Join(tail, "\n"))
	}
	for _, m := range []string{"cmdline", "PROBE-FILE \"squashfs says hi\" <nil>", "PROBE-OWNER 1000:1001 750 <nil>"} {
		if !found[m] {
			t.Errorf("console lacks %q; tail:\n%s", m, strings.Join(tail, "\n"))
		}
	}
	t.Logf("QEMU start → init done in %v", elapsed.Round(100*time.Millisecond))
}
