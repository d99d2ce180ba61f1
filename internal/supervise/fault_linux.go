package supervise

import (
	"time"

	"github.com/nodeboot/nodeboot/internal/kmsg"
)

// faultClock is the kernel log's clock, read before a process starts.
func faultClock() time.Duration { return kmsg.Now() }

// faultFile names the file where a process that died of SIGILL faulted,
// from the kernel's "trap invalid opcode ... in FILE[...]" record logged
// since the process started. The record carries the PID of the initial
// namespace, which the supervisor does not know for a sandboxed app (the
// helper's child), so the newest record since the start is taken: two
// apps dying of SIGILL in the same instant could be confused, and the
// file would then be the other's. A second of slack covers the two
// clocks' drift.
func faultFile(since time.Duration) string {
	t, ok, err := kmsg.LastTrap("invalid opcode", since-time.Second)
	if err != nil || !ok {
		return ""
	}
	return t.File
}
