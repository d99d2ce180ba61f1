package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// BenchmarkFilter measures what one system call costs under no filter, a
// deny list of the shape the sandbox had before (go-seccomp-bpf, allow by
// default, 64-bit argument rules) and the allow list. A filter cannot be
// removed once loaded, so each case runs in a child process of its own,
// which times b.N calls and prints the nanoseconds per call.
//
//	getppid: a call whose verdict needs no argument; kernels since 5.11
//	         cache such verdicts per number and skip the filter.
//	socket:  socket(AF_UNIX)+close: the filter runs its argument rule.
func BenchmarkFilter(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, call := range []string{"getppid", "socket"} {
		for _, mode := range []string{"none", "denylist", "allowlist"} {
			b.Run(call+"/"+mode, func(b *testing.B) {
				cmd := exec.Command(exe)
				cmd.Env = []string{fmt.Sprintf("%s=bench:%s:%s:%d", probeEnv, mode, call, b.N)}
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
				if err != nil {
					b.Fatalf("child said %q", out)
				}
				b.ReportMetric(ns, "ns/call")
				b.ReportMetric(0, "ns/op") // the parent only waits
			})
		}
	}
}

// benchChild runs in the child: "bench:<mode>:<call>:<n>".
func benchChild(arg string) {
	f := strings.Split(arg, ":")
	if len(f) != 4 {
		fmt.Println("bad bench argument", arg)
		os.Exit(1)
	}
	mode, call := f[1], f[2]
	n, _ := strconv.Atoi(f[3])
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	var err error
	switch mode {
	case "none":
	case "denylist":
		err = loadDenyList()
	case "allowlist":
		err = applySeccomp(nil)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		switch call {
		case "getppid":
			unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		case "socket":
			fd, _, _ := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0)
			unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}
	}
	fmt.Println(float64(time.Since(start).Nanoseconds()) / float64(max(n, 1)))
	os.Exit(0)
}

// loadDenyList loads a filter of the shape the sandbox had before the
// allow list (denyListPolicy): the deny groups, then the socket and clone
// argument rules, everything else allowed.
func loadDenyList() error {
	return seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: *denyListPolicy()})
}

func denyListPolicy() *seccomp.Policy {
	var names []string
	info := archInfo()
	for _, n := range Denied(nil) {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	var conds []seccomp.NameWithConditions
	conds = append(conds, seccomp.NameWithConditions{Name: "socket", Conditions: []seccomp.Condition{
		{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_PACKET}}})
	for _, af := range []uint64{unix.AF_INET, unix.AF_INET6} {
		for _, fl := range []uint64{0, unix.SOCK_NONBLOCK, unix.SOCK_CLOEXEC, unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC} {
			conds = append(conds, seccomp.NameWithConditions{Name: "socket", Conditions: []seccomp.Condition{
				{Argument: 0, Operation: seccomp.Equal, Value: af},
				{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW | fl}}})
		}
	}
	conds = append(conds, seccomp.NameWithConditions{Name: "clone", Conditions: []seccomp.Condition{
		{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWUSER}}})
	return &seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{
		{Names: names, Action: seccomp.ActionErrno},
		{NamesWithCondtions: conds, Action: seccomp.ActionErrno},
	}}
}

func archInfo() *arch.Info {
	info, err := arch.GetInfo("")
	if err != nil {
		panic(err)
	}
	return info
}

// TestFilterPathLength counts the BPF instructions a call runs through
// in the old deny list's shape and in the allow list (docs/sandbox.md
// quotes them). It logs and asserts no figure; it fails only on an
// instruction it cannot interpret.
func TestFilterPathLength(t *testing.T) {
	info := archInfo()
	allowProg, err := policy(nil)
	if err != nil {
		t.Fatal(err)
	}
	denyProg, err := denyListPolicy().Assemble()
	if err != nil {
		t.Fatal(err)
	}
	denyRaw, err := bpf.Assemble(denyProg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		call string
		args []uint64
	}{
		{"read", nil}, {"futex", nil}, {"epoll_pwait", nil}, {"getppid", nil}, {"openat", nil},
		{"socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM}}, {"socket", []uint64{unix.AF_INET6, unix.SOCK_STREAM}},
		{"clone", []uint64{unix.CLONE_VM | unix.CLONE_THREAD}}, {"mount", nil},
	} {
		data := make([]byte, 64)
		binary.LittleEndian.PutUint32(data[0:], uint32(info.SyscallNames[c.call]))
		binary.LittleEndian.PutUint32(data[4:], uint32(info.ID))
		for i, a := range c.args {
			binary.LittleEndian.PutUint64(data[16+8*i:], a)
		}
		_, nAllow := runCounting(t, allowProg, data)
		_, nDeny := runCounting(t, denyRaw, data)
		t.Logf("%-12s %v: deny list %3d instructions, allow list %3d", c.call, c.args, nDeny, nAllow)
	}
	t.Logf("program length: deny list %d, allow list %d", len(denyRaw), len(allowProg))
}

// runCounting interprets a seccomp program on native (little-endian)
// seccomp_data and returns its verdict and how many instructions ran.
func runCounting(t *testing.T, prog []bpf.RawInstruction, data []byte) (uint32, int) {
	t.Helper()
	var acc uint32
	for pc, n := 0, 1; pc < len(prog); n++ {
		in := prog[pc]
		switch in.Op {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K, n
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var ok bool
			switch in.Op &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = acc == in.K
			case unix.BPF_JGT:
				ok = acc > in.K
			case unix.BPF_JGE:
				ok = acc >= in.K
			case unix.BPF_JSET:
				ok = acc&in.K != 0
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("instruction %d: op %#x not interpreted", pc, in.Op)
		}
		pc++
	}
	t.Fatal("the program ran off its end")
	return 0, 0
}
