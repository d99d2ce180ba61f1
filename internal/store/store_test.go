package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nodeboot/nodeboot/internal/bundle"
)

// mkBundle is a real bundle of app whose server.js holds body, and its digest.
func mkBundle(t testing.TB, app, body string) ([]byte, string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "server.js"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := bundle.Write(&buf, bundle.Meta{App: app, Entry: "server.js"},
		[]bundle.File{{Rel: "server.js", Src: filepath.Join(src, "server.js"), Mode: 0o644}})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// body reads a version's server.js; "" for nil.
func body(t testing.TB, v *Version) string {
	t.Helper()
	if v == nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(v.Dir, "server.js"))
	if err != nil {
		t.Fatalf("version %s is not complete: %v", v.Digest, err)
	}
	return string(b)
}

func receive(t testing.TB, s *Store, app, content string) *Version {
	t.Helper()
	data, d := mkBundle(t, app, content)
	v, err := s.Receive(app, bytes.NewReader(data), d, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Digest != d || v.App != app || v.Meta.App != app || body(t, v) != content {
		t.Fatalf("Receive returned %+v", v)
	}
	return v
}

// state is "current/previous" by content, "-" for none.
func state(t testing.TB, s *Store, app string) string {
	t.Helper()
	c, err := s.Current(app)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Previous(app)
	if err != nil {
		t.Fatal(err)
	}
	name := func(v *Version) string {
		if v == nil {
			return "-"
		}
		return body(t, v)
	}
	return name(c) + "/" + name(p)
}

// listing is the sorted names in root/app.
func listing(t testing.TB, root, app string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, app))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestLifecycle(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := state(t, s, "hello"); got != "-/-" {
		t.Fatalf("empty store: %s", got)
	}
	steps := []struct {
		do   func() error
		want string
	}{}
	var v1, v2, v3 *Version
	_ = v2
	add := func(want string, do func() error) {
		steps = append(steps, struct {
			do   func() error
			want string
		}{do, want})
	}
	add("-/-", func() error { v1 = receive(t, s, "hello", "v1"); return nil }) // received, not switched
	add("v1/-", func() error { return s.Switch("hello", v1) })
	add("v1/-", func() error { return s.Switch("hello", v1) }) // again: no change
	add("v2/v1", func() error { v2 = receive(t, s, "hello", "v2"); return s.Switch("hello", v2) })
	add("v1/v2", func() error { _, err := s.Rollback("hello"); return err })
	add("v2/v1", func() error { _, err := s.Rollback("hello"); return err })
	add("v3/v2", func() error { v3 = receive(t, s, "hello", "v3"); return s.Switch("hello", v3) })
	add("-/v3", func() error { return s.Reset("hello") })
	add("v3/-", func() error { _, err := s.Rollback("hello"); return err })
	add("", func() error { return s.Switch("hello", v1) }) // v1 fell off at the switch to v3: refused
	for i, st := range steps {
		err := st.do()
		if i == len(steps)-1 {
			if err == nil || !strings.Contains(err.Error(), "deploy it again") {
				t.Fatalf("switching to a removed version: %v", err)
			}
			st.want = "v3/-"
		} else if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := state(t, s, "hello"); got != st.want {
			t.Fatalf("after step %d: %s, want %s", i, got, st.want)
		}
	}
	// Switching to v3 made v1 fall off: it is gone already.
	if _, err := os.Stat(v1.Dir); !os.IsNotExist(err) {
		t.Errorf("v1 is still stored: %v", err)
	}
	if _, err := s.Rollback("hello"); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("Rollback without previous: %v, want ErrNoPrevious", err)
	}

	// The same digest again is reused without reading the body.
	data, d := mkBundle(t, "hello", "v3")
	_ = data
	again, err := s.Receive("hello", strings.NewReader(""), d, bundle.Limits{})
	if err != nil || again.Dir != v3.Dir {
		t.Fatalf("Receive of a stored version: %+v, %v", again, err)
	}

	// Recover keeps current and previous, removes a received but never
	// switched version and leftovers of interrupted work.
	v4 := receive(t, s, "hello", "v4")
	v5 := receive(t, s, "hello", "v5")
	if err := s.Switch("hello", v4); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "hello", ".incoming-x", "half"), 0o755); err != nil {
		t.Fatal(err)
	}
	var logs []string
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	s2.Recover(func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
	if got := state(t, s2, "hello"); got != "v4/v3" {
		t.Fatalf("after Recover: %s", got)
	}
	h3, h4 := strings.TrimPrefix(v3.Digest, "sha256:"), strings.TrimPrefix(v4.Digest, "sha256:")
	want := []string{h3, h3 + ".json", h4, h4 + ".json", "current", "previous"}
	sort.Strings(want)
	if got := listing(t, root, "hello"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after Recover the app dir holds %q, want %q", got, want)
	}
	if _, err := os.Stat(v5.Dir); !os.IsNotExist(err) {
		t.Errorf("the unswitched v5 survived Recover: %v", err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "removed the interrupted .incoming-x") {
		t.Errorf("Recover did not say what it removed: %q", logs)
	}
}

func TestReceiveRejects(t *testing.T) {
	good, d := mkBundle(t, "hello", "v1")
	other, od := mkBundle(t, "other", "v1")
	_, wrong := mkBundle(t, "hello", "something else")
	cases := []struct {
		name   string
		app    string
		data   []byte
		digest string
		want   error
	}{
		{"digest mismatch", "hello", good, wrong, ErrDigest},
		{"malformed digest", "hello", good, "sha256:XYZ", ErrDigest},
		{"digest without algorithm", "hello", good, strings.TrimPrefix(d, "sha256:"), ErrDigest},
		// The digest is checked first: a damaged body is a digest mismatch.
		{"truncated body", "hello", good[:len(good)/2], d, ErrDigest},
		{"truncated body, its own digest", "hello", good[:len(good)/2], digestOf(good[:len(good)/2]), bundle.ErrInvalid},
		{"not a bundle", "hello", []byte("garbage"), d, ErrDigest},
		{"not a bundle, its own digest", "hello", []byte("garbage"), digestOf([]byte("garbage")), bundle.ErrInvalid},
		{"bundle of another app", "hello", other, od, bundle.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Receive(c.app, bytes.NewReader(c.data), c.digest, bundle.Limits{})
			if !errors.Is(err, c.want) {
				t.Fatalf("Receive: %v, want %v", err, c.want)
			}
			if got := listing(t, root, c.app); len(got) != 0 {
				t.Errorf("left behind: %q", got)
			}
		})
	}
	s, _ := Open(t.TempDir())
	if _, err := s.Receive("../etc", bytes.NewReader(good), d, bundle.Limits{}); err == nil {
		t.Error("Receive accepted the app name ../etc")
	}
}

