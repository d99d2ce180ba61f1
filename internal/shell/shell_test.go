package shell

import (
	"os"
	"strings"
	"testing"
)

func TestApplets(t *testing.T) {
	got := Applets([]byte("usr/bin/[\nbin/sh\nsbin/ifconfig\nusr/bin/tr\nbin/sh\n\nusr/sbin/node\n"))
	want := []string{"/usr/bin/[", "/usr/bin/ifconfig", "/usr/bin/sh", "/usr/bin/tr"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Applets = %q, want %q", got, want)
	}
}

// TestFind reads the build host's busybox-static, which make deps installs.
func TestFind(t *testing.T) {
	if _, err := os.Stat(hostBusybox); err != nil {
		t.Fatalf("%v: install busybox-static (make deps)", err)
	}
	b, err := Find("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if b.Version == "" || len(b.SHA256) != 64 {
		t.Errorf("Find = %+v", b)
	}
	for _, want := range []string{"/usr/bin/sh", "/usr/bin/tr", "/usr/bin/env", "/usr/bin/cat", "/usr/bin/grep"} {
		found := false
		for _, a := range b.Applets {
			found = found || a == want
		}
		if !found {
			t.Errorf("applets lack %s: %v", want, b.Applets)
		}
	}
	if _, err := Find("arm64"); err == nil || !strings.Contains(err.Error(), "build this image on a arm64 host") {
		t.Errorf("Find(arm64) = %v, want the arch refused", err)
	}
	old := hostBusybox
	hostBusybox = "/bin/true" // dynamically linked
	defer func() { hostBusybox = old }()
	if _, err := Find("amd64"); err == nil || !strings.Contains(err.Error(), "not statically linked") {
		t.Errorf("Find with a dynamic busybox = %v", err)
	}
}
