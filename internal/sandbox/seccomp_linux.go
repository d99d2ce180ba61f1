package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The filter is an allow list (docs/sandbox.md says why and what node was
// measured to need). It is assembled here rather than by go-seccomp-bpf,
// whose syscall tables it still uses: that library compares every argument
// as 64 bits, and the kernel truncates int arguments (socket's family and
// type, personality's persona) to their low 32 bits, so a rule
// "family == AF_PACKET" let AF_PACKET|1<<32 through. Each argument rule
// here loads the low word only. The program is a binary search over the
// syscall number, so its length grows with the log of the list, and every
// call whose verdict does not depend on its arguments is one the kernel
// (5.11 and later) caches per number and stops running the filter for.

// seccomp return values.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

// seccomp_data offsets: nr, arch, then six 64-bit arguments. The low word
// of an argument is at its offset on little-endian machines, the only ones
// images are built for (checked in filterFor).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// auditArchLE is the little-endian bit of an AUDIT_ARCH_* value.
const auditArchLE = 0x40000000

// A verdict is what the filter does with one syscall number.
type verdict struct {
	ret  uint32            // when args is nil
	args []bpf.Instruction // an argument check ending in returns
}

func (v verdict) equal(w verdict) bool { return v.args == nil && w.args == nil && v.ret == w.ret }

// filterFor assembles the app filter for an architecture: allow lists
// names the config allows back (names of DenyGroups, or socket, clone,
// clone3).
func filterFor(info *arch.Info, allow []string) ([]bpf.Instruction, error) {
	if uint32(info.ID)&auditArchLE == 0 {
		return nil, fmt.Errorf("seccomp: %s is big-endian; the argument rules load the low word at the argument's offset", info.Name)
	}
	verdicts := map[int]verdict{}
	max := 0
	for _, nr := range info.SyscallNames {
		max = maxInt(max, nr)
	}
	for _, name := range slices.Concat(Allowed, allow) {
		if nr, ok := info.SyscallNames[name]; ok {
			verdicts[nr] = verdict{ret: retAllow}
		}
	}
	setRule := func(name string, v verdict) {
		if nr, ok := info.SyscallNames[name]; ok && !slices.Contains(allow, name) {
			verdicts[nr] = v
		}
	}
	setRule("socket", verdict{args: socketRule()})
	setRule("clone", verdict{args: cloneRule()})
	setRule("personality", verdict{args: personalityRule()})
	// clone3 passes its flags in memory, which a filter cannot read.
	// ENOSYS (not EPERM) makes glibc's pthread_create and posix_spawn fall
	// back to clone, as they do on kernels before 5.3.
	setRule("clone3", verdict{ret: retENOSYS})

	// Segments of consecutive numbers with one verdict, covering 0..max;
	// a number no verdict names is refused (EPERM).
	type segment struct {
		lo int
		v  verdict
	}
	var segs []segment
	for nr := 0; nr <= max; nr++ {
		v, ok := verdicts[nr]
		if !ok {
			v = verdict{ret: retEPERM}
		}
		if len(segs) == 0 || !segs[len(segs)-1].v.equal(v) {
			segs = append(segs, segment{nr, v})
		}
	}
	var tree func(segs []segment) []bpf.Instruction
	tree = func(segs []segment) []bpf.Instruction {
		if len(segs) == 1 {
			if segs[0].v.args != nil {
				return segs[0].v.args // ends in returns of its own
			}
			return []bpf.Instruction{bpf.RetConstant{Val: segs[0].v.ret}}
		}
		mid := len(segs) / 2
		left, right := tree(segs[:mid]), tree(segs[mid:])
		k := uint32(segs[mid].lo)
		if len(left) <= 255 {
			return slices.Concat([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: k, SkipTrue: uint8(len(left))}}, left, right)
		}
		// Conditional jumps reach 255 instructions; a long one goes
		// through an unconditional jump.
		return slices.Concat([]bpf.Instruction{
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: k, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(left))},
		}, left, right)
	}
	body := tree(segs)
	prog := []bpf.Instruction{
		// Another ABI (int 0x80 on x86-64) has other numbers: refuse
		// it outright, or a 32-bit call would walk around the list.
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: retEPERM},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		// Above the table: a call newer than this filter knows (and
		// the x32 ABI, whose numbers have bit 30 set). ENOSYS, as an
		// older kernel would say, so that libraries fall back.
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(max), SkipFalse: 1},
		bpf.RetConstant{Val: retENOSYS},
	}
	prog = append(prog, body...)
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: the filter has %d instructions, more than the kernel's %d", len(prog), unix.BPF_MAXINSNS)
	}
	return prog, nil
}

