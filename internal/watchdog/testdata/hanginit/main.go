// hanginit is a PID 1 for the watchdog's QEMU test: it arms the watchdog,
// feeds it for longer than its timeout, then stops as a hung PID 1 would.
package main

import (
	"fmt"
	"syscall"
	"time"

	"github.com/nodeboot/nodeboot/internal/watchdog"
)

func main() {
	syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	fmt.Println("HANG-START")
	dev, timeout, err := watchdog.Open(watchdog.Path, 4*time.Second)
	if err != nil {
		fmt.Println("HANG-FAIL", err)
		hang()
	}
	fmt.Println("HANG-ARMED", timeout)
	for end := time.Now().Add(3 * timeout); time.Now().Before(end); time.Sleep(time.Second) {
		if err := dev.Keepalive(); err != nil {
			fmt.Println("HANG-FAIL", err)
		}
	}
	fmt.Println("HANG-FED")
	hang()
}

// hang blocks for good without looking deadlocked to the Go runtime, which
// would exit (and so panic the kernel) on a bare select{}.
func hang() {
	for {
		time.Sleep(time.Hour)
	}
}
