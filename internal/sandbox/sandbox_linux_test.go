package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The test binary plays both parts a real image has: the helper (argv[1]
// is HelperArg, as PID 1 starts it) and the sandboxed app (probeEnv set),
// which tries what a hostile app would and prints what happened.
const probeEnv = "NODEBOOT_SANDBOX_PROBE"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HelperArg {
		HelperMain()
	}
	switch v := os.Getenv(probeEnv); {
	case strings.HasPrefix(v, "bench:"):
		benchChild(v)
	case v == "":
	case v == "net":
		probeNet()
		os.Exit(0)
	case v == "filter":
		probeFilter()
		os.Exit(0)
	default:
		probe()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// probe runs inside the sandbox. Each result is "ok" or the errno's name.
func probe() {
	res := map[string]string{}
	errStr := func(err error) string {
		if err == nil {
			return "ok"
		}
		var en syscall.Errno
		if errors.As(err, &en) {
			return unix.ErrnoName(en)
		}
		return err.Error()
	}
	base := os.Getenv("BASE")
	write := func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) }
	res["uid"] = fmt.Sprint(os.Getuid(), os.Getgid(), len(mustGroups()))
	res["writeRoot"] = errStr(write("/nodeboot-test"))
	res["writeEtc"] = errStr(write("/etc/nodeboot-test"))
	res["writeCode"] = errStr(write(filepath.Join(base, "apps/app/new")))
	res["writeState"] = errStr(write(filepath.Join(base, "data/state/app/new")))
	res["writePersist"] = errStr(write(filepath.Join(base, "apps/app/uploads/new")))
	res["writeTmp"] = errStr(write("/tmp/new"))
	_, err := os.ReadFile(filepath.Join(base, "hide/api/node.key"))
	res["readKey"] = errStr(err)
	_, err = os.ReadFile(filepath.Join(base, "data/state/other/secret"))
	res["readOther"] = errStr(err)
	ents, _ := os.ReadDir(filepath.Join(base, "apps"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	res["listApps"] = strings.Join(names, ",")
	// The app's socket to PID 1: its own reachable, read-only; the
	// others' dirs gone.
	if c, err := net.Dial("unix", filepath.Join(base, "run/app/app/api.sock")); err == nil {
		c.Close()
		res["apiConnect"] = "ok"
	} else {
		res["apiConnect"] = err.Error()
	}
	_, err = os.Stat(filepath.Join(base, "run/app/other"))
	res["apiOther"] = errStr(err)
	res["apiWrite"] = errStr(write(filepath.Join(base, "run/app/app/new")))
	procs, _ := filepath.Glob("/proc/[0-9]*")
	res["procCount"] = fmt.Sprint(len(procs))
	res["mount"] = errStr(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	res["unshareUser"] = errStr(unix.Unshare(unix.CLONE_NEWUSER))
	_, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	res["packetSocket"] = errStr(err)
	_, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	res["rawSocket"] = errStr(err)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	res["tcpSocket"] = errStr(err)
	fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err == nil {
		unix.Close(fd)
	}
	res["netlinkSocket"] = errStr(err)
	res["ptrace"] = errStr(unix.PtraceAttach(1))
	res["reboot"] = errStr(unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF))
	_, _, e := unix.Syscall(unix.SYS_FINIT_MODULE, 0, 0, 0)
	res["finitModule"] = errStr(errnoOrNil(e))
	_, _, e = unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0)
	res["keyctl"] = errStr(errnoOrNil(e))
	_, _, e = unix.Syscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
	res["ioUring"] = errStr(errnoOrNil(e))
	_, _, e = unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	res["clone3"] = errStr(errnoOrNil(e))
	res["kill1"] = errStr(unix.Kill(1, unix.SIGKILL))
	st, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(st), "\n") {
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp"} {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				res[k] = strings.TrimSpace(v)
			}
		}
	}
	cg, _ := os.ReadFile("/proc/self/cgroup")
	// The v2 line (hosts with v1 hierarchies have more lines).
	for _, l := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		if strings.HasPrefix(l, "0::") {
			res["cgroup"] = l
		}
	}
	suid := filepath.Join(base, "data/state/app/suid")
	if err := write(suid); err == nil {
		res["chmodSuid"] = errStr(os.Chmod(suid, 0o4755))
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == filepath.Join(base, "data/state/app") {
			res["stateMountOpts"] = f[5]
		}
	}
	for k, v := range bypasses() {
		res["bypass_"+k] = v
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// bypasses are the calls a filter must refuse whatever the capabilities:
// each was open, or open with high bits in an int argument (the kernel
// truncates those to 32 bits; a filter comparing 64 bits did not). Every
// call is harmless if it went through.
func bypasses() map[string]string {
	res := map[string]string{}
	call := func(name string, nr uintptr, a ...uintptr) {
		var args [6]uintptr
		copy(args[:], a)
		r, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
		if e != 0 {
			res[name] = unix.ErrnoName(e)
			return
		}
		res[name] = "ok"
		switch nr {
		case unix.SYS_SOCKET, unix.SYS_MEMFD_CREATE:
			unix.Close(int(r))
		case unix.SYS_PERSONALITY:
			unix.Syscall(unix.SYS_PERSONALITY, r, 0, 0) // back as it was
		}
	}
	const high = 1 << 32
	call("packetHigh", unix.SYS_SOCKET, high|unix.AF_PACKET, unix.SOCK_RAW, 0)
	call("packet", unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_DGRAM, 0)
	call("rawHigh", unix.SYS_SOCKET, high|unix.AF_INET, high|unix.SOCK_RAW, unix.IPPROTO_ICMP)
	call("rawFlags", unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	call("sockPacket", unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_PACKET, 0)
	call("vsock", unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	call("vsockHigh", unix.SYS_SOCKET, high|unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	call("alg", unix.SYS_SOCKET, unix.AF_ALG, unix.SOCK_SEQPACKET, 0)
	name, _ := unix.BytePtrFromString("x")
	call("memfdCreate", unix.SYS_MEMFD_CREATE, uintptr(unsafePointer(name)), unix.MFD_CLOEXEC)
	empty, _ := unix.BytePtrFromString("")
	call("execveat", unix.SYS_EXECVEAT, ^uintptr(0), uintptr(unsafePointer(empty)), 0, 0, unix.AT_EMPTY_PATH)
	call("personalityNoASLR", unix.SYS_PERSONALITY, 0x0040000)        // ADDR_NO_RANDOMIZE
	call("personalityReadExec", unix.SYS_PERSONALITY, high|0x0400000) // READ_IMPLIES_EXEC
	call("cloneNewUserHigh", unix.SYS_CLONE, high|unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), ^uintptr(0))
	call("unshareUser", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	call("mount", unix.SYS_MOUNT, 0, 0, 0, 0, 0)
	call("bpf", unix.SYS_BPF, 0, 0, 0)
	call("ioUring", unix.SYS_IO_URING_SETUP, 1, 0)
	call("clone3", unix.SYS_CLONE3, 0, 0)
	call("processMadvise", unix.SYS_PROCESS_MADVISE, ^uintptr(0), 0, 0, 0, 0)
	// What node needs stays open.
	call("unix", unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	call("tcp6", unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	call("udp", unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	call("netlinkRoute", unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	call("personalityQuery", unix.SYS_PERSONALITY, 0xffffffff)
	call("getpid", unix.SYS_GETPID)
	return res
}

// wantBypasses is what bypasses must give under the filter.
var wantBypasses = map[string][]string{
	"packetHigh": {"EPERM"}, "packet": {"EPERM"}, "rawHigh": {"EPERM"}, "rawFlags": {"EPERM"},
	"sockPacket": {"EPERM"}, "vsock": {"EPERM"}, "vsockHigh": {"EPERM"}, "alg": {"EPERM"},
	"memfdCreate": {"EPERM"}, "execveat": {"EPERM"},
	"personalityNoASLR": {"EPERM"}, "personalityReadExec": {"EPERM"},
	"cloneNewUserHigh": {"EPERM"}, "unshareUser": {"EPERM"}, "mount": {"EPERM"}, "bpf": {"EPERM"},
	"ioUring": {"EPERM"}, "clone3": {"ENOSYS"}, "processMadvise": {"EPERM"},
	"unix": {"ok"}, "tcp6": {"ok"}, "udp": {"ok"}, "netlinkRoute": {"ok"}, "personalityQuery": {"ok"}, "getpid": {"ok"},
}

// probeFilter installs the app filter on itself, keeping every
// capability (it runs as root), so that only the filter can refuse.
func probeFilter() {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println(err)
		return
	}
	if err := applySeccomp(nil); err != nil {
		fmt.Println(err)
		return
	}
	json.NewEncoder(os.Stdout).Encode(bypasses())
}

// TestFilterBypasses runs the real filter in a process that keeps all
// its capabilities and checks that every known bypass is refused by the
// filter itself (not by a missing capability), while the sockets and
// calls node makes stay open.
func TestFilterBypasses(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the bypasses need capabilities to succeed without the filter: run as root")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{probeEnv + "=filter"}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("filter probe: %v\n%s", err, out)
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("filter probe said %q: %v", out, err)
	}
	for k, w := range wantBypasses {
		if !contains(w, res[k]) {
			t.Errorf("%s = %q under the filter, want one of %q", k, res[k], w)
		}
	}
}

// probeNet prints the network interfaces the app sees: "name up|down".
func probeNet() {
	ifs, _ := net.Interfaces()
	var out []string
	for _, i := range ifs {
		st := "down"
		if i.Flags&net.FlagUp != 0 {
			st = "up"
		}
		out = append(out, i.Name+" "+st)
	}
	fmt.Println(strings.Join(out, ","))
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func mustGroups() []int {
	g, _ := os.Getgroups()
	return g
}

// TestSandbox builds a real sandbox around the test binary (namespaces,
// mounts, capability drop, Landlock, seccomp) and checks from inside that
// each escape fails and that the app's own dirs work.
func TestSandbox(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("building a sandbox needs root")
	}
	// Not under /tmp: the sandbox mounts its own /tmp over it.
	base, err := os.MkdirTemp("/var/tmp", "nodeboot-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755) // the app (uid 1000) must reach its dirs
	t.Cleanup(func() {
		unix.Unmount(filepath.Join(base, "apps/app/uploads"), unix.MNT_DETACH)
		os.RemoveAll(base)
	})
	for _, d := range []string{"apps/app/uploads", "apps/other", "data/state/app/persist/uploads", "data/state/other", "hide/api", "run/app/app", "run/app/other"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, body := range map[string]string{"data/state/other/secret": "s", "hide/api/node.key": "k", "apps/other/index.js": ""} {
		if err := os.WriteFile(filepath.Join(base, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const uid = 1000
	for _, d := range []string{"data/state/app", "data/state/app/persist", "data/state/app/persist/uploads", "run/app/app"} {
		os.Chown(filepath.Join(base, d), uid, uid)
	}
	// As PID 1 does (internal/appapi): the app's socket in its own dir.
	apiSock, err := net.Listen("unix", filepath.Join(base, "run/app/app/api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer apiSock.Close()
	os.Chown(filepath.Join(base, "run/app/app/api.sock"), uid, uid)
	// As PID 1 does: the persist dir bound over the code dir.
	if err := unix.Mount(filepath.Join(base, "data/state/app/persist/uploads"), filepath.Join(base, "apps/app/uploads"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	probePath := filepath.Join(base, "apps/app/probe")
	if err := os.WriteFile(probePath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		App: "app", UID: uid, GID: uid,
		CodeDir:  filepath.Join(base, "apps/app"),
		StateDir: filepath.Join(base, "data/state/app"),
		Persist:  []string{"uploads"},
		Confine:  []string{filepath.Join(base, "apps"), filepath.Join(base, "data"), filepath.Join(base, "run/app")},
		APIDir:   filepath.Join(base, "run/app/app"),
		Hide:     []string{filepath.Join(base, "hide")},
		Path:     probePath,
		Dir:      filepath.Join(base, "apps/app"),
		Env:      []string{probeEnv + "=1", "BASE=" + base},
	}
	out, status, code := runHelper(t, spec, false)
	t.Run("network none", func(t *testing.T) {
		s := spec
		s.NetworkNone = true
		s.Env = []string{probeEnv + "=net"}
		out, _, code := runHelper(t, s, false)
		if got := strings.TrimSpace(out); got != "lo up" || code != 0 {
			t.Errorf("interfaces %q (exit %d), want only loopback, up", got, code)
		}
	})
	t.Run("node's workload", func(t *testing.T) {
		// Everything node does (fs, sockets of every kind it opens,
		// workers, children, inotify, wasm, crypto) under the real
		// sandbox: the allow list must not take anything from it.
		node, err := exec.LookPath("node")
		if err != nil {
			t.Skip("no node on this host")
		}
		wl, err := os.ReadFile("testdata/node-workload.js")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, "apps/app/workload.js"), wl, 0o644); err != nil {
			t.Fatal(err)
		}
		s := spec
		s.Path, s.Args = node, []string{filepath.Join(base, "apps/app/workload.js")}
		s.Env = []string{"HOME=" + spec.StateDir}
		out, _, code := runHelper(t, s, false)
		if code != 0 || !strings.Contains(out, "workload done") {
			t.Errorf("node's workload exited %d in the sandbox: %q", code, out)
		}
	})
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("helper exited %d, status %v; output %q: %v", code, status, out, err)
	}
	if code != 0 || status.ExitStatus() != 0 {
		t.Errorf("exit code %d, node's status %v", code, status)
	}
	want := map[string][]string{
		"uid":           {"1000 1000 0"},
		"writeRoot":     {"EROFS", "EACCES"},
		"writeEtc":      {"EROFS", "EACCES"},
		"writeCode":     {"EROFS", "EACCES"},
		"writeState":    {"ok"},
		"writePersist":  {"ok"},
		"writeTmp":      {"ok"},
		"readKey":       {"ENOENT", "EACCES"},
		"readOther":     {"ENOENT", "EACCES"},
		"listApps":      {"app"},
		"apiConnect":    {"ok"},
		"apiOther":      {"ENOENT"},
		"apiWrite":      {"EROFS"},
		"procCount":     {"1"}, // the probe alone: the helper is hidden
		"mount":         {"EPERM"},
		"unshareUser":   {"EPERM"},
		"packetSocket":  {"EPERM"},
		"rawSocket":     {"EPERM"},
		"tcpSocket":     {"ok"},
		"netlinkSocket": {"ok"},
		"ptrace":        {"EPERM"},
		"reboot":        {"EPERM"},
		"finitModule":   {"EPERM"},
		"keyctl":        {"EPERM"},
		"ioUring":       {"EPERM"},
		"clone3":        {"ENOSYS"},
		"kill1":         {"EPERM"},
		"CapEff":        {"0000000000000000"},
		"CapPrm":        {"0000000000000000"},
		"CapBnd":        {"0000000000000000"},
		"CapInh":        {"0000000000000000"},
		"CapAmb":        {"0000000000000000"},
		"NoNewPrivs":    {"1"},
		"Seccomp":       {"2"},
		"cgroup":        {"0::/"},
		"chmodSuid":     {"ok"},
	}
	for k, w := range want {
		if !contains(w, res[k]) {
			t.Errorf("%s = %q, want one of %q", k, res[k], w)
		}
	}
	// Without capabilities and under the filter: refused either way.
	for k, w := range wantBypasses {
		if !contains(w, res["bypass_"+k]) {
			t.Errorf("in the sandbox %s = %q, want one of %q", k, res["bypass_"+k], w)
		}
	}
	if o := res["stateMountOpts"]; !strings.Contains(o, "nosuid") || !strings.Contains(o, "noexec") {
		t.Errorf("state dir mount options %q lack nosuid/noexec", o)
	}
}

// TestSandboxSetupFailure: a spec the helper refuses ends with
// ExitSetupFailed and says why on stderr, and node never runs.
func TestSandboxSetupFailure(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	_, status, code := runHelper(t, Spec{App: "x", UID: 0, GID: 0, CodeDir: "/", StateDir: "/", Path: "/bin/true", Dir: "/"}, true)
	if code != ExitSetupFailed || status != 0 {
		t.Errorf("exit %d, status %v; want %d and no node status", code, status, ExitSetupFailed)
	}
}

// runHelper starts the test binary as the helper in new namespaces, the
// way the supervisor does, and returns the app's stdout, the wait status
// the helper reported (0 if none) and the helper's exit code.
func runHelper(t *testing.T, s Spec, quiet bool) (string, syscall.WaitStatus, int) {
	t.Helper()
	payload, _ := json.Marshal(&s)
	specR, specW, _ := os.Pipe()
	statR, statW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	stderr := os.Stderr
	if quiet {
		stderr, _ = os.Open(os.DevNull)
	}
	exe, _ := os.Executable()
	p, err := os.StartProcess(exe, []string{exe, HelperArg, s.App}, &os.ProcAttr{
		Files: []*os.File{os.Stdin, outW, stderr, specR, statW},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Cloneflags: cloneFlags(s),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	specR.Close()
	statW.Close()
	outW.Close()
	specW.Write(payload)
	specW.Close()
	out, _ := io.ReadAll(outR)
	var b [4]byte
	var ws syscall.WaitStatus
	if _, err := io.ReadFull(statR, b[:]); err == nil {
		ws = syscall.WaitStatus(binary.LittleEndian.Uint32(b[:]))
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return string(out), ws, st.ExitCode()
}

// TestPolicyAssembles assembles the filter for both image architectures,
// with and without names allowed back: a mistake would make the helper
// fail at every start.
func TestPolicyAssembles(t *testing.T) {
	for _, a := range []*arch.Info{arch.X86_64, arch.AARCH64} {
		for _, allow := range [][]string{nil, {"ptrace", "socket", "clone", "clone3", "io_uring_setup", "personality", "memfd_create"}} {
			prog, err := filterFor(a, allow)
			if err != nil {
				t.Fatalf("%s, allow %v: %v", a.Name, allow, err)
			}
			if _, err := bpf.Assemble(prog); err != nil {
				t.Fatalf("%s, allow %v: %v", a.Name, allow, err)
			}
			t.Logf("%s, allow %v: %d instructions", a.Name, allow, len(prog))
		}
	}
	t.Logf("landlock ABI here: %d", LandlockABI())
}

// TestSyscallTablePartition: every call of both architectures' tables is
// allowed, refused by a named group, or under an argument rule, so each
// refusal has a reason and a name the config can allow back. A newer
// filter library with new calls fails here until they are placed.
func TestSyscallTablePartition(t *testing.T) {
	place := map[string]string{}
	for _, n := range Allowed {
		place[n] = "allowed"
	}
	for _, g := range DenyGroups {
		for _, n := range g.Syscalls {
			if p, ok := place[n]; ok {
				t.Errorf("%s is both %s and in %s", n, p, g.Name)
			}
			place[n] = g.Name
		}
	}
	for _, n := range []string{"socket", "clone", "clone3"} {
		if p, ok := place[n]; ok {
			t.Errorf("%s has an argument rule and is %s", n, p)
		}
		place[n] = "argument rule"
	}
	for _, a := range []*arch.Info{arch.X86_64, arch.AARCH64} {
		for n := range a.SyscallNames {
			if _, ok := place[n]; !ok {
				t.Errorf("%s (%s) is neither allowed nor in a deny group", n, a.Name)
			}
		}
	}
}

// TestNodeSyscallsAllowed: every call node made in the measured workload
// (testdata/node-syscalls.txt, docs/sandbox.md) passes the filter
// unconditionally or under its argument rule.
func TestNodeSyscallsAllowed(t *testing.T) {
	b, err := os.ReadFile("testdata/node-syscalls.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range strings.Fields(string(b)) {
		if !slices.Contains(Allowed, n) && !slices.Contains([]string{"socket", "clone", "clone3"}, n) {
			t.Errorf("node calls %s, which the filter refuses", n)
		}
	}
}

// TestFilterVerdicts runs the assembled program in a BPF interpreter on
// both architectures' numbers, for the cases the kernel test cannot reach
// on this host (the other architecture, a foreign ABI, numbers above the
// table).
func TestFilterVerdicts(t *testing.T) {
	for _, a := range []*arch.Info{arch.X86_64, arch.AARCH64} {
		prog, err := filterFor(a, nil)
		if err != nil {
			t.Fatal(err)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatal(err)
		}
		// The interpreter loads words in network order, the kernel in
		// the machine's: each word is laid out big-endian here, in the
		// places a little-endian seccomp_data has them (an argument's
		// low word first).
		run := func(archID uint32, nr int, args ...uint64) uint32 {
			b := make([]byte, 64)
			binary.BigEndian.PutUint32(b[0:], uint32(nr))
			binary.BigEndian.PutUint32(b[4:], archID)
			for i, v := range args {
				binary.BigEndian.PutUint32(b[16+8*i:], uint32(v))
				binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(v>>32))
			}
			r, err := vm.Run(b)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(r)
		}
		id := uint32(a.ID)
		nr := func(n string) int { return a.SyscallNames[n] }
		for _, c := range []struct {
			what string
			got  uint32
			want uint32
		}{
			{"read", run(id, nr("read")), retAllow},
			{"futex", run(id, nr("futex")), retAllow},
			{"mount", run(id, nr("mount")), retEPERM},
			{"memfd_create", run(id, nr("memfd_create")), retEPERM},
			{"a number above the table", run(id, 1000), retENOSYS},
			{"x32", run(id, 0x40000000|nr("read")), retENOSYS},
			{"another ABI", run(id^1, nr("read")), retEPERM},
			{"clone3", run(id, nr("clone3")), retENOSYS},
			{"socket AF_PACKET|1<<32", run(id, nr("socket"), 1<<32|unix.AF_PACKET, unix.SOCK_RAW), retEPERM},
			{"socket AF_INET SOCK_RAW|1<<32", run(id, nr("socket"), unix.AF_INET, 1<<32|unix.SOCK_RAW), retEPERM},
			{"socket AF_INET SOCK_PACKET", run(id, nr("socket"), unix.AF_INET, unix.SOCK_PACKET), retEPERM},
			{"socket AF_VSOCK", run(id, nr("socket"), unix.AF_VSOCK, unix.SOCK_STREAM), retEPERM},
			{"socket AF_INET6 stream|nonblock|cloexec", run(id, nr("socket"), unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC), retAllow},
			{"socket AF_INET dgram, high bits", run(id, nr("socket"), 1<<32|unix.AF_INET, 1<<40|unix.SOCK_DGRAM), retAllow},
			{"socket AF_UNIX seqpacket", run(id, nr("socket"), unix.AF_UNIX, unix.SOCK_SEQPACKET), retAllow},
			{"socket netlink route", run(id, nr("socket"), unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE), retAllow},
			{"socket netlink audit", run(id, nr("socket"), unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT), retEPERM},
			{"clone thread", run(id, nr("clone"), unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND), retAllow},
			{"clone CLONE_NEWUSER", run(id, nr("clone"), unix.CLONE_NEWUSER), retEPERM},
			{"clone CLONE_NEWNET", run(id, nr("clone"), unix.CLONE_NEWNET), retEPERM},
			{"personality query", run(id, nr("personality"), 0xffffffff), retAllow},
			{"personality ADDR_NO_RANDOMIZE", run(id, nr("personality"), 0x0040000), retEPERM},
			{"personality 1<<32 (= PER_LINUX to the kernel)", run(id, nr("personality"), 1<<32), retAllow},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s returns %#x, want %#x", a.Name, c.what, c.got, c.want)
			}
		}
	}
}

func cloneFlags(s Spec) uintptr {
	f := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if s.NetworkNone {
		f |= syscall.CLONE_NEWNET
	}
	return f
}
