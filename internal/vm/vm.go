// Package vm boots an image under QEMU: for `nodeboot run`, the end-to-end
// tests and the benchmark. It owns the console stream, so callers can wait for
// boot markers and learn at once when the guest died or panicked instead of
// waiting out a timeout.
package vm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodeboot/nodeboot/internal/target"
)

// Forward is a host TCP port forwarded to a guest port.
type Forward struct {
	Host, Guest int
}

// Config describes one VM.
type Config struct {
	Kernel  string
	Initrd  string
	Cmdline string
	Memory  string // QEMU -m syntax, e.g. "512M"; default 512M
	CPUs    int    // default 1
	Arch    string // "" = amd64
	// Accel is "auto" (KVM when /dev/kvm is usable, else TCG), "kvm" or "tcg".
	Accel    string
	Forwards []Forward
	// Console receives the guest's serial console (may be nil).
	Console io.Writer
	// QEMU overrides the emulator binary.
	QEMU string

	// Disk attaches a raw disk image as the first virtio disk and, without
	// Kernel, boots it through UEFI firmware. With Kernel (and Cmdline) set
	// too, QEMU loads that kernel itself and the firmware is skipped: a
	// direct kernel boot, which needs less RAM and time than the EFI stub
	// (see disk.ReadBoot). Unless Persist is set, the guest writes to a
	// throwaway copy-on-write overlay and the image stays as it was.
	Disk    string
	Persist bool
	// DiskFormat is QEMU's name of Disk's format: "" or "raw", or qcow2,
	// vmdk, vpc for an image converted by `build --format`.
	DiskFormat string
	// Firmware is the UEFI firmware for Disk; "" finds OVMF.
	Firmware string

	// Machine is QEMU's machine type: "" or MachinePC (the default), or
	// MachineMicroVM, which has no PCI bus and no firmware tables to walk
	// and starts a directly loaded kernel sooner. It needs Kernel (not
	// Disk): microvm has no UEFI firmware.
	Machine string
	// DTB is the device tree QEMU hands a directly loaded kernel
	// (MachineRaspi3b: the Pi's firmware, which would pick it, is not
	// emulated).
	DTB string
	// Drives are raw images attached as further virtio disks (/dev/vda,
	// ... when Disk is empty), each behind a throwaway overlay: the
	// benchmark boots a distribution's root file system this way.
	Drives []string
	// Balloon adds a virtio balloon device, whose memory statistics the
	// host reads with GuestMemory; the guest needs CONFIG_VIRTIO_BALLOON.
	Balloon bool
	// CPU is QEMU's -cpu model under TCG; empty means TCGCPU. Under KVM
	// the guest always gets the host's CPU. The e2e tests set "qemu64" to
	// see how an app that needs a newer CPU fails.
	CPU string
	// RTCBase is QEMU's -rtc base= (e.g. "2001-01-01"): the time the
	// guest's real-time clock starts from; empty means the host's UTC. The
	// clock e2e test starts a guest far in the past, like a board without
	// a battery-backed clock.
	RTCBase string
}

// TCGCPU is the CPU model TCG emulates by default: every feature TCG can
// emulate (SSE4.2, POPCNT, AVX2, BMI, 1 GiB pages, ...). QEMU's own default,
// qemu64, is a 2003 baseline without SSE4.2 or POPCNT: prebuilt addons
// built for any current x86-64 (sharp's libvips, Rust addons built for
// x86-64-v2) die of SIGILL on it (issue 17). The boot time it costs is
// in docs/performance.md.
const TCGCPU = "max"

// Machine types.
const (
	MachinePC      = "pc"
	MachineMicroVM = "microvm"
	// MachineRaspi3b is QEMU's Raspberry Pi 3B (arm64 only): 1 GiB, four
	// Cortex-A53, the SD card as Disk, the kernel and DTB loaded directly
	// (QEMU does not run the Pi's GPU firmware). Its own USB Ethernet
	// (SMSC LAN9514) is not emulated; the network is a USB CDC Ethernet
	// device on its emulated USB host (the Pi kernel's cdc_ether: usb0).
	MachineRaspi3b = "raspi3b"
)

