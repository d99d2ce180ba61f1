package ocisource

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggrandom "github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/follow"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/testregistry"
)

func key(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

// app writes an app dir whose server answers body, and reads it as push
// does.
func app(t *testing.T, body string) oci.AppInput {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"package.json":                  `{"name":"shop","version":"1.0.0","main":"index.js"}`,
		"index.js":                      "require('http').createServer((q, s) => s.end('" + body + "\\n')).listen(process.env.PORT)\n",
		"node_modules/dep/index.js":     "module.exports = 2\n",
		"node_modules/dep/package.json": `{"name":"dep","main":"index.js"}`,
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := spec.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &p.Apps[0]
	return oci.AppInput{
		Meta:  bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines},
		Files: bundle.FromSpec(a.SrcDir, a.Files),
	}
}

// node is a node with one app "shop" whose deploy is the real version
// store's receive: the digest checked, the bundle unpacked safely.
type node struct {
	mu      sync.Mutex
	st      *store.Store
	version string
	body    string // what the running version's index.js says
}

func (n *node) AppVersion(a string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.version, a == "shop"
}

func (n *node) Deploy(ctx context.Context, a, digest string, body io.Reader) error {
	v, err := n.st.Receive(a, body, digest, bundle.Limits{})
	if err != nil {
		return err
	}
	js, err := os.ReadFile(filepath.Join(v.Dir, "index.js"))
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.version, n.body = v.Digest, string(js)
	return nil
}

func (n *node) OS() follow.OSState                                 { return follow.OSState{Image: "img"} }
func (n *node) UpdateOS(ctx context.Context, body io.Reader) error { return errors.New("no OS here") }

func (n *node) serves() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, after, _ := strings.Cut(n.body, "s.end('")
	v, _, _ := strings.Cut(after, "\\n")
	return v
}

type world struct {
	t    *testing.T
	reg  *testregistry.Registry
	ref  oci.Ref
	node *node
	f    *follow.Follower
	push oci.Options
	// authFile is the node's pull credentials (FileAuth).
	authFile string
}

