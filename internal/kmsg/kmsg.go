// Package kmsg reads the kernel's log records (/dev/kmsg) for what PID 1
// reports about an app's death: the line the kernel prints when a process
// dies of a trap it does not handle ("traps: node[312] trap invalid opcode
// ip:... in libvips.so.42[...]"), which names the file whose code faulted.
package kmsg

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Trap is one "traps:" record of the kernel log.
type Trap struct {
	Comm string        // the thread's name, as the kernel printed it
	PID  int           // its PID in the initial PID namespace
	Kind string        // "invalid opcode", "divide error", ... (do_trap's reports only)
	File string        // base name of the file mapped at the faulting address, "" if none
	At   time.Duration // the record's time since boot
}

// ParseRecord reads one /dev/kmsg record ("prio,seq,usec,flags;message",
// Documentation/ABI/testing/dev-kmsg) and returns its trap, if it is one.
// Continuation lines (" KEY=value") after the message are ignored. The
// record comes from the kernel but its thread name from the app, so
// nothing in it is trusted: any malformed record is simply not a trap.
func ParseRecord(rec string) (Trap, bool) {
	head, msg, ok := strings.Cut(rec, ";")
	if !ok {
		return Trap{}, false
	}
	msg, _, _ = strings.Cut(msg, "\n")
	fields := strings.Split(head, ",")
	if len(fields) < 3 {
		return Trap{}, false
	}
	usec, err := strconv.ParseUint(fields[2], 10, 63)
	if err != nil || usec > uint64(math.MaxInt64/int64(time.Microsecond)) {
		return Trap{}, false
	}
	t, ok := parseMessage(msg)
	if !ok {
		return Trap{}, false
	}
	t.At = time.Duration(usec) * time.Microsecond
	return t, true
}

// parseMessage reads the text of do_trap's report (arch/x86/kernel/traps.c):
// "traps: COMM[PID] trap KIND ip:... sp:... error:N in FILE[...]". COMM may
// itself contain "[" and spaces, so the PID is the last "[N]" before " trap ".
func parseMessage(msg string) (Trap, bool) {
	rest, ok := strings.CutPrefix(msg, "traps: ")
	if !ok {
		return Trap{}, false
	}
	i := strings.LastIndex(rest, "] trap ")
	if i < 0 {
		return Trap{}, false
	}
	who, after := rest[:i], rest[i+len("] trap "):]
	j := strings.LastIndexByte(who, '[')
	if j < 0 {
		return Trap{}, false
	}
	pid, err := strconv.Atoi(who[j+1:])
	if err != nil || pid <= 0 {
		return Trap{}, false
	}
	t := Trap{Comm: who[:j], PID: pid}
	k := strings.Index(after, " ip:")
	if k <= 0 {
		return Trap{}, false
	}
	t.Kind = after[:k]
	// print_vma_addr: " in NAME[start+len]" (older kernels) or
	// " in NAME[offset,start+len]"; NAME is the file's base name.
	if m := strings.LastIndex(after, " in "); m >= 0 {
		name := after[m+len(" in "):]
		if b := strings.LastIndexByte(name, '['); b > 0 {
			t.File = name[:b]
		}
	}
	return t, true
}