// firmwarePaths are where distributions install OVMF as one file.
var firmwarePaths = []string{
	"/usr/share/ovmf/OVMF.fd",          // Debian, Ubuntu
	"/usr/share/OVMF/OVMF.fd",          //
	"/usr/share/edk2/ovmf/OVMF.fd",     // older Fedora
	"/usr/share/edk2-ovmf/x64/OVMF.fd", // Arch
	"/usr/share/qemu/ovmf-x86_64.bin",  // openSUSE
}

// sameArch tells whether KVM can run arch's guests here.
func sameArch(arch string) bool {
	return cmp.Or(arch, "amd64") == runtime.GOARCH
}

// FindFirmwareFor returns the UEFI firmware for arch's disk images.
func FindFirmwareFor(arch string) (string, error) {
	t, err := target.Lookup(cmp.Or(arch, "amd64"))
	if err != nil {
		return "", err
	}
	if t.Name == "amd64" {
		return FindFirmware()
	}
	for _, p := range t.Firmware {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no UEFI firmware for %s found in %s: install it (Debian/Ubuntu: `sudo apt-get install %s`), or run `make deps`", t.Name, strings.Join(t.Firmware, ", "), t.FirmwarePackage)
}

// FindFirmware returns the UEFI firmware QEMU boots disk images with.
func FindFirmware() (string, error) {
	for _, p := range firmwarePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no UEFI firmware (OVMF) found in %s: install it (Debian/Ubuntu: `sudo apt-get install ovmf`; Fedora: `sudo dnf install edk2-ovmf`), or run `make demo`, which installs it", strings.Join(firmwarePaths, ", "))
}

// VM is a running QEMU.
type VM struct {
	cmd     *exec.Cmd
	dir     string
	qmpPath string
	Accel   string // what was used

	mu      sync.Mutex
	cond    *sync.Cond
	console bytes.Buffer
	exited  bool
	exitErr error
	done    chan struct{}
	started time.Time
}

// ErrNoQEMU says the emulator is missing.
type ErrNoQEMU struct{ Binary string }

func (e *ErrNoQEMU) Error() string {
	return fmt.Sprintf("%s not found: install QEMU (Debian/Ubuntu: `sudo apt-get install qemu-system-x86`; Fedora: `sudo dnf install qemu-system-x86`; macOS: `brew install qemu`), or run `make demo`, which installs it", e.Binary)
}

func qemuBinary(arch string) string {
	if arch == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// FindQEMU returns the path of the emulator for arch.
func FindQEMU(arch string) (string, error) {
	b := qemuBinary(arch)
	p, err := exec.LookPath(b)
	if err != nil {
		return "", &ErrNoQEMU{Binary: b}
	}
	return p, nil
}

// KVMUsable tells whether /dev/kvm can be opened for reading and writing.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortFree tells whether a host port can be bound on 127.0.0.1.
func PortFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("host port %d is busy: %w (pick another with -p HOST:GUEST)", port, err)
	}
	return l.Close()
}