func newWorld(t *testing.T, auth bool) *world {
	reg := testregistry.Start(t, testregistry.Options{Auth: auth})
	ref, err := oci.ParseRef(reg.Host+"/shop:stable", false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, reg: reg, ref: ref, node: &node{st: st, version: "image"}}
	var nodeAuth authn.Authenticator
	if auth {
		w.push.Auth = &authn.Basic{Username: reg.User, Password: reg.Password}
		// The node's credentials as `nodeboot registry login` keeps
		// them; none yet.
		w.authFile = filepath.Join(t.TempDir(), "follow", "auth.json")
		nodeAuth = FileAuth(w.authFile)
	}
	src, err := New(Config{Ref: reg.Host + "/shop:stable", Keys: []ed25519.PublicKey{key(1).Public().(ed25519.PublicKey)}, Auth: nodeAuth, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w.f = follow.New(follow.Config{Ref: reg.Host + "/shop:stable", Interval: time.Minute, Source: src, Node: w.node,
		State: follow.File(filepath.Join(t.TempDir(), "state.json")), Rand: rand.New(rand.NewPCG(1, 2)), Log: t.Logf})
	return w
}

func (w *world) publish(body string, k ed25519.PrivateKey, r *oci.Rollout) string {
	w.t.Helper()
	p, err := oci.Push(context.Background(), w.ref, oci.Publication{Apps: []oci.AppInput{app(w.t, body)}, Key: k, Rollout: r}, w.push)
	if err != nil {
		w.t.Fatal(err)
	}
	return p.Digest
}

func (w *world) check() follow.Status {
	w.f.Check(context.Background())
	return w.f.Status()
}

func TestFollowARealRegistry(t *testing.T) {
	w := newWorld(t, false)
	v2 := w.publish("v2", key(1), nil)
	if st := w.check(); st.Applied != v2 || w.node.serves() != "v2" || st.LastError != "" {
		t.Fatalf("after v2: %+v, node serves %q", st, w.node.serves())
	}

	// Signed by another project's key: refused, with the reason.
	v4 := w.publish("v4", key(2), nil)
	st := w.check()
	if st.State != follow.StateFailed || st.Target != v4 || !strings.Contains(st.LastError, "not signed by a key this node trusts") || w.node.serves() != "v2" {
		t.Fatalf("after a foreign v4: %+v, node serves %q", st, w.node.serves())
	}

	// The registry goes away: reported, not refused; back: caught up.
	w.reg.Stop()
	st = w.check()
	if st.State != follow.StateOffline || st.LastError == "" || w.node.serves() != "v2" {
		t.Fatalf("registry down: %+v", st)
	}
	w.reg.Restart()
	v5 := w.publish("v5", key(1), nil)
	if st := w.check(); st.Applied != v5 || w.node.serves() != "v5" || st.LastError != "" {
		t.Fatalf("after the registry returned: %+v, node serves %q", st, w.node.serves())
	}

	// A paused release holds; the signed waves are the record's.
	w.publish("v6", key(1), &oci.Rollout{Paused: true})
	if st := w.check(); st.State != follow.StatePaused || w.node.serves() != "v5" {
		t.Fatalf("paused: %+v", st)
	}
	later := time.Now().Add(time.Hour)
	w.publish("v7", key(1), &oci.Rollout{Waves: []oci.Wave{{Share: 1, NotBefore: later}}})
	if st := w.check(); st.State != follow.StateWaiting || st.WaveOpens.Unix() != later.Unix() || w.node.serves() != "v5" {
		t.Fatalf("a wave in an hour: %+v", st)
	}
}

// TestFollowWithPullCredentials: on an htpasswd registry a node without
// credentials, or with wrong ones, applies nothing and says which registry
// refused it and what to do; credentials set while it runs count from the
// next check.
func TestFollowWithPullCredentials(t *testing.T) {
	w := newWorld(t, true)
	v2 := w.publish("v2", key(1), nil)
	for _, c := range []struct {
		what  string
		creds *contract.RegistryCredentials
	}{
		{"no credentials", nil},
		{"a wrong password", &contract.RegistryCredentials{Username: w.reg.User, Password: "wrong"}},
	} {
		if c.creds != nil {
			if err := WriteAuth(w.authFile, *c.creds); err != nil {
				t.Fatal(err)
			}
		}
		st := w.check()
		if st.State != follow.StateOffline || st.Applied != "" || w.node.serves() != "" ||
			!strings.Contains(st.LastError, "refused the credentials") || !strings.Contains(st.LastError, w.reg.Host) || !strings.Contains(st.LastError, "nodeboot registry login") {
			t.Errorf("%s: %+v, node serves %q", c.what, st, w.node.serves())
		}
		if strings.Contains(st.LastError, "wrong") {
			t.Errorf("%s: the status quotes the password: %s", c.what, st.LastError)
		}
	}
	if err := WriteAuth(w.authFile, contract.RegistryCredentials{Username: w.reg.User, Password: w.reg.Password}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(w.authFile); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("the credentials' file: %v %v, want mode 0400", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(w.authFile)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the credentials' directory: %v %v, want mode 0700", fi.Mode(), err)
	}
	if !HasAuth(w.authFile) {
		t.Error("HasAuth says no credentials")
	}
	if st := w.check(); st.Applied != v2 || w.node.serves() != "v2" || st.LastError != "" {
		t.Fatalf("with the right credentials: %+v, node serves %q", st, w.node.serves())
	}
	// A damaged file is an error that does not quote it.
	os.Remove(w.authFile)
	os.WriteFile(w.authFile, []byte(`{"password":"hunter2`), 0o400)
	if _, err := ReadAuth(w.authFile); err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "registry login") {
		t.Errorf("damaged credentials: %v", err)
	}
}

// TestFollowAContainerImage: a tag that holds a plain container image
// (someone pushed the wrong thing) is refused with what it is, nothing is
// applied, and it stays refused until the tag moves to a release.
func TestFollowAContainerImage(t *testing.T) {
	w := newWorld(t, false)
	img, err := ggrandom.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(w.reg.Host + "/shop:stable")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	st := w.check()
	if st.State != follow.StateFailed || !strings.Contains(st.LastError, "container image") || st.Applied != "" || w.node.serves() != "" {
		t.Fatalf("a container image under the tag: %+v, node serves %q", st, w.node.serves())
	}
	if again := w.check(); again.State != follow.StateFailed || again.LastError != st.LastError {
		t.Errorf("second check: %+v", again)
	}
	v2 := w.publish("v2", key(1), nil)
	if st := w.check(); st.Applied != v2 || w.node.serves() != "v2" || st.LastError != "" {
		t.Fatalf("after a release replaced it: %+v, node serves %q", st, w.node.serves())
	}
}
