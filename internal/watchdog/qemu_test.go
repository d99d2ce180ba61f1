package watchdog

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestResetsHungGuest boots the real kernel under QEMU with the i6300esb
// device nodeboot's VMs carry, and an init that feeds the watchdog through
// this package for three timeouts, then hangs. Fed, the guest must live on;
// hung, it must be reset (the init starts again). Runs with NODEBOOT_E2E=1.
func TestResetsHungGuest(t *testing.T) {
	if os.Getenv("NODEBOOT_E2E") == "" {
		t.Skip("set NODEBOOT_E2E=1 to boot QEMU")
	}
	if _, err := vm.FindQEMU("amd64"); err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Default("amd64")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init")
	b := exec.Command("go", "build", "-o", initBin, "./testdata/hanginit")
	b.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	st, err := os.Stat(initBin)
	if err != nil {
		t.Fatal(err)
	}
	tr := image.NewTree()
	if err := tr.AddFile("/init", initBin, 0o755, st.Size()); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddDir("/dev", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if _, err := image.WriteInitramfs(tr, initrd, image.None, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	v, err := vm.Start(ctx, vm.Config{Kernel: k.Path, Initrd: initrd, Cmdline: "console=ttyS0 quiet", Memory: "256M"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Kill()
	at, err := v.WaitFor(ctx, "HANG-FED", 0)
	if err != nil {
		t.Fatalf("%v\n%s", err, v.Console())
	}
	if con := v.Console(); strings.Count(con, "HANG-START") != 1 || strings.Contains(con, "HANG-FAIL") {
		t.Fatalf("the guest restarted or failed while the watchdog was fed:\n%s", con)
	}
	if _, err := v.WaitFor(ctx, "HANG-START", at); err != nil {
		t.Fatalf("the hung guest was not reset: %v\n%s", err, v.Console())
	}
}