// Args returns QEMU's command line for cfg (without the binary).
func Args(cfg Config, accel, qmpPath string) []string {
	if cfg.Machine == MachineRaspi3b {
		return raspiArgs(cfg, qmpPath)
	}
	mem := cfg.Memory
	if mem == "" {
		mem = "512M"
	}
	cpus := cfg.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	machine := cfg.Machine
	if machine == "" {
		machine = MachinePC
	}
	arm := cfg.Arch == "arm64"
	if arm {
		// arm64 has one machine here: virt (PCI, so the same virtio
		// devices; a PL011 UART as ttyAMA0; UEFI from qemu-efi-aarch64).
		machine = "virt"
	}
	// microvm has no PCI bus: its virtio devices sit on virtio-mmio, which
	// QEMU describes to the kernel (ACPI tables, or virtio_mmio.device= on
	// the command line it appends).
	dev := func(kind string) string {
		if machine == MachineMicroVM {
			return "virtio-" + kind + "-device"
		}
		return "virtio-" + kind + "-pci"
	}
	args := []string{
		"-nodefaults", "-no-user-config",
		"-M", machine,
		"-m", mem,
		"-smp", strconv.Itoa(cpus),
		"-display", "none",
		"-serial", "stdio",
		// Entropy from the host, so node's crypto never waits on an empty pool.
		"-device", dev("rng"),
	}
	if cfg.RTCBase != "" {
		args = append(args, "-rtc", "base="+cfg.RTCBase)
	}
	if cfg.Disk != "" {
		format := cfg.DiskFormat
		if format == "" {
			format = "raw"
		}
		drive := "file=" + cfg.Disk + ",format=" + format + ",if=virtio,cache=unsafe"
		if !cfg.Persist {
			drive += ",snapshot=on"
		} else {
			// Writes reach the image file in order; a killed QEMU then is
			// a power cut, not a lost write cache.
			drive = "file=" + cfg.Disk + ",format=" + format + ",if=virtio,cache=writethrough"
		}
		args = append(args, "-drive", drive)
		if cfg.Kernel == "" {
			args = append(args, "-bios", cfg.Firmware)
		}
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel, "-append", cfg.Cmdline)
		if cfg.Initrd != "" {
			args = append(args, "-initrd", cfg.Initrd)
		}
	}
	for i, d := range cfg.Drives {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=d%d,cache=unsafe,snapshot=on", d, i),
			"-device", dev("blk")+fmt.Sprintf(",drive=d%d", i))
	}
	if cfg.Balloon {
		args = append(args, "-device", dev("balloon")+",id="+balloonID)
	}
	if machine == MachinePC {
		// A hardware watchdog, as a PC has: PID 1 arms it, and a hung
		// kernel or PID 1 resets the guest (on a trial boot after an OS
		// update, that is a failed try). QEMU's default action is reset.
		args = append(args, "-device", "i6300esb")
	}
	if accel == "kvm" {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else if arm {
		t, _ := target.Lookup("arm64")
		args = append(args, "-accel", "tcg", "-cpu", t.QEMUCPU)
	} else {
		// "max" has the 1 GiB pages most x86-64 CPUs since about 2010
		// have; qemu64 needs pdpe1gb=on for them. Without them OVMF
		// reserves 4 MiB more for its page tables, and a UEFI boot needs
		// 145 MiB instead of 141 (docs/ARCHITECTURE.md, "Smallest RAM").
		cpu := cfg.CPU
		if cpu == "" {
			cpu = TCGCPU
		}
		if cpu == "qemu64" {
			cpu = "qemu64,pdpe1gb=on"
		}
		args = append(args, "-accel", "tcg", "-cpu", cpu)
	}
	netdev := "user,id=n0"
	for _, f := range cfg.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.Host, f.Guest)
	}
	args = append(args, "-netdev", netdev, "-device", dev("net")+",netdev=n0")
	if qmpPath != "" {
		args = append(args, "-qmp", "unix:"+qmpPath+",server=on,wait=off")
	}
	return args
}

// raspiArgs are the arguments of a Raspberry Pi 3B: the machine fixes the
// RAM (1 GiB) and CPUs, and its SD card must be a power of two in size.
func raspiArgs(cfg Config, qmpPath string) []string {
	args := []string{
		"-nodefaults", "-no-user-config",
		"-M", MachineRaspi3b,
		"-display", "none",
		// The PL011, where the Pi's cmdline.txt puts the console (as
		// ttyAMA1 with the Pi's device tree, whose serial0 is the mini
		// UART).
		"-serial", "stdio",
		"-kernel", cfg.Kernel, "-dtb", cfg.DTB, "-append", cfg.Cmdline,
	}
	if cfg.Disk != "" {
		drive := "file=" + cfg.Disk + ",format=raw,if=sd,cache=unsafe"
		if !cfg.Persist {
			drive += ",snapshot=on"
		} else {
			drive = "file=" + cfg.Disk + ",format=raw,if=sd,cache=writethrough"
		}
		args = append(args, "-drive", drive)
	}
	netdev := "user,id=n0"
	for _, f := range cfg.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.Host, f.Guest)
	}
	args = append(args, "-netdev", netdev, "-device", "usb-net,netdev=n0")
	if qmpPath != "" {
		args = append(args, "-qmp", "unix:"+qmpPath+",server=on,wait=off")
	}
	return args
}