func TestCurrentIncompleteOrOdd(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	v := receive(t, s, "hello", "v1")
	if err := s.Switch("hello", v); err != nil {
		t.Fatal(err)
	}
	h := strings.TrimPrefix(v.Digest, "sha256:")
	dir := filepath.Join(root, "hello")
	cases := []struct {
		name  string
		setup func() error
	}{
		{"record missing", func() error { return os.Remove(filepath.Join(dir, h+".json")) }},
		{"dir missing", func() error { return os.RemoveAll(filepath.Join(dir, h)) }},
		{"link to a non-version", func() error {
			os.Remove(filepath.Join(dir, "current"))
			return os.Symlink("/etc", filepath.Join(dir, "current"))
		}},
		{"current is a file", func() error {
			os.Remove(filepath.Join(dir, "current"))
			return os.WriteFile(filepath.Join(dir, "current"), []byte(h), 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.RemoveAll(dir)
			s, _ := Open(root)
			v := receive(t, s, "hello", "v1")
			if err := s.Switch("hello", v); err != nil {
				t.Fatal(err)
			}
			if err := c.setup(); err != nil {
				t.Fatal(err)
			}
			if cur, err := s.Current("hello"); cur != nil || err != nil {
				t.Fatalf("Current: %+v, %v; want none", cur, err)
			}
		})
	}
}

// opsSteps runs a deploy of v2 over v1: Receive, then Switch.
func deployV2(t *testing.T, s *Store) error {
	data, d := mkBundle(t, "hello", "v2")
	v, err := s.Receive("hello", bytes.NewReader(data), d, bundle.Limits{})
	if err != nil {
		return err
	}
	return s.Switch("hello", v)
}

func TestPowerCut(t *testing.T) {
	// Learn the durable steps of a deploy, then cut the power after each.
	var steps []string
	{
		s, _ := Open(t.TempDir())
		s.Switch("hello", receive(t, s, "hello", "v1"))
		s.hook = func(step string) error { steps = append(steps, step); return nil }
		if err := deployV2(t, s); err != nil {
			t.Fatal(err)
		}
	}
	if len(steps) < 6 {
		t.Fatalf("only %d steps seen: %q", len(steps), steps)
	}
	for i, cut := range steps {
		t.Run(fmt.Sprintf("%d-%s", i, cut), func(t *testing.T) {
			root := t.TempDir()
			s, _ := Open(root)
			v0 := receive(t, s, "hello", "v0")
			v1 := receive(t, s, "hello", "v1")
			s.Switch("hello", v0)
			s.Switch("hello", v1)
			n := 0
			s.hook = func(string) error {
				if n == i {
					return errors.New("power cut")
				}
				n++
				return nil
			}
			if err := deployV2(t, s); !errors.Is(err, errHook) {
				t.Fatalf("deploy: %v, want the power cut", err)
			}
			// Boot again.
			s2, _ := Open(root)
			s2.Recover(func(string, ...any) {})
			got := state(t, s2, "hello")
			if got != "v1/v0" && got != "v2/v1" && got != "v1/-" {
				t.Fatalf("after a cut at %s: %s, want v1 or v2 current", cut, got)
			}
			for _, name := range listing(t, root, "hello") {
				if strings.HasPrefix(name, ".incoming-") {
					t.Errorf("Recover left %s", name)
				}
			}
			// The store works on: the deploy can be done again.
			if err := deployV2(t, s2); err != nil {
				t.Fatal(err)
			}
			if got := state(t, s2, "hello"); got != "v2/v1" {
				t.Fatalf("deploying again after the cut: %s", got)
			}
		})
	}
}

func TestPowerCutMidExtraction(t *testing.T) {
	// A cut while the body streams in leaves a partial .incoming dir.
	root := t.TempDir()
	s, _ := Open(root)
	v1 := receive(t, s, "hello", "v1")
	s.Switch("hello", v1)
	part := filepath.Join(root, "hello", ".incoming-0123")
	os.MkdirAll(filepath.Join(part, "node_modules"), 0o755)
	os.WriteFile(filepath.Join(part, "server.js"), []byte("half"), 0o644)
	s2, _ := Open(root)
	s2.Recover(func(string, ...any) {})
	if _, err := os.Stat(part); !os.IsNotExist(err) {
		t.Errorf("partial extraction survived: %v", err)
	}
	if got := state(t, s2, "hello"); got != "v1/-" {
		t.Errorf("state: %s", got)
	}
}

func TestRollbackPowerCut(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		if fallback {
			exchangeNames = func(a, b string) error { return errNoExchange }
			t.Cleanup(func() { exchangeNames = exchange })
		}
		for i := 0; ; i++ {
			root := t.TempDir()
			s, _ := Open(root)
			s.Switch("hello", receive(t, s, "hello", "v1"))
			s.Switch("hello", receive(t, s, "hello", "v2"))
			n := 0
			s.hook = func(string) error {
				if n == i {
					return errors.New("power cut")
				}
				n++
				return nil
			}
			v, err := s.Rollback("hello")
			done := err == nil
			if done && body(t, v) != "v1" {
				t.Fatalf("Rollback returned %s", body(t, v))
			}
			if !done && !errors.Is(err, errHook) {
				t.Fatalf("Rollback: %v", err)
			}
			s2, _ := Open(root)
			s2.Recover(func(string, ...any) {})
			got := state(t, s2, "hello")
			switch {
			case done && got != "v1/v2":
				t.Fatalf("fallback %v: after Rollback: %s", fallback, got)
			case !done && got != "v2/v1" && got != "v1/-" && got != "v1/v2":
				t.Fatalf("fallback %v: after a cut at step %d of Rollback: %s", fallback, i, got)
			}
			if done {
				break
			}
		}
	}
}

