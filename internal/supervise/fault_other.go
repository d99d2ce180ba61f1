//go:build !linux

package supervise

import "time"

// Only Linux has the kernel log the fault's file is read from.
func faultClock() time.Duration            { return 0 }
func faultFile(since time.Duration) string { return "" }
