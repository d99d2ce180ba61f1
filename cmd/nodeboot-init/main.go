//go:build linux

// Command nodeboot-init is PID 1 of a nodeboot image.
package main

import (
	"os"

	"github.com/nodeboot/nodeboot/internal/pid1"
	"github.com/nodeboot/nodeboot/internal/sandbox"
)

func main() {
	// PID 1 starts itself again as each app's sandbox helper: Go cannot
	// run code between fork and exec.
	if len(os.Args) > 1 && os.Args[1] == sandbox.HelperArg {
		sandbox.HelperMain()
	}
	pid1.Main()
}
