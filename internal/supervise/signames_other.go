//go:build !linux

package supervise

import "syscall"

// Only Linux runs services; elsewhere signals are shown by number, which
// keeps the portable parts of the package compiling.
var signalNames = map[syscall.Signal]string{}

const (
	sigRTMin syscall.Signal = -1
	sigRTMax syscall.Signal = -2
)
