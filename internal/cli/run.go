package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/diskformat"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/usercache"
	"github.com/nodeboot/nodeboot/internal/vm"
)

type runFlags struct {
	persist  bool
	memory   string
	cpus     int
	accel    string
	forwards []string
	quiet    bool
	boot     string
}

func newRun(stdout, stderr io.Writer) *cobra.Command {
	var bf buildFlags
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "run [APP_DIR | BUILD_DIR | IMAGE.img]",
		Short: "Build an app if needed and boot it under QEMU",
		Long: `Boot an image under QEMU with its console on this terminal.

APP_DIR (default: the current directory) is built first into the user cache
dir; a BUILD_DIR from 'nodeboot build' is booted as it is, and so is a disk
image (IMAGE.img, from 'nodeboot build --format disk', or its qcow2, vmdk or
vhd conversion), through UEFI firmware (OVMF). A disk image's writes go to a throwaway overlay unless --persist is
given. With --format disk an APP_DIR is built as a disk image. Each app's port is
forwarded from a free port on 127.0.0.1; once the first app answers HTTP,
'ready: http://127.0.0.1:PORT/' is printed. Ctrl-C presses the guest's power
button: apps get SIGTERM, file systems are synced, the guest powers off.
A second Ctrl-C kills QEMU. run ends when the guest powers off.

A guest that reboots (nodeboot reboot local, an OS update's trial) boots
again, as a machine would, and run follows it; one that fails 3 boots in a
row (PID 1's fatal error, a kernel panic, a watchdog reset, or a reboot
before its apps came up) is stopped, and run exits 1 saying why.

--boot direct boots a disk image without firmware: nodeboot reads the boot
entry systemd-boot would pick from the image's ESP and QEMU loads that
entry's kernel with its command line, the image attached as the disk. It
needs less RAM than UEFI (the kernel's EFI stub wants one free block the size
of the decompressed kernel: about 141M for the default kernel, against 128M
directly) and skips the firmware's seconds; it does not count boot attempts,
which only systemd-boot does.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			return runImage(cmd.Context(), dir, bf, rf, stdout, stderr)
		},
	}
	bf.register(cmd.Flags())
	cmd.Flags().StringVarP(&rf.memory, "memory", "m", "512M", "guest RAM (QEMU syntax: 512M, 1G)")
	cmd.Flags().IntVar(&rf.cpus, "cpus", 1, "guest CPUs")
	cmd.Flags().StringVar(&rf.accel, "accel", "auto", "QEMU accelerator: auto (KVM if /dev/kvm is usable, else TCG), kvm or tcg")
	cmd.Flags().StringArrayVarP(&rf.forwards, "publish", "p", nil, "forward host port to guest port, HOST:GUEST (repeatable)")
	cmd.Flags().BoolVarP(&rf.quiet, "quiet", "q", false, "do not stream the guest console")
	cmd.Flags().StringVar(&rf.boot, "boot", "uefi", "disk images: uefi (OVMF, then systemd-boot, as on a PC) or direct (QEMU loads the boot entry's kernel: less RAM, faster)")
	cmd.Flags().BoolVar(&rf.persist, "persist", false, "disk images: write to the image itself, so the next run sees this run's /data (default: a throwaway overlay)")
	return cmd
}

// buildDirFor is where `run APP_DIR` builds: per app dir in the user cache.
func buildDirFor(appDir string) (string, error) {
	abs, err := filepath.Abs(appDir)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir: %w (set XDG_CACHE_HOME)", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(cache, "nodeboot", "run", hex.EncodeToString(sum[:8])), nil
}

// lockRunImage marks the cache dir `run APP_DIR` builds into as in use; a
// disk image or a build dir given as is is not the cache's.
func lockRunImage(dir string) (func(), error) {
	if st, err := os.Stat(dir); err == nil && st.Mode().IsRegular() {
		return func() {}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		return func() {}, nil
	}
	out, err := buildDirFor(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("run cache: %w", err)
	}
	return usercache.LockRun(out)
}

func parseForward(s string) (vm.Forward, error) {
	h, g, ok := strings.Cut(s, ":")
	hp, err1 := strconv.Atoi(h)
	gp, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || hp < 1 || hp > 65535 || gp < 1 || gp > 65535 {
		return vm.Forward{}, fmt.Errorf("bad -p %q: want HOST:GUEST, two port numbers, e.g. -p 8080:8080", s)
	}
	return vm.Forward{Host: hp, Guest: gp}, nil
}

func runImage(ctx context.Context, dir string, bf buildFlags, rf runFlags, stdout, stderr io.Writer) error {
	if rf.boot != "uefi" && rf.boot != "direct" {
		return fmt.Errorf("bad --boot %q: want uefi or direct", rf.boot)
	}
	var forwards []vm.Forward
	for _, s := range rf.forwards {
		f, err := parseForward(s)
		if err != nil {
			return err
		}
		if err := vm.PortFree(f.Host); err != nil {
			return err
		}
		forwards = append(forwards, f)
	}
	// Fail before a long build when QEMU is missing.
	if _, err := vm.FindQEMU(bf.arch); err != nil {
		return err
	}

	// The image run builds in the user cache stays in use until QEMU
	// exits: `nodeboot cache prune` skips it meanwhile.
	if release, err := lockRunImage(dir); err != nil {
		return err
	} else {
		defer release()
	}
	img, m, err := prepareImage(ctx, dir, bf, rf.persist, stderr)
	if err != nil {
		return err
	}
	if img.disk != "" {
		tmp, err := os.MkdirTemp("", "nodeboot-run-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if err := img.chooseBoot(rf, m, tmp, stderr); err != nil {
			return err
		}
	} else if rf.boot != "uefi" {
		// An initramfs build has no firmware path to choose.
		return fmt.Errorf("--boot %s: only disk images have a boot choice; build with --format disk", rf.boot)
	}

	// Every app port not explicitly published gets a free host port.
	published := map[int]bool{}
	for _, f := range forwards {
		published[f.Guest] = true
	}
	var readyPort int
	for _, a := range m.Apps {
		if published[a.Port] {
			for _, f := range forwards {
				if f.Guest == a.Port && readyPort == 0 {
					readyPort = f.Host
				}
			}
			continue
		}
		hp, err := vm.FreePort()
		if err != nil {
			return err
		}
		forwards = append(forwards, vm.Forward{Host: hp, Guest: a.Port})
		if readyPort == 0 {
			readyPort = hp
		}
	}

	// The management API (docs/api.md), recorded as the node "local" in the
	// project's .nodeboot/nodes.json so that status, logs and deploy reach
	// this VM at once.
	apiPort, err := vm.FreePort()
	if err != nil {
		return err
	}
	forwards = append(forwards, vm.Forward{Host: apiPort, Guest: APIPort})

	var console io.Writer = stdout
	if rf.quiet {
		console = nil
	}
	vmCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := vm.Start(vmCtx, vm.Config{
		Kernel:     img.kernel,
		Initrd:     img.initrd,
		Cmdline:    img.cmdline(m),
		Disk:       img.disk,
		DiskFormat: img.diskFormat,
		Persist:    rf.persist,
		Memory:     rf.memory,
		CPUs:       rf.cpus,
		Arch:       m.Arch,
		Accel:      rf.accel,
		Forwards:   forwards,
		Console:    console,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "booting %s under QEMU (%s)\n", m.Hostname, v.Accel)
	for _, f := range forwards {
		fmt.Fprintf(stderr, "forwarding 127.0.0.1:%d -> guest :%d\n", f.Host, f.Guest)
	}
	recordLocal(dir, apiPort, stderr)
	if img.disk != "" && img.directCmdline == "" {
		// Under UEFI a boot can die before Linux starts; say why at once
		// rather than leave the user at the firmware's boot manager.
		go func() {
			_, err := v.WaitFor(vmCtx, contract.ConsolePrefix+contract.InitStarted, 0)
			if errors.Is(err, vm.ErrGuestDied) && strings.Contains(err.Error(), "EFI stub") {
				fmt.Fprintf(stderr, "nodeboot: the kernel's EFI stub failed before Linux started: with --memory %s there is no free block big enough to decompress the kernel into; give it more memory or use --boot direct (docs/ARCHITECTURE.md, \"Smallest RAM\"). Ctrl-C to stop.\n", rf.memory)
			}
		}()
	}

	if readyPort != 0 {
		go func() {
			url := fmt.Sprintf("http://127.0.0.1:%d/", readyPort)
			if WaitHTTP(vmCtx, url, v.Done()) == nil {
				fmt.Fprintf(stdout, "ready: %s (%.1fs after QEMU start)\n", url, v.Since().Seconds())
			}
		}()
	}

	// QEMU restarts a guest that reboots, as a machine would: run follows
	// it, but stops a guest that fails boot after boot (runboots.go).
	loop := make(chan string, 1)
	go func() {
		f := &bootFollower{stderr: stderr}
		for {
			select {
			case <-vmCtx.Done():
				return
			case <-v.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			if why := f.check(v.Console()); why != "" {
				loop <- why
				return
			}
		}
	}()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	presses := 0
	for {
		select {
		case why := <-loop:
			// Between its failures the guest cannot be powered off
			// cleanly; each failed boot synced what it could.
			v.Kill()
			return fmt.Errorf("%s: run stopped it (the console above shows each boot); fix the cause and run again", why)
		case <-v.Done():
			if err := v.Err(); err != nil && presses == 0 {
				return fmt.Errorf("QEMU: %w", err)
			}
			return nil
		case <-ctx.Done():
			// The CLI cancels ctx on Ctrl-C, which is how a run ends: the
			// guest powers off, and a clean power-off is success.
			return v.Shutdown(30 * time.Second)
		case <-sigs:
			presses++
			if presses > 1 {
				fmt.Fprintln(stderr, "killing QEMU")
				v.Kill()
				return errors.New("guest killed")
			}
			fmt.Fprintln(stderr, "powering the guest off (Ctrl-C again to kill it)")
			if err := v.Powerdown(); err != nil {
				fmt.Fprintf(stderr, "power button: %v; killing QEMU\n", err)
				v.Kill()
			}
		}
	}
}

// bootable is what QEMU boots: a kernel + initramfs, a disk image through
// firmware, or a disk image with the kernel of its boot entry (direct).
type bootable struct{ kernel, initrd, disk, diskFormat, directCmdline string }

func (b bootable) cmdline(m *build.Manifest) string {
	if b.directCmdline != "" {
		return b.directCmdline
	}
	return m.Cmdline
}

// chooseBoot prepares a disk image's boot: for direct, the kernel and
// command line of the entry systemd-boot would boot, written to tmp; for
// UEFI, a warning when the RAM is below what the EFI stub needs.
func (b *bootable) chooseBoot(rf runFlags, m *build.Manifest, tmp string, stderr io.Writer) error {
	mem, memErr := memoryMiB(rf.memory)
	if rf.boot == "uefi" && (memErr != nil || mem >= 256) {
		return nil
	}
	if b.diskFormat != "" && b.diskFormat != "raw" {
		if rf.boot == "direct" {
			return fmt.Errorf("--boot direct reads the boot entry from a raw disk image, and %s is %s: boot it through UEFI (drop --boot), or build --format disk", b.disk, b.diskFormat)
		}
		return nil
	}
	bt, err := disk.ReadBoot(b.disk)
	if err != nil {
		if rf.boot == "uefi" {
			return nil // the firmware will say what is wrong
		}
		return fmt.Errorf("--boot direct: %w", err)
	}
	if rf.boot == "uefi" {
		if need := kernel.UEFIMinMemoryMiB(bt.Kernel); need > 0 && mem < need {
			fmt.Fprintf(stderr, "warning: --memory %s is likely too little for a UEFI boot of this kernel: its EFI stub needs about %dM under OVMF (docs/ARCHITECTURE.md, \"Smallest RAM\"); --boot direct needs less\n", rf.memory, need)
		}
		return nil
	}
	k, err := bt.WriteKernel(tmp)
	if err != nil {
		return fmt.Errorf("--boot direct: %w", err)
	}
	b.kernel, b.directCmdline = k, bt.Entry.Options
	fmt.Fprintf(stderr, "booting entry %s directly: QEMU loads its kernel, no firmware (boot attempts are not counted)\n", bt.Entry.ID)
	return nil
}

// memoryMiB reads QEMU's -m syntax: a number of MiB, or one with a K, M,
// G or T suffix.
func memoryMiB(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1.0
	if n := len(s); n > 0 {
		switch strings.ToUpper(s[n-1:]) {
		case "K":
			mult, s = 1.0/1024, s[:n-1]
		case "M":
			s = s[:n-1]
		case "G":
			mult, s = 1024, s[:n-1]
		case "T":
			mult, s = 1024*1024, s[:n-1]
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("bad --memory %q: want a size such as 512M or 1G", s)
	}
	return int(f * mult), nil
}

// prepareImage turns run's argument into something to boot, building an
// app dir first.
func prepareImage(ctx context.Context, dir string, bf buildFlags, persist bool, stderr io.Writer) (bootable, *build.Manifest, error) {
	if bf.target != "" {
		return bootable{}, nil, fmt.Errorf("--target %s: run boots UEFI images under QEMU, and QEMU emulates no Raspberry Pi 4 or 5 firmware; build the SD card image (nodeboot build --target pi -o pi.img) and write it with nodeboot write pi.img /dev/sdX", bf.target)
	}
	if _, ok := diskformat.Parse(bf.format); ok {
		return bootable{}, nil, fmt.Errorf("--format %s is for nodeboot build (an image to import elsewhere); run boots --format initramfs or disk, or an image file: nodeboot build --format %s -o app%s, then nodeboot run app%[3]s", bf.format, bf.format, diskformat.Format(bf.format).Ext())
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().IsRegular() {
		f, err := diskformat.Detect(dir)
		if err != nil {
			return bootable{}, nil, err
		}
		if f == diskformat.GCE {
			return bootable{}, nil, fmt.Errorf("%s is a GCE archive (disk.raw in a tar.gz), which QEMU cannot boot: extract it (tar -xzf %s) and run disk.raw", dir, dir)
		}
		// A disk image; its manifest (ports, hostname) if it is beside it.
		m, err := build.ReadManifestFile(build.DiskManifestPath(dir))
		if err != nil {
			m = &build.Manifest{Format: build.FormatDisk, Arch: bf.arch, Apps: []build.AppInfo{{Name: "app", Port: 8080}}}
			fmt.Fprintf(stderr, "no %s beside the image: forwarding port 8080 only\n", build.DiskManifestPath(dir))
		}
		return bootable{disk: dir, diskFormat: f.QEMUName()}, m, nil
	}
	buildDir := dir
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		out, err := buildDirFor(dir)
		if err != nil {
			return bootable{}, nil, err
		}
		if bf.format == build.FormatDisk {
			out = filepath.Join(out, "disk.img")
		}
		o, err := bf.options(dir, out, stderr)
		if err != nil {
			return bootable{}, nil, err
		}
		// run writes this dir again before every boot: it need not be
		// durable, and the edit → run loop is faster without fsync.
		o.Scratch = bf.format != build.FormatDisk
		buildImage := build.Build
		if persist && bf.format == build.FormatDisk {
			// The image file is the VM's disk: rebuild it keeping /data.
			buildImage = func(ctx context.Context, o build.Options) (*build.Result, error) {
				return buildPersisted(ctx, o, stderr)
			}
		}
		res, err := buildImage(ctx, o)
		if err != nil {
			return bootable{}, nil, err
		}
		if res.DiskPath != "" {
			return bootable{disk: res.DiskPath}, res.Manifest, nil
		}
		buildDir = out
	}
	m, err := build.ReadManifest(buildDir)
	if err != nil {
		return bootable{}, nil, fmt.Errorf("%s is not a nodeboot build (%w): pass an app dir, a dir written by `nodeboot build`, or a disk image", buildDir, err)
	}
	return bootable{kernel: filepath.Join(buildDir, "vmlinuz"), initrd: filepath.Join(buildDir, m.Initramfs.Name)}, m, nil
}

// WaitHTTP polls url until it answers with any HTTP status, or done closes.
func WaitHTTP(ctx context.Context, url string, done <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return errors.New("guest stopped")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// APIPort is the management API's port on every node (docs/api.md).
const APIPort = contract.APIPort

// recordLocal names the VM "local" in the project's nodes.json. The project
// is the app dir run was given, or the one around the current directory
// for a build dir or an image; without one the API is only reachable by
// address.
func recordLocal(dir string, apiPort int, stderr io.Writer) {
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	proj := ""
	if st, err := os.Stat(filepath.Join(dir, ".nodeboot")); err == nil && st.IsDir() {
		proj = dir
	} else if p, err := creds.FindProject("."); err == nil {
		proj = p
	}
	if proj == "" {
		fmt.Fprintf(stderr, "management API: https://%s/ (no .nodeboot/ project found to record it in)\n", addr)
		return
	}
	if err := creds.RecordNode(proj, "local", addr); err != nil {
		fmt.Fprintf(stderr, "management API: https://%s/ (not recorded: %v)\n", addr, err)
		return
	}
	fmt.Fprintf(stderr, "management API: https://%s/ = node \"local\" (nodeboot status local)\n", addr)
}
