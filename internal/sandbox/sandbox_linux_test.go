package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
	switch os.Getenv(probeEnv) {
	case "":
	case "net":
		probeNet()
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
	json.NewEncoder(os.Stdout).Encode(res)
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
	for _, d := range []string{"apps/app/uploads", "apps/other", "data/state/app/persist/uploads", "data/state/other", "hide/api"} {
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
	for _, d := range []string{"data/state/app", "data/state/app/persist", "data/state/app/persist/uploads"} {
		os.Chown(filepath.Join(base, d), uid, uid)
	}
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
		Confine:  []string{filepath.Join(base, "apps"), filepath.Join(base, "data")},
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
		"procCount":     {"2"}, // the helper and the probe
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

// TestPolicyAssembles checks the deny list against the syscall tables of
// both image architectures: a name the library does not know would make
// the helper fail at every start.
func TestPolicyAssembles(t *testing.T) {
	for _, allow := range [][]string{nil, {"ptrace", "socket", "clone", "clone3", "io_uring_setup"}} {
		p, err := policy(allow)
		if err != nil {
			t.Fatalf("allow %v: %v", allow, err)
		}
		if _, err := p.Assemble(); err != nil {
			t.Fatalf("allow %v: %v", allow, err)
		}
	}
	t.Logf("landlock ABI here: %d", LandlockABI())
}

func cloneFlags(s Spec) uintptr {
	f := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if s.NetworkNone {
		f |= syscall.CLONE_NEWNET
	}
	return f
}