// ldArg loads the low 32 bits of argument i: the whole of an int.
func ldArg(i uint32) bpf.Instruction { return bpf.LoadAbsolute{Off: offArgs + 8*i, Size: 4} }

// oneOf returns a check that allows when the accumulator equals one of
// vals and refuses otherwise.
func oneOf(vals ...uint32) []bpf.Instruction {
	var p []bpf.Instruction
	for i, v := range vals {
		// Skip to the allow at the end: past the remaining compares
		// and the refusal.
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(len(vals) - i)})
	}
	return append(p, bpf.RetConstant{Val: retEPERM}, bpf.RetConstant{Val: retAllow})
}

// socketRule allows the families node uses: unix sockets of every type,
// TCP and UDP over IPv4 and IPv6 (ping sockets too: SOCK_DGRAM), and
// netlink route (os.networkInterfaces). Packet, raw and SOCK_PACKET
// sockets, vsock (the host's side of a VM), AF_ALG and the rest are
// refused whatever the capabilities.
func socketRule() []bpf.Instruction {
	const sockTypeMask = 0xf // the kernel's SOCK_TYPE_MASK; the rest are flags
	inet := slices.Concat([]bpf.Instruction{
		ldArg(1),
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: sockTypeMask},
	}, oneOf(unix.SOCK_STREAM, unix.SOCK_DGRAM))
	netlink := slices.Concat([]bpf.Instruction{ldArg(2)}, oneOf(unix.NETLINK_ROUTE))
	// family: unix → allow; inet, inet6 → inet; netlink → netlink; else refuse.
	head := []bpf.Instruction{
		ldArg(0),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_UNIX, SkipTrue: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6, SkipTrue: 3},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_NETLINK, SkipTrue: 2 + uint8(len(inet))},
		bpf.RetConstant{Val: retEPERM},
		bpf.RetConstant{Val: retAllow},
	}
	return slices.Concat(head, inet, netlink)
}

// cloneRule refuses clone with any namespace flag (on x86-64 and arm64 the
// flags are the first argument; the kernel reads their low 32 bits).
// CLONE_NEWUSER would give the capabilities back; the others fail without
// capabilities anyway, and the filter stays the wall if a check does not.
func cloneRule() []bpf.Instruction {
	const newNS = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
	return []bpf.Instruction{
		ldArg(0),
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: newNS, SkipFalse: 1},
		bpf.RetConstant{Val: retEPERM},
		bpf.RetConstant{Val: retAllow},
	}
}

// personalityRule allows what Docker's profile allows: PER_LINUX,
// PER_LINUX32, UNAME26 and the query; ADDR_NO_RANDOMIZE (no ASLR for what
// the app executes next) and READ_IMPLIES_EXEC are refused.
func personalityRule() []bpf.Instruction {
	return slices.Concat([]bpf.Instruction{ldArg(0)}, oneOf(0x0, 0x8, 0x20000, 0x20008, 0xffffffff))
}

// policy assembles the filter for the running architecture.
func policy(allow []string) ([]bpf.RawInstruction, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	prog, err := filterFor(info, allow)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assembling the filter: %w", err)
	}
	return raw, nil
}

// applySeccomp installs the filter on every thread of the calling process
// (TSYNC: the Go runtime has several); children and node inherit it. The
// caller has set no_new_privs.
func applySeccomp(allow []string) error {
	raw, err := policy(allow)
	if err != nil {
		return err
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return fmt.Errorf("seccomp: loading the filter: %w", e)
	}
	if r != 0 {
		// TSYNC names the thread it could not synchronise.
		return errors.New("seccomp: thread " + fmt.Sprint(r) + " could not take the filter")
	}
	return nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }
