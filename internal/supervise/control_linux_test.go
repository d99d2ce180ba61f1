package supervise

import (
	"testing"
	"time"
)

func TestRestartSetCommandSubscribe(t *testing.T) {
	s := New(shService(t, "ctl", "echo v1; exec sleep 100", nil))
	lines, cancel := s.Subscribe()
	defer cancel()
	runService(t, s)
	waitLine := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l := <-lines:
				if l == want {
					return
				}
			case <-deadline:
				t.Fatalf("no line %q; ring: %q", want, s.Lines(0))
			}
		}
	}
	waitLine("ctl: v1")
	waitFor(t, "running", func() bool { return s.Status().State == StateRunning })
	pid1 := s.Status().PID

	// A restart is immediate and is not counted as a crash.
	s.Restart()
	waitLine("ctl: v1")
	waitFor(t, "a new process", func() bool { st := s.Status(); return st.State == StateRunning && st.PID != pid1 })
	if r := s.Status().Restarts; r != 0 {
		t.Errorf("restarts = %d after an asked-for restart, want 0", r)
	}

	// A new command takes effect at the next start, in its own dir.
	dir := t.TempDir()
	s.SetCommand(Command{Args: []string{"-c", "echo v2 $PWD; exec sleep 100"}, Dir: dir})
	if c := s.Command(); c.Dir != dir {
		t.Errorf("Command().Dir = %q, want %q", c.Dir, dir)
	}
	s.Restart()
	waitLine("ctl: v2 " + dir)
}

func TestRestartDuringBackoff(t *testing.T) {
	o := shService(t, "bo", "echo start; exit 1", nil)
	o.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour}
	s := New(o)
	runService(t, s)
	waitFor(t, "backoff", func() bool { return s.Status().State == StateBackoff })
	lines, cancel := s.Subscribe()
	defer cancel()
	s.Restart()
	select {
	case <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("Restart during an hour of backoff did not start the app")
	}
}
