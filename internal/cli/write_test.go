package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeCmd runs `nodeboot write args...` with stdin in.
func writeCmd(t *testing.T, in *strings.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	root := newRoot(&o, &e)
	if in != nil {
		root.SetIn(in)
	}
	root.SetArgs(append([]string{"write"}, args...))
	err = root.ExecuteContext(context.Background())
	return o.String(), e.String(), err
}

// writeImage makes a random image of size bytes.
func writeImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func wantIn(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not say %q:\n%s", what, sub, s)
		}
	}
}

func TestWriteCommandFile(t *testing.T) {
	img, data := writeImage(t, 5<<20+512)
	out := filepath.Join(t.TempDir(), "out.img")

	_, _, err := writeCmd(t, nil, img, img, "--force-file", "--yes")
	if err == nil {
		t.Fatal("wrote the image onto itself")
	}
	wantIn(t, "error", err.Error(), "the image itself")

	stdout, stderr, err := writeCmd(t, nil, img, out, "--force-file", "--yes")
	if err != nil {
		t.Fatalf("write: %v\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Error("the file does not hold the image")
	}
	wantIn(t, "stdout", stdout, out+" now holds the image")
	wantIn(t, "stderr", stderr, "wrote 5", "verified")
	// stderr is not a terminal here: no progress bar redrawn into it.
	if strings.Contains(stderr, "100%") || strings.Contains(stderr, "\r") {
		t.Errorf("progress bar drawn on a non-terminal: %q", stderr)
	}

	// Without --force-file a regular file is refused, and nothing is written.
	os.WriteFile(out, []byte("keep"), 0o644)
	_, _, err = writeCmd(t, nil, img, out, "--yes")
	if err == nil {
		t.Fatal("wrote to a regular file without --force-file")
	}
	wantIn(t, "error", err.Error(), "not a block device", "--force-file")
	if got, _ := os.ReadFile(out); string(got) != "keep" {
		t.Error("the file was written to")
	}
}

func TestWriteCommandConfirm(t *testing.T) {
	img, data := writeImage(t, 5<<20)
	out := filepath.Join(t.TempDir(), "out.img")
	old := bytes.Repeat([]byte{1}, 6<<20)
	os.WriteFile(out, old, 0o644)

	_, stderr, err := writeCmd(t, strings.NewReader("n\n"), img, out, "--force-file")
	if err == nil {
		t.Fatal("wrote after the answer n")
	}
	wantIn(t, "error", err.Error(), "not confirmed", "nothing was written")
	wantIn(t, "prompt", stderr, "write "+img+" (5 MiB) to "+out+" (file, 6 MiB)? all data on it will be lost [y/N]")
	if got, _ := os.ReadFile(out); !bytes.Equal(got, old) {
		t.Error("the file was written to after the answer n")
	}

	if _, stderr, err = writeCmd(t, strings.NewReader("y\n"), img, out, "--force-file"); err != nil {
		t.Fatalf("write after y: %v\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got[:len(data)], data) {
		t.Error("the file does not hold the image after the answer y")
	}
}

// TestWriteCommandNotATerminal: without --yes, a stdin that is not a
// terminal is an error that tells to pass --yes.
func TestWriteCommandNotATerminal(t *testing.T) {
	img, _ := writeImage(t, 1<<20)
	out := filepath.Join(t.TempDir(), "out.img")
	os.WriteFile(out, []byte("keep"), 0o644)
	stdin, err := os.Open(img) // a regular file
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()

	var o, e bytes.Buffer
	root := newRoot(&o, &e)
	root.SetIn(stdin)
	root.SetArgs([]string{"write", img, out, "--force-file"})
	err = root.ExecuteContext(context.Background())
	if err == nil {
		t.Fatal("wrote without a terminal to ask on and without --yes")
	}
	wantIn(t, "error", err.Error(), "not a terminal", "--yes")
	if got, _ := os.ReadFile(out); string(got) != "keep" {
		t.Error("the file was written to")
	}
}

// TestWriteCommandLoopDevice writes to a real block device through the
// command: the prompt shows what the device is, and the output says how to
// boot it.
func TestWriteCommandLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: loop devices need root")
	}
	backing := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(backing, 32<<20)
	lo, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("skipping: loop devices are not available here (losetup --find --show: %v: %s)", err, bytes.TrimSpace(lo))
	}
	dev := strings.TrimSpace(string(lo))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})

	img, data := writeImage(t, 3<<20)
	stdout, stderr, err := writeCmd(t, strings.NewReader("yes\n"), img, dev)
	if err != nil {
		t.Fatalf("write: %v\n%s", err, stderr)
	}
	wantIn(t, "prompt", stderr, "write "+img+" (3 MiB) to "+dev+" (loop device of "+backing+", 32 MiB)? all data on it will be lost [y/N]")
	wantIn(t, "stdout", stdout, dev+" now holds the image", "boot menu key", "F12",
		"The image boots via UEFI; legacy BIOS is not supported", "Secure Boot must be off")
	got, _ := os.ReadFile(backing)
	if !bytes.Equal(got[:len(data)], data) {
		t.Error("the loop device does not hold the image")
	}
}