// Start boots the VM. ctx bounds its whole life: when it is cancelled, QEMU
// is killed.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	bin := cfg.QEMU
	if bin == "" {
		var err error
		if bin, err = FindQEMU(cfg.Arch); err != nil {
			return nil, err
		}
	}
	switch cfg.Machine {
	case "", MachinePC:
		if cfg.Arch == "arm64" && cfg.Machine != "" {
			return nil, fmt.Errorf("arm64 VMs run on QEMU's virt machine, not %s", cfg.Machine)
		}
	case MachineMicroVM:
		if cfg.Disk != "" {
			return nil, errors.New("the microvm machine has no UEFI firmware: boot a disk image with the pc machine, or an initramfs image with microvm")
		}
	case MachineRaspi3b:
		if cfg.Arch != "arm64" || cfg.Kernel == "" || cfg.DTB == "" {
			return nil, errors.New("the raspi3b machine boots an arm64 kernel with its device tree (Kernel, DTB): QEMU does not run the Pi's firmware")
		}
		cfg.Accel = "tcg"
	default:
		return nil, fmt.Errorf("unknown machine type %q: use %s or %s", cfg.Machine, MachinePC, MachineMicroVM)
	}
	if cfg.Disk != "" && cfg.Kernel == "" && cfg.Firmware == "" {
		fw, err := FindFirmwareFor(cfg.Arch)
		if err != nil {
			return nil, err
		}
		cfg.Firmware = fw
	}
	accel := cfg.Accel
	switch accel {
	case "", "auto":
		accel = "tcg"
		if KVMUsable() && !kvmKnownBroken() && sameArch(cfg.Arch) {
			accel = "kvm"
		}
	case "kvm", "tcg":
	default:
		return nil, fmt.Errorf("unknown accelerator %q: use auto, kvm or tcg", accel)
	}
	dir, err := os.MkdirTemp("", "nodeboot-vm-")
	if err != nil {
		return nil, err
	}
	v := &VM{dir: dir, qmpPath: filepath.Join(dir, "qmp.sock"), done: make(chan struct{})}
	v.cond = sync.NewCond(&v.mu)
	v.started = time.Now()
	if err := v.launch(ctx, bin, cfg, accel, cfg.Accel == "" || cfg.Accel == "auto"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return v, nil
}

// launch starts QEMU. With fallback set, a KVM that fails at run time (seen
// with nested virtualisation: /dev/kvm opens, then "KVM internal error" and
// the guest freezes) is remembered and the VM is started again under TCG.
func (v *VM) launch(ctx context.Context, bin string, cfg Config, accel string, fallback bool) error {
	cmd := exec.CommandContext(ctx, bin, Args(cfg, accel, v.qmpPath)...)
	// Its own process group: Ctrl-C in the terminal reaches nodeboot, which
	// powers the guest off cleanly, instead of killing QEMU outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	v.mu.Lock()
	v.cmd, v.Accel = cmd, accel
	v.mu.Unlock()
	var stderr bytes.Buffer
	kvmFailed := make(chan struct{})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderrPipe)
		failed := false
		for sc.Scan() {
			line := sc.Text()
			stderr.WriteString(line + "\n")
			if accel == "kvm" && !failed && strings.Contains(line, "KVM internal error") {
				failed = true
				close(kvmFailed)
			}
		}
	}()
	consoleDone := make(chan struct{})
	go func() {
		v.readConsole(out, cfg.Console)
		close(consoleDone)
	}()
	go func() {
		retry := false
		select {
		case <-kvmFailed:
			retry = fallback
			markKVMBroken()
			cmd.Process.Kill()
		case <-stderrDone:
		}
		err := cmd.Wait()
		<-stderrDone
		<-consoleDone
		if retry {
			v.mu.Lock()
			v.console.Reset()
			v.mu.Unlock()
			if cfg.Console != nil {
				fmt.Fprintln(cfg.Console, "nodeboot: KVM failed on this host (KVM internal error); booting again under TCG")
			}
			if err := v.launch(ctx, bin, cfg, "tcg", false); err == nil {
				return
			}
		}
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		v.mu.Lock()
		v.exited, v.exitErr = true, err
		v.cond.Broadcast()
		v.mu.Unlock()
		os.RemoveAll(v.dir)
		close(v.done)
	}()
	return nil
}

// kvmBrokenPath records that KVM failed at run time on this host, so later
// boots go straight to TCG instead of failing first.
func kvmBrokenPath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "nodeboot", "kvm-broken")
}

func kvmKnownBroken() bool {
	p := kvmBrokenPath()
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

func markKVMBroken() {
	if p := kvmBrokenPath(); p != "" {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("KVM internal error seen; delete this file to try KVM again\n"), 0o644)
	}
}

func (v *VM) readConsole(r io.Reader, tee io.Writer) {
	br := bufio.NewReader(r)
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			// The serial console sends CRLF; keep the log plain.
			chunk := bytes.ReplaceAll(buf[:n], []byte("\r"), nil)
			v.mu.Lock()
			v.console.Write(chunk)
			v.cond.Broadcast()
			v.mu.Unlock()
			if tee != nil {
				tee.Write(chunk)
			}
		}
		if err != nil {
			return
		}
	}
}

// Console returns everything the guest printed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// Tail returns the last n lines of the console, for error messages.
func (v *VM) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(v.Console(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Since is the time since QEMU was started.
func (v *VM) Since() time.Duration { return time.Since(v.started) }

// deadMarkers are console lines after which the guest will not recover,
// with what they mean.
var deadMarkers = []struct{ marker, why string }{
	{"Kernel panic - not syncing", "kernel panic"},
	{"---[ end Kernel panic", "kernel panic"},
	// The firmware then tries its other boot options and stops in its
	// boot manager: no Linux will come. Mostly too little RAM for the stub
	// to decompress the kernel into (docs/ARCHITECTURE.md, "Smallest RAM").
	{"EFI stub: ERROR", "the kernel's EFI stub failed, before Linux started (too little RAM for a UEFI boot? give more --memory, or boot the image with --boot direct)"},
}

// ErrGuestDied is wrapped by WaitFor when QEMU exited, the kernel panicked
// or the kernel's EFI stub failed.
var ErrGuestDied = errors.New("guest died")

// WaitFor waits until the console contains marker (after byte offset from),
// and returns the offset just past it. It fails at once when the guest
// panics or QEMU exits, with the console's tail in the error.
func (v *VM) WaitFor(ctx context.Context, marker string, from int) (int, error) {
	stop := context.AfterFunc(ctx, func() {
		v.mu.Lock()
		v.cond.Broadcast()
		v.mu.Unlock()
	})
	defer stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		s := v.console.String()
		if from > len(s) {
			from = len(s)
		}
		if i := strings.Index(s[from:], marker); i >= 0 {
			return from + i + len(marker), nil
		}
		for _, d := range deadMarkers {
			if strings.Contains(s, d.marker) {
				return 0, fmt.Errorf("%w: %s, while waiting for %q\n%s", ErrGuestDied, d.why, marker, tailOf(s, 40))
			}
		}
		if v.exited {
			return 0, fmt.Errorf("%w: QEMU exited (%v) while waiting for %q\n%s", ErrGuestDied, v.exitErr, marker, tailOf(s, 40))
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("waiting for %q: %w\n%s", marker, err, tailOf(s, 40))
		}
		v.cond.Wait()
	}
}

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- console tail ---\n" + strings.Join(lines, "\n")
}

// Done is closed when QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// Err is QEMU's exit error once Done is closed.
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitErr
}

// Kill ends QEMU at once: a hard power cut.
func (v *VM) Kill() {
	v.mu.Lock()
	cmd := v.cmd
	v.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Kill()
	}
	<-v.done
}

// Powerdown presses the ACPI power button through QMP, as a user would on
// real hardware; the init stops the apps and powers off.
func (v *VM) Powerdown() error {
	return v.qmp("system_powerdown")
}

