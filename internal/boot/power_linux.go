package boot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/crash"
)

// Action is what to do when the system goes down.
type Action int

const (
	PowerOff Action = iota
	Reboot
	// RebootTryboot reboots a Raspberry Pi with the firmware's tryboot
	// flag: the one boot of the slot an OS update armed.
	RebootTryboot
)

func (a Action) String() string {
	switch a {
	case Reboot:
		return "reboot"
	case RebootTryboot:
		return "reboot (tryboot)"
	}
	return "power off"
}

// IsReboot says whether a restarts the machine.
func (a Action) IsReboot() bool { return a == Reboot || a == RebootTryboot }

// TrybootArg is reboot(2)'s argument for a tryboot: the Pi's firmware
// driver (raspberrypi-firmware's reboot notifier) reads "tryboot" from it
// and sets the flag the bootloader honours once; the leading "0" is the
// boot partition argument the Pi's `reboot "0 tryboot"` passes too.
const TrybootArg = "0 tryboot"

// PowerEvents delivers power-off and reboot requests: SIGTERM and SIGUSR2
// (power off), SIGINT (ctrl-alt-del, once the kernel is told to signal PID 1
// instead of rebooting hard) and SIGUSR1 (reboot), and the ACPI power button,
// which the kernel reports as KEY_POWER on an evdev device: there is no acpid
// in the image to turn it into anything else.
func PowerEvents(log func(string, ...any)) <-chan Action {
	ch := make(chan Action, 4)
	// Ctrl-alt-del: send SIGINT to PID 1 rather than an immediate reboot, so
	// services are stopped and file systems synced first.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil && os.Getpid() == 1 {
		log("ctrl-alt-del: %v", err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
	crash.Go("power signals", func() {
		for s := range sigs {
			a := PowerOff
			if s == unix.SIGINT || s == unix.SIGUSR1 {
				a = Reboot
			}
			log("received %v: %v", s, a)
			ch <- a
		}
	})
	crash.Go("power buttons", func() { watchPowerButtons(ch, log) })
	return ch
}

// watchPowerButtons finds input devices that have KEY_POWER and forwards a
// press. Devices are looked up once at boot: the ACPI button is built in, not
// hot-plugged.
func watchPowerButtons(ch chan<- Action, log func(string, ...any)) {
	devs, _ := filepath.Glob("/sys/class/input/event*")
	for _, d := range devs {
		name, _ := os.ReadFile(filepath.Join(d, "device", "name"))
		if !hasPowerKey(filepath.Join(d, "device", "capabilities", "key")) {
			continue
		}
		dev := "/dev/input/" + filepath.Base(d)
		f, err := os.Open(dev)
		if err != nil {
			log("power button %s: %v", dev, err)
			continue
		}
		log("listening for the power button on %s (%s)", dev, strings.TrimSpace(string(name)))
		crash.Go("power button "+dev, func() { readPowerKey(f, ch, log) })
	}
}

const keyPower = 116 // KEY_POWER in linux/input-event-codes.h

// hasPowerKey parses the capability bitmap sysfs prints as space-separated
// hex words, most significant first, each the width of a C long.
func hasPowerKey(capPath string) bool {
	b, err := os.ReadFile(capPath)
	if err != nil {
		return false
	}
	words := strings.Fields(string(b))
	const bits = 64
	idx := len(words) - 1 - keyPower/bits
	if idx < 0 {
		return false
	}
	var w uint64
	for _, c := range words[idx] {
		w <<= 4
		switch {
		case c >= '0' && c <= '9':
			w |= uint64(c - '0')
		case c >= 'a' && c <= 'f':
			w |= uint64(c-'a') + 10
		}
	}
	return w&(1<<(keyPower%bits)) != 0
}

func readPowerKey(f *os.File, ch chan<- Action, log func(string, ...any)) {
	defer f.Close()
	// struct input_event on 64-bit: timeval (16 bytes), type u16, code u16, value s32.
	r := bufio.NewReader(f)
	var ev [24]byte
	for {
		if _, err := io.ReadFull(r, ev[:]); err != nil {
			log("power button: %v", err)
			return
		}
		typ := binary.LittleEndian.Uint16(ev[16:])
		code := binary.LittleEndian.Uint16(ev[18:])
		val := int32(binary.LittleEndian.Uint32(ev[20:]))
		const evKey = 1
		if typ == evKey && code == keyPower && val == 1 {
			log("power button pressed: power off")
			ch <- PowerOff
		}
	}
}

// Halt ends the system: sync, unmount what can be unmounted, then power off
// or reboot. It does not return. flush waits for the console: log lines are
// written asynchronously (a slow serial port never blocks PID 1), and
// without it the last lines, "system halted" among them, are lost to the
// reboot.
func Halt(a Action, log func(string, ...any), flush func()) {
	unix.Sync()
	unmountAll(log)
	unix.Sync()
	log("system halted: %v", a)
	flush()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if a == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	for {
		var err error
		if a == RebootTryboot {
			err = reboot2(TrybootArg)
		} else {
			err = unix.Reboot(cmd)
		}
		if err != nil {
			log("reboot(2): %v", err)
		}
		time.Sleep(time.Second)
	}
}

// unmountAll unmounts every mount in reverse order of /proc/self/mounts,
// except the kernel's own, so that /data's journal is clean. Busy file
// systems are remounted read-only instead.
func unmountAll(log func(string, ...any)) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 3 {
			continue
		}
		target, fstype := f[1], f[2]
		switch fstype {
		case "proc", "sysfs", "devtmpfs", "devpts", "cgroup2", "rootfs":
			continue
		}
		if target == "/" {
			continue
		}
		if err := unix.Unmount(target, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				for _, h := range Holders("/proc", target) {
					log("%s busy: %s", target, h)
				}
			}
			if rerr := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
				log("unmount %s: %v; remount read-only: %v", target, err, rerr)
			} else {
				log("unmount %s: %v; remounted read-only", target, err)
			}
			continue
		}
		log("unmounted %s", target)
	}
}

// reboot2 is reboot(2) with LINUX_REBOOT_CMD_RESTART2 and an argument,
// which x/sys/unix's Reboot does not pass.
func reboot2(arg string) error {
	p, err := unix.BytePtrFromString(arg)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2,
		unix.LINUX_REBOOT_CMD_RESTART2, uintptr(unsafe.Pointer(p)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
