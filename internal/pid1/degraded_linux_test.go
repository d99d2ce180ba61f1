package pid1

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// fakeBoot records which steps prepare ran.
type fakeBoot struct {
	rt       *spec.Runtime
	rtErr    error
	dataErr  error
	tmpfsErr error
	steps    []string
}

func (f *fakeBoot) fns() bootSteps {
	return bootSteps{
		readRuntime: func() (*spec.Runtime, error) { f.steps = append(f.steps, "read"); return f.rt, f.rtErr },
		setupData:   func(*spec.Runtime) error { f.steps = append(f.steps, "data"); return f.dataErr },
		dataTmpfs:   func() error { f.steps = append(f.steps, "tmpfs"); return f.tmpfsErr },
	}
}

func TestPrepareDecides(t *testing.T) {
	twoApps := &spec.Runtime{Apps: []spec.RuntimeApp{{Name: "a"}, {Name: "b"}}}
	for _, c := range []struct {
		name   string
		f      fakeBoot
		apps   int
		steps  string
		reason []string // all in the reason; none means healthy
	}{
		{"healthy", fakeBoot{rt: twoApps}, 2, "read data", nil},
		{
			"runtime.json corrupt: no apps, /data untouched, a tmpfs instead",
			fakeBoot{rtErr: errors.New("/etc/nodeboot/runtime.json: decoding runtime config: unexpected EOF")},
			0, "read tmpfs",
			[]string{"runtime.json", "unexpected EOF", "no app runs"},
		},
		{
			"runtime.json corrupt and no tmpfs",
			fakeBoot{rtErr: errors.New("bad"), tmpfsErr: errors.New("no memory")},
			0, "read tmpfs",
			[]string{"bad", "no memory"},
		},
		{
			"/data read-only: the apps run on it",
			fakeBoot{rt: twoApps, dataErr: &errorPath{"/data/state", syscall.EROFS}},
			2, "read data",
			[]string{"/data", "read-only file system", "apps run", "deploys"},
		},
		{
			"/data failing",
			fakeBoot{rt: twoApps, dataErr: syscall.EIO},
			2, "read data",
			[]string{"input/output error", "check the disk"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt, reason := prepare(c.f.fns())
			if rt == nil || len(rt.Apps) != c.apps {
				t.Errorf("runtime %+v, want %d apps", rt, c.apps)
			}
			if got := strings.Join(c.f.steps, " "); got != c.steps {
				t.Errorf("steps %q, want %q", got, c.steps)
			}
			if len(c.reason) == 0 && reason != "" {
				t.Errorf("degraded %q on a healthy boot", reason)
			}
			if len(c.reason) > 0 && reason == "" {
				t.Error("not degraded")
			}
			for _, w := range c.reason {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q lacks %q", reason, w)
				}
			}
		})
	}
}

type errorPath struct {
	path string
	err  error
}

func (e *errorPath) Error() string { return "creating " + e.path + ": " + e.err.Error() }
func (e *errorPath) Unwrap() error { return e.err }
