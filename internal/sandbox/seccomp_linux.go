package sandbox

import (
	"fmt"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// A deny list (allow by default, EPERM for the dangerous set) and not an
// allow list: node, V8's JIT, libuv, glibc and native addons call hundreds
// of syscalls that change between versions (rseq, clone3, statx, futex_waitv,
// io_pgetevents...); an allow list breaks apps on a node or glibc upgrade in
// ways only seen at run time. What must never happen is what this list
// holds, and the capability drop already refuses most of it; the filter is
// the wall that still stands if a kernel bug makes a capability check pass.

// policy builds the seccomp policy for the running architecture.
func policy(allow []string) (*seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	var names []string
	for _, n := range Denied(allow) {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	groups := []seccomp.SyscallGroup{{Names: names, Action: seccomp.ActionErrno}}

	var conds []seccomp.NameWithConditions
	if !contains(allow, "socket") {
		conds = append(conds, seccomp.NameWithConditions{Name: "socket", Conditions: []seccomp.Condition{
			{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_PACKET}}})
		// Raw IP sockets; netlink sockets are SOCK_RAW too, and
		// os.networkInterfaces() needs those. The type argument carries
		// SOCK_NONBLOCK and SOCK_CLOEXEC as well; the filter can only
		// compare, so each combination is listed.
		for _, af := range []uint64{unix.AF_INET, unix.AF_INET6} {
			for _, fl := range []uint64{0, unix.SOCK_NONBLOCK, unix.SOCK_CLOEXEC, unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC} {
				conds = append(conds, seccomp.NameWithConditions{Name: "socket", Conditions: []seccomp.Condition{
					{Argument: 0, Operation: seccomp.Equal, Value: af},
					{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW | fl}}})
			}
		}
	}
	if !contains(allow, "clone") {
		// On x86-64 and arm64 clone's flags are its first argument.
		conds = append(conds, seccomp.NameWithConditions{Name: "clone", Conditions: []seccomp.Condition{
			{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWUSER}}})
	}
	if len(conds) > 0 {
		groups = append(groups, seccomp.SyscallGroup{NamesWithCondtions: conds, Action: seccomp.ActionErrno})
	}
	if !contains(allow, "clone3") {
		// clone3 passes its flags in memory, which a filter cannot read.
		// ENOSYS (not EPERM) makes glibc's pthread_create and posix_spawn
		// fall back to clone, as they do on kernels before 5.3.
		groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: seccomp.Action(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))})
	}
	return &seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}, nil
}

// applySeccomp installs the filter on every thread of the calling process
// (TSYNC: the Go runtime has several); children and node inherit it.
func applySeccomp(allow []string) error {
	p, err := policy(allow)
	if err != nil {
		return err
	}
	if err := seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: *p}); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return denyForeignArch()
}

// denyForeignArch adds a second filter that refuses every syscall made
// through another ABI (int 0x80 on x86-64): the library's filter allows
// those by default, which would let a 32-bit call walk around the list.
func denyForeignArch() error {
	info, err := arch.GetInfo("")
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: uint32(info.ID)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return fmt.Errorf("seccomp: foreign-ABI filter: %w", e)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