// Shutdown presses the power button and waits up to timeout for QEMU to
// exit, then kills it.
func (v *VM) Shutdown(timeout time.Duration) error {
	if err := v.Powerdown(); err != nil {
		v.Kill()
		return err
	}
	select {
	case <-v.done:
		return nil
	case <-time.After(timeout):
		v.Kill()
		return fmt.Errorf("guest did not power off within %v; killed QEMU", timeout)
	}
}

// qmp runs one QMP command without arguments.
func (v *VM) qmp(command string) error {
	_, err := v.QMP(command, nil)
	return err
}

// QMP runs one QMP command with arguments (nil for none) and returns its
// "return" value.
func (v *VM) QMP(command string, arguments any) (json.RawMessage, error) {
	var c net.Conn
	var err error
	for i := 0; i < 50; i++ {
		if c, err = net.Dial("unix", v.qmpPath); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	type request struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}
	var ret json.RawMessage
	for _, req := range []request{{Execute: "qmp_capabilities"}, {Execute: command, Arguments: arguments}} {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", req.Execute, err)
		}
		if _, err := c.Write(append(b, '\n')); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", req.Execute, err)
		}
		for {
			var resp map[string]json.RawMessage
			if err := dec.Decode(&resp); err != nil {
				return nil, fmt.Errorf("QMP %s: %w", req.Execute, err)
			}
			if e, ok := resp["error"]; ok {
				return nil, fmt.Errorf("QMP %s: %s", req.Execute, e)
			}
			if r, ok := resp["return"]; ok {
				ret = r
				break
			}
			// Asynchronous events come in between; skip them.
		}
	}
	return ret, nil
}

// balloonID names the balloon device for qom-set and qom-get.
const balloonID = "balloon0"

// balloonPath is the balloon device's QOM path.
const balloonPath = "/machine/peripheral/" + balloonID

// StartMemoryStats asks the guest's balloon driver to report its memory
// statistics every interval (Config.Balloon must be set).
func (v *VM) StartMemoryStats(interval time.Duration) error {
	secs := int(interval / time.Second)
	if secs < 1 {
		secs = 1
	}
	_, err := v.QMP("qom-set", map[string]any{"path": balloonPath, "property": "guest-stats-polling-interval", "value": secs})
	return err
}

// GuestMemory is the guest's own view of its memory, from the balloon
// driver's statistics.
type GuestMemory struct {
	Total, Available int64 // bytes; Available is MemAvailable
	Updated          int64 // guest's last report, seconds since the epoch (0: none yet)
}

// Used is Total - Available: what the guest's kernel counts as in use.
func (m GuestMemory) Used() int64 { return m.Total - m.Available }

// ReadGuestMemory returns the balloon driver's last report.
func (v *VM) ReadGuestMemory() (GuestMemory, error) {
	ret, err := v.QMP("qom-get", map[string]any{"path": balloonPath, "property": "guest-stats"})
	if err != nil {
		return GuestMemory{}, err
	}
	return ParseGuestStats(ret)
}

// ParseGuestStats reads QEMU's guest-stats property. A statistic the guest
// does not report is -1 there; that is an error here.
func ParseGuestStats(b []byte) (GuestMemory, error) {
	var gs struct {
		Stats      map[string]int64 `json:"stats"`
		LastUpdate int64            `json:"last-update"`
	}
	if err := json.Unmarshal(b, &gs); err != nil {
		return GuestMemory{}, fmt.Errorf("balloon guest-stats: %w", err)
	}
	m := GuestMemory{Total: gs.Stats["stat-total-memory"], Available: gs.Stats["stat-available-memory"], Updated: gs.LastUpdate}
	if m.Updated == 0 {
		return m, errors.New("balloon guest-stats: the guest has not reported yet")
	}
	if m.Total <= 0 || m.Available < 0 || m.Available > m.Total {
		return m, fmt.Errorf("balloon guest-stats: total %d, available %d: the guest's balloon driver does not report them", m.Total, m.Available)
	}
	return m, nil
}
