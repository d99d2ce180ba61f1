package appapi

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary be the client of TestPeerCredentials,
// started as another uid.
func TestMain(m *testing.M) {
	if path := os.Getenv("APPAPI_TEST_DIAL"); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(0)
		}
		// The request claims to be another app: it makes no difference.
		fmt.Fprintf(c, `{"id":1,"op":"secret","name":"db"}`+"\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(line)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// asUID runs the test binary as uid, dialling path, and returns what it
// printed.
func asUID(t *testing.T, path string, uid uint32) string {
	t.Helper()
	cmd := exec.Command(clientBinary(t))
	cmd.Env = []string{"APPAPI_TEST_DIAL=" + path}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid %d: %v: %s", uid, err, out)
	}
	return string(out)
}

// clientBinary is a copy of the test binary that other uids may run (go
// test's own build dir is private to root).
func clientBinary(t *testing.T) string {
	t.Helper()
	dir := openDir(t)
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "client")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// openDir is a temporary directory every uid may enter.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "appapi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func needRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (to run clients as other uids)")
	}
}

// The caller is the app its uid says, whatever socket it reaches or
// request it sends.
func TestPeerCredentials(t *testing.T) {
	needRoot(t)
	node := &fakeNode{secrets: map[string]string{"web/db": "s3cret", "other/db": "theirs"}}
	srv := New(node, []App{{Name: "web", UID: 1001}, {Name: "other", UID: 1002}}, Options{Log: t.Logf})
	dir := openDir(t)
	path := filepath.Join(dir, "web.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(path, 0o777) // the file system lets everyone in: the check is the server's
	go srv.Serve(l, "web")
	if out := asUID(t, path, 1001); !strings.Contains(out, `"result":{"value":"s3cret"}`) {
		t.Errorf("the app itself: %s", out)
	}
	if out := asUID(t, path, 1002); !strings.Contains(out, `"code":"not_an_app"`) || !strings.Contains(out, "is the app other") || strings.Contains(out, "theirs") {
		t.Errorf("another app: %s", out)
	}
	if out := asUID(t, path, 1003); !strings.Contains(out, `"code":"not_an_app"`) || !strings.Contains(out, "not an app of this node") {
		t.Errorf("not an app: %s", out)
	}
}

// Listen's socket is reachable by its app's uid only.
func TestListenPermissions(t *testing.T) {
	needRoot(t)
	node := &fakeNode{secrets: map[string]string{"web/db": "s3cret"}}
	srv := New(node, []App{{Name: "web", UID: 1001}, {Name: "other", UID: 1002}}, Options{Log: t.Logf})
	root := openDir(t)
	path := filepath.Join(root, "app", "web", SocketName)
	l, err := Listen(path, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go srv.Serve(l, "web")
	if out := asUID(t, path, 1001); !strings.Contains(out, `"value":"s3cret"`) {
		t.Errorf("the app: %s", out)
	}
	if out := asUID(t, path, 1002); !strings.Contains(out, "permission denied") {
		t.Errorf("another app: %s", out)
	}
	// A second Listen (the next boot, a stale socket) replaces it.
	l.Close()
	l2, err := Listen(path, 1001, 1001)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
}
