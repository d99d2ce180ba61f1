package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// diskBoot boots a disk image under OVMF, writing to the image itself, and
// waits until the counter app has made its counts durable.
type diskBoot struct {
	v    *vm.VM
	port int
}

func bootDisk(t *testing.T, ctx context.Context, img, memory string, direct bool, more ...vm.Forward) *diskBoot {
	t.Helper()
	port, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := vm.Config{
		Disk:     img,
		Persist:  true,
		Memory:   memory,
		Forwards: append([]vm.Forward{{Host: port, Guest: 8080}}, more...),
		Console:  consoleLog(t),
	}
	if direct {
		// What `nodeboot run --boot direct` does: the kernel and command
		// line of the entry systemd-boot would pick, loaded by QEMU.
		b, err := disk.ReadBoot(img)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Kernel, err = b.WriteKernel(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		cfg.Cmdline = b.Entry.Options
	}
	v, err := vm.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	return &diskBoot{v: v, port: port}
}

func (b *diskBoot) counts(t *testing.T) (state, persisted int) {
	t.Helper()
	c := b.status(t)
	return c.State, c.Persisted
}

type counterStatus struct {
	State, Persisted int
	DataBytes        int64
}

func (b *diskBoot) status(t *testing.T) counterStatus {
	t.Helper()
	var c counterStatus
	if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (b *diskBoot) waitFor(t *testing.T, marker string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := b.v.WaitFor(ctx, marker, 0); err != nil {
		t.Fatal(err)
	}
}

// dataPartition returns the offset and size of the data partition, read
// with an independent GPT reader.
func dataPartition(t *testing.T, img string) (int64, int64) {
	t.Helper()
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pt.(*gpt.Table).Partitions {
		if p.Name == "nodeboot-data" {
			return int64(p.Start) * 512, int64(p.Size)
		}
	}
	t.Fatal("no nodeboot-data partition")
	return 0, 0
}

func hashRange(t *testing.T, img string, off, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestDiskImage builds a disk image and boots it under OVMF through
// systemd-boot, four times: first boot (the data file system is created),
// a clean reboot, a hard power cut right after a durable write, the smallest
// RAM, and a data partition with a scribbled-over superblock.
func TestDiskImage(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "counter"), proj)
	// The node ships its log lines to a TLS syslog receiver on the host
	// (logs_test.go), checked along the boots below.
	logs := startRemoteLogs(t)
	cfg := `{"hostname": "counter", "apps": [{"path": ".", "persist": ["./db"]}], ` + logs.config + `}`
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "counter.img")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var log strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if _, err := build.ReadManifestFile(build.DiskManifestPath(img)); err != nil {
		t.Fatalf("no manifest beside the image: %v", err)
	}

	// As if the image were written to a disk 256 MiB bigger than itself:
	// the first boot grows the data partition to the end of the disk.
	_, sizeBefore := dataPartition(t, img)
	if err := os.Truncate(img, (1<<30)+(256<<20)); err != nil {
		t.Fatal(err)
	}

	t.Run("first boot grows and creates /data, and the app answers", func(t *testing.T) {
		apiPort, err := vm.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		b := bootDisk(t, ctx, img, "512M", false, vm.Forward{Host: apiPort, Guest: cli.APIPort})
		b.waitFor(t, "durable state=1 persist=1")
		b.waitFor(t, contract.AppListening("counter", 8080))
		// The log endpoint requires a client certificate, which the image
		// does not hold: nothing is sent (the lines wait on /data) until
		// the owner gives the node one.
		b.waitFor(t, "asks for a client certificate and this node has none")
		b.waitFor(t, "management API on https port")
		if m := logs.recv.Messages(); len(m) != 0 {
			t.Errorf("the receiver got %d lines from a node without a client certificate", len(m))
		}
		certFile, keyFile := logs.clientCert(t, "counter")
		node := fmt.Sprintf("127.0.0.1:%d", apiPort)
		if out, err := nodeboot(ctx, proj, "logs", "login", node, "--cert", certFile, "--key", keyFile); err != nil || !strings.Contains(out, "client certificate CN=counter") {
			t.Fatalf("logs login: %v\n%s", err, out)
		}
		con := b.v.Console()
		for _, want := range []string{"creating an ext4 file system", "mounted ext4"} {
			if !strings.Contains(con, want) {
				t.Errorf("console lacks %q", want)
			}
		}
		if strings.Contains(con, "/data is a tmpfs") {
			t.Error("first boot fell back to a tmpfs")
		}
		st := b.status(t)
		if st.State != 1 || st.Persisted != 1 {
			t.Errorf("counts %d/%d, want 1/1", st.State, st.Persisted)
		}
		if !strings.Contains(con, "grew the data partition") {
			t.Error("console does not say the data partition grew")
		}
		// The app's and PID 1's lines reach the remote syslog receiver.
		logs.wait(t, "counter", "durable state=1 persist=1")
		logs.wait(t, "nodeboot", contract.AppListening("counter", 8080))
		if err := b.v.Shutdown(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
		off, size := dataPartition(t, img)
		if size < sizeBefore+250<<20 || off+size > (1<<30)+(256<<20)-33*512 {
			t.Errorf("data partition: %d MiB at %d MiB; was %d MiB, want it to reach the end of the disk", size>>20, off>>20, sizeBefore>>20)
		}
		// An independent reader agrees the rewritten GPT is sound (backup
		// header moved to the new end, CRCs right).
		if out, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Errorf("sfdisk --verify: %v\n%s", err, out)
		}
		checkExt4Console(t, b.v.Console())
		fsckData(t, img)
		if st.DataBytes < (size*9)/10 {
			t.Errorf("/data has %d MiB, the partition %d MiB: the file system does not fill it", st.DataBytes>>20, size>>20)
		}
	})

	t.Run("clean power-off, then boot, keeps the data", func(t *testing.T) {
		b := bootDisk(t, ctx, img, "512M", false)
		b.waitFor(t, "durable state=2 persist=2")
		if strings.Contains(b.v.Console(), "creating an ext4") {
			t.Error("second boot formatted the data partition again")
		}
		checkExt4Console(t, b.v.Console())
		// Cut the power right after the app reported its write durable.
		b.v.Kill()
	})

	// 141 MiB, the documented smallest UEFI boot, not the 128 MiB the
	// system itself needs: below it OVMF has no free 54 MiB block for the
	// kernel's EFI stub to decompress this kernel into ("Failed to
	// decompress kernel"; docs/ARCHITECTURE.md, "Smallest RAM"). The
	// firmware's memory map does not depend on timing, so the edge is
	// exact: a bigger kernel or firmware fails here first.
	t.Run("hard power-off keeps the data, in 141 MiB of RAM", func(t *testing.T) {
		// The log endpoint is down for this boot: the lines wait in the
		// buffer on /data and arrive during the next boot.
		logs.recv.Stop()
		b := bootDisk(t, ctx, img, "141M", false)
		b.waitFor(t, "durable state=3 persist=3")
		b.waitFor(t, contract.AppListening("counter", 8080))
		b.waitFor(t, "log shipper: connecting to syslog+tls://10.0.2.2")
		if s, p := b.counts(t); s != 3 || p != 3 {
			t.Errorf("counts %d/%d, want 3/3", s, p)
		}
		if err := b.v.Shutdown(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := logs.recv.Start(); err != nil {
			t.Fatal(err)
		}
	})

	// The system itself fits in 128 MiB once node's pages come from the
	// page cache; only the EFI stub needs more (above). Loaded directly,
	// the same image, entry and command line boot in 128 MiB.
	t.Run("the kernel loaded directly boots in 128 MiB and keeps the data", func(t *testing.T) {
		b := bootDisk(t, ctx, img, "128M", true)
		b.waitFor(t, "durable state=4 persist=4")
		b.waitFor(t, contract.AppListening("counter", 8080))
		if s, p := b.counts(t); s != 4 || p != 4 {
			t.Errorf("counts %d/%d, want 4/4", s, p)
		}
		// The previous boot's lines, buffered while the endpoint was
		// down, arrive, before this boot's.
		if prev, now := logs.wait(t, "counter", "durable state=3 persist=3"), logs.wait(t, "counter", "durable state=4 persist=4"); prev > now {
			t.Errorf("the buffered line came after this boot's (%d > %d)", prev, now)
		}
		if err := b.v.Shutdown(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a corrupted data partition is not formatted", func(t *testing.T) {
		off, size := dataPartition(t, img)
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Scribble over the primary superblock (1024..2047 of the partition).
		if _, err := f.WriteAt(bytes.Repeat([]byte("scribble"), 128), off+1024); err != nil {
			t.Fatal(err)
		}
		f.Close()
		span := min(size, 64<<20)
		before := hashRange(t, img, off, span)
		b := bootDisk(t, ctx, img, "512M", false)
		b.waitFor(t, "durable state=1 persist=1")
		con := b.v.Console()
		for _, want := range []string{"WARNING", "NOT formatted", "/data is a tmpfs"} {
			if !strings.Contains(con, want) {
				t.Errorf("console lacks %q", want)
			}
		}
		if err := b.v.Shutdown(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
		if hashRange(t, img, off, span) != before {
			t.Error("the corrupted data partition was written to")
		}
	})
}

// checkExt4Console fails on any error the kernel's ext4 reported about the
// data file system (a lazily initialised group it found inconsistent, an
// earlier error recorded in the superblock).
func checkExt4Console(t *testing.T, con string) {
	t.Helper()
	for _, bad := range []string{"EXT4-fs error", "mounting fs with errors", "EXT4-fs warning"} {
		if i := strings.Index(con, bad); i >= 0 {
			line := con[i:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			t.Errorf("the kernel complains about the data file system: %s", line)
		}
	}
}

// fsckData runs e2fsck -fn, an independent checker, on a copy of the image's
// data partition.
func fsckData(t *testing.T, img string) {
	t.Helper()
	e2fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		for _, p := range []string{"/usr/sbin/e2fsck", "/sbin/e2fsck"} {
			if _, err := os.Stat(p); err == nil {
				e2fsck = p
			}
		}
	}
	if e2fsck == "" {
		t.Fatal("e2fsck is not installed (apt-get install e2fsprogs)")
	}
	off, size := dataPartition(t, img)
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	part := filepath.Join(t.TempDir(), "data.ext4")
	dst, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if out, err := exec.Command(e2fsck, "-fn", part).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn of the data partition: %v\n%s", err, out)
	}
}
