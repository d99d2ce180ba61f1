package boot

import (
	"bytes"
	"errors"
	"io/fs"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

type fakeMounter struct {
	busy    map[string]bool
	fail    map[string]bool
	mounted []string
}

func (f *fakeMounter) MkdirAll(string, fs.FileMode) error { return nil }
func (f *fakeMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	if f.fail[target] {
		return errors.New("no such device")
	}
	if f.busy[target] {
		return syscall.EBUSY
	}
	f.mounted = append(f.mounted, target)
	return nil
}

func TestRunMounts(t *testing.T) {
	var log []string
	logf := func(f string, a ...any) { log = append(log, f) }
	m := &fakeMounter{fail: map[string]bool{"/sys/fs/cgroup": true}}
	if err := Run(m, logf, SystemMounts); err != nil {
		t.Fatalf("an optional mount failing stopped the boot: %v", err)
	}
	if len(m.mounted) != len(SystemMounts)-1 {
		t.Errorf("mounted %v", m.mounted)
	}
	m = &fakeMounter{fail: map[string]bool{"/proc": true}}
	err := Run(m, logf, SystemMounts)
	if err == nil || !strings.Contains(err.Error(), "/proc") {
		t.Errorf("required /proc failing: %v", err)
	}
	if len(m.mounted) != 0 {
		t.Errorf("went on after a required mount failed: %v", m.mounted)
	}
}

func TestDevAlreadyMounted(t *testing.T) {
	m := &fakeMounter{busy: map[string]bool{"/dev": true}}
	if err := Run(m, func(string, ...any) {}, EarlyMounts); err != nil {
		t.Errorf("devtmpfs mounted by the kernel stopped the boot: %v", err)
	}
	if err := Run(m, func(string, ...any) {}, []Mount{{Target: "/dev", Required: true}}); err == nil {
		t.Error("EBUSY accepted without BusyOK")
	}
}

func TestLoggerFormat(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf)
	l.now = func() time.Duration { return 5*time.Second + 861258*time.Microsecond }
	l.Printf("network configured: %s\n", "eth0")
	l.Flush(time.Minute)
	if got, want := buf.String(), "[    5.861258] nodeboot: network configured: eth0\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^\[ +\d+\.\d{6}\] `).MatchString(buf.String()) {
		t.Error("not in the kernel's timestamp format")
	}
}
