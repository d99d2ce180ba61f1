package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Paths inside the floor's initramfs (bench/floor.go lays them out).
const (
	nodePath = "/usr/bin/node"
	appEntry = "/app/server.js"
)

func main() {
	// The kernel opens /dev/console for init only if it exists in the
	// initramfs; this one has no device nodes, so mount devtmpfs first.
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err == nil {
		if fd, err := unix.Open("/dev/console", unix.O_RDWR, 0); err == nil {
			for i := 0; i < 3; i++ {
				unix.Dup2(fd, i)
			}
		}
	}
	unix.Mount("proc", "/proc", "proc", 0, "")
	stamp("floor: init started")
	if err := network(); err != nil {
		stamp("floor: network: " + err.Error())
	} else {
		stamp("floor: network configured")
	}
	env := []string{"PORT=8080", "NODE_ENV=production", "HOME=/", "PATH=/usr/bin"}
	err := unix.Exec(nodePath, []string{"node", appEntry}, env)
	// PID 1 must not exit (the kernel would panic): say why and wait.
	stamp(fmt.Sprintf("floor: exec %s: %v", nodePath, err))
	for {
		time.Sleep(time.Hour)
	}
}

// network brings lo and eth0 up, eth0 with QEMU user networking's address.
func network() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	eth, err := netlink.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 0, 2, 15), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("eth0 address: %w", err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	return nil
}

// stamp writes msg to the console with the kernel's timestamp format, so
// the harness reads the floor's phases the way it reads nodeboot's. It does
// not go through /dev/kmsg, which `quiet` would silence.
func stamp(msg string) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	fmt.Fprintf(os.Stdout, "[%5d.%06d] %s\n", ts.Sec, ts.Nsec/1000, msg)
}