func TestConcurrentReceive(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	apps := []string{"api", "web", "api"} // api twice: the same digest at once
	var wg sync.WaitGroup
	errs := make([]error, len(apps))
	vs := make([]*Version, len(apps))
	for i, app := range apps {
		data, d := mkBundle(t, app, "code of "+app)
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs[i], errs[i] = s.Receive(app, bytes.NewReader(data), d, bundle.Limits{})
			if errs[i] == nil {
				errs[i] = s.Switch(app, vs[i])
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", apps[i], err)
		}
	}
	for _, app := range []string{"api", "web"} {
		if got := state(t, s, app); got != "code of "+app+"/-" {
			t.Errorf("%s: %s", app, got)
		}
		for _, name := range listing(t, root, app) {
			if strings.HasPrefix(name, ".incoming-") {
				t.Errorf("%s: left %s", app, name)
			}
		}
	}
}

// Issue 12 item 3: the body is hashed before anything unpacks it, so a
// body whose digest does not match (here a valid bundle, but whatever it
// holds) never reaches the extractor, and nothing of it stays.
func TestReceiveChecksDigestBeforeExtracting(t *testing.T) {
	calls := 0
	extract = func(r io.Reader, dst string, lim bundle.Limits) (bundle.Meta, error) {
		calls++
		return bundle.Extract(r, dst, lim)
	}
	defer func() { extract = bundle.Extract }()
	root := t.TempDir()
	s, _ := Open(root)
	data, _ := mkBundle(t, "hello", "v1")
	_, wrong := mkBundle(t, "hello", "something else")
	_, err := s.Receive("hello", bytes.NewReader(data), wrong, bundle.Limits{})
	if !errors.Is(err, ErrDigest) {
		t.Fatalf("Receive: %v, want ErrDigest", err)
	}
	if calls != 0 {
		t.Errorf("the extractor ran %d times on a body whose digest did not match", calls)
	}
	if got := listing(t, root, "hello"); len(got) != 0 {
		t.Errorf("left behind: %q", got)
	}
	// The matching digest goes through, extracted once.
	v := receive(t, s, "hello", "v1")
	if calls != 1 || body(t, v) != "v1" {
		t.Errorf("extractor calls %d, body %q", calls, body(t, v))
	}
}

// A body longer than any bundle within the limits is cut off while it
// spools, before it fills the disk.
func TestReceiveBodyBounded(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	lim := bundle.Limits{MaxEntries: 10, MaxBytes: 1 << 10, MaxFile: 1 << 10}
	endless := io.LimitReader(zeros{}, 1<<40)
	_, d := mkBundle(t, "hello", "v1")
	_, err := s.Receive("hello", endless, d, lim)
	if !errors.Is(err, bundle.ErrTooBig) {
		t.Fatalf("Receive of an endless body: %v, want ErrTooBig", err)
	}
	if got := listing(t, root, "hello"); len(got) != 0 {
		t.Errorf("left behind: %q", got)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
