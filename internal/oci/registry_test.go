package oci

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggrandom "github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/testregistry"
)

// TestRegistryRoundTrip pushes an app and an OS update to the real
// registry, resolves the tag, verifies and pulls both.
func TestRegistryRoundTrip(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{})
	key := testKey(1)
	in := appInput(t, testApp(t, 200<<10))
	osp := osPayload(t, key, 2<<20)
	ref := mustRef(t, reg.Host+"/fleet/shop:stable")
	o := Options{CacheDir: t.TempDir(), Keychain: authn.NewMultiKeychain()}
	res, err := Push(ctx(t), ref, Publication{Apps: []AppInput{in}, OS: osp, Key: key}, o)
	if err != nil {
		t.Fatal(err)
	}
	src := Open(ref, o)
	d, err := src.Resolve(ctx(t))
	if err != nil || d != res.Digest {
		t.Fatalf("Resolve = %s, %v; want %s", d, err, res.Digest)
	}
	rel, err := src.Release(ctx(t), d, []ed25519.PublicKey{pub(key)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := rel.WriteBundle(ctx(t), "shop", &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), plainBundle(t, in)) {
		t.Fatal("the bundle pulled from the registry differs from bundle.Write's")
	}
	p, err := rel.FetchOS(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := p.Open(0)
	if _, err := ospayload.Verify(r, []ed25519.PublicKey{pub(key)}); err != nil {
		t.Fatalf("the OS stream pulled from the registry: %v", err)
	}
	r.Close()

	// Promote: a retag moves nothing and keeps the digest.
	pr, err := Promote(ctx(t), ref, "canary", Promotion{Key: key}, o)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Digest != res.Digest || pr.Uploaded != 0 {
		t.Fatalf("promote without changes: digest %s (want %s), %d bytes uploaded", pr.Digest, res.Digest, pr.Uploaded)
	}
	// With waves: a new signed record over the same blobs.
	now := time.Now().UTC().Truncate(time.Second)
	waves := []Wave{{Share: 0.1, NotBefore: now}, {Share: 1, NotBefore: now.Add(time.Hour)}}
	pr, err = Promote(ctx(t), mustRef(t, reg.Host+"/fleet/shop:canary"), "stable", Promotion{Key: key, Waves: waves}, o)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Digest == res.Digest || pr.Uploaded > 4096 {
		t.Fatalf("promote with waves: digest %s (was %s), %d bytes uploaded", pr.Digest, res.Digest, pr.Uploaded)
	}
	rel, err = src.Release(ctx(t), "", []ed25519.PublicKey{pub(key)})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Record.Rollout == nil || len(rel.Record.Rollout.Waves) != 2 || rel.Record.Apps[0].Bundle != res.Record.Apps[0].Bundle {
		t.Fatalf("promoted record: rollout %+v, bundle %+v", rel.Record.Rollout, rel.Record.Apps[0].Bundle)
	}
	// Pause it.
	if _, err := Promote(ctx(t), ref, "stable", Promotion{Key: key, Pause: true}, o); err != nil {
		t.Fatal(err)
	}
	rel, err = src.Release(ctx(t), "", []ed25519.PublicKey{pub(key)})
	if err != nil || !rel.Record.Rollout.Paused || len(rel.Record.Rollout.Waves) != 2 {
		t.Fatalf("paused record: %v, %+v", err, rel.Record.Rollout)
	}
}

// TestLayerReuse changes one line of an app's code and pushes again: only
// the code layer (and the small record) is uploaded, never the
// dependencies.
func TestLayerReuse(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{})
	key := testKey(1)
	dir := testApp(t, 2<<20)
	ref := mustRef(t, reg.Host+"/fleet/shop:stable")
	o := Options{Keychain: authn.NewMultiKeychain()}
	first, err := Push(ctx(t), ref, Publication{Apps: []AppInput{appInput(t, dir)}, Key: key}, o)
	if err != nil {
		t.Fatal(err)
	}
	deps := first.Record.Apps[0].Layers[0]
	if deps.Role != RoleDeps || first.Uploaded < deps.Size {
		t.Fatalf("first push: %d bytes uploaded, deps layer %+v", first.Uploaded, deps)
	}
	put(t, filepath.Join(dir, "index.js"), []byte("require('http').createServer((q, s) => s.end('v2\\n')).listen(process.env.PORT)\n"))
	second, err := Push(ctx(t), ref, Publication{Apps: []AppInput{appInput(t, dir)}, Key: key}, o)
	if err != nil {
		t.Fatal(err)
	}
	l := second.Record.Apps[0].Layers
	if l[0].Digest != deps.Digest {
		t.Fatalf("the deps layer changed with index.js: %s -> %s", deps.Digest, l[0].Digest)
	}
	if l[1].Digest == first.Record.Apps[0].Layers[1].Digest {
		t.Fatal("the code layer did not change with index.js")
	}
	cfg := int64(len(mustJSON(t, second)))
	want := l[1].Size + cfg
	t.Logf("one-line change: %d bytes uploaded (code layer %d, record %d), %d sent in all; deps layer %d", second.Uploaded, l[1].Size, cfg, second.Sent, deps.Size)
	if second.Uploaded != want {
		t.Fatalf("second push uploaded %d bytes, want the code layer and the record: %d", second.Uploaded, want)
	}
}

func mustJSON(t *testing.T, p *Pushed) []byte {
	t.Helper()
	raw, _, err := Open(p.Ref, Options{Keychain: authn.NewMultiKeychain()}).rawManifest(ctx(t), p.Digest)
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := ParseManifest(raw)
	return make([]byte, c.Size)
}

// cutProxy forwards to a registry and cuts the connection of the first
// cuts blob downloads after limit bytes of their body.
type cutProxy struct {
	target      *url.URL
	digest      string
	cuts, limit int64
	cut, served atomic.Int64
	mu          sync.Mutex
	ranges      []string
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/blobs/"+p.digest) || r.Method != http.MethodGet {
		httputil.NewSingleHostReverseProxy(p.target).ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.ranges = append(p.ranges, r.Header.Get("Range"))
	p.mu.Unlock()
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target.String()+r.URL.RequestURI(), nil)
	req.Header = r.Header.Clone()
	// The registry's filesystem driver answers blobs itself (no redirect).
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if resp.StatusCode/100 == 2 && p.cut.Load() < p.cuts {
		p.cut.Add(1)
		n, _ := io.CopyN(w, resp.Body, p.limit)
		p.served.Add(n)
		w.(http.Flusher).Flush()
		// Drop the connection mid-body, as a flaky link does.
		panic(http.ErrAbortHandler)
	}
	n, _ := io.Copy(w, resp.Body)
	p.served.Add(n)
}

// TestResumeAfterCuts cuts the download of a big blob five times: it
// resumes each time where it stopped and ends with the right digest,
// having moved the blob about once.
func TestResumeAfterCuts(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{})
	key := testKey(1)
	dir := testApp(t, 3<<20)
	o := Options{Keychain: authn.NewMultiKeychain(), CacheDir: t.TempDir()}
	res, err := Push(ctx(t), mustRef(t, reg.Host+"/fleet/shop:stable"), Publication{Apps: []AppInput{appInput(t, dir)}, Key: key}, o)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse("http://" + reg.Host)
	deps := res.Record.Apps[0].Layers[0]
	px := &cutProxy{target: target, digest: deps.Digest, cuts: 5, limit: deps.Size / 8}
	srv := httptestServer(t, px)
	ref := mustRef(t, srv+"/fleet/shop:stable")
	rel, err := Open(ref, o).Release(ctx(t), "", []ed25519.PublicKey{pub(key)})
	if err != nil {
		t.Fatal(err)
	}
	path, err := rel.Fetch(ctx(t), deps.Blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyFile(path, deps.Blob); err != nil {
		t.Fatal(err)
	}
	t.Logf("ranges asked: %q; %d bytes served for a %d-byte blob", px.ranges, px.served.Load(), deps.Size)
	if px.cut.Load() != 5 || len(px.ranges) != 6 {
		t.Fatalf("%d cuts, %d requests; want 5 cuts and 6 requests", px.cut.Load(), len(px.ranges))
	}
	if px.served.Load() != deps.Size {
		t.Fatalf("served %d bytes for a blob of %d: the resumed downloads did not continue where they stopped", px.served.Load(), deps.Size)
	}
	// And the whole bundle assembles from what was fetched.
	if _, err := rel.WriteBundle(ctx(t), "shop", io.Discard); err != nil {
		t.Fatal(err)
	}
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ErrorLog: nil}
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestBadInput: each mistake a user or a registry can make ends in an
// error that says what is wrong.
func TestBadInput(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	key := testKey(1)
	in := appInput(t, testApp(t, 1<<10))
	pubn := Publication{Apps: []AppInput{in}, Key: key}
	trusted := []ed25519.PublicKey{pub(key)}
	good := authn.FromConfig(authn.AuthConfig{Username: reg.User, Password: reg.Password})

	for _, s := range []string{"shop:stable", "fleet/shop:stable", "oci:", "oci:/tmp/x:bad tag", reg.Host + "/Fleet/shop:stable", reg.Host + "/fleet/shop:-x"} {
		if _, err := ParseRef(s, false); !errors.Is(err, ErrBadRef) {
			t.Errorf("ParseRef(%q) = %v, want ErrBadRef", s, err)
		}
	}

	// Unknown registry: a name that does not resolve.
	_, err := Push(ctx(t), mustRef(t, "registry.nodeboot-test.invalid/fleet/shop:stable"), pubn, Options{Keychain: authn.NewMultiKeychain()})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the registry") {
		t.Errorf("unknown registry: %v", err)
	}

	// Wrong credentials, from a Docker config as `docker login` leaves it.
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(reg.User, "wrong"))
	ref := mustRef(t, reg.Host+"/fleet/shop:stable")
	if _, err := Push(ctx(t), ref, pubn, Options{}); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "docker login") {
		t.Errorf("wrong credentials: %v, want ErrAuth saying docker login", err)
	}
	// The right ones, through the default keychain (DOCKER_CONFIG).
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig("", ""))
	if _, err := Push(ctx(t), ref, pubn, Options{}); err != nil {
		t.Fatalf("push with the Docker config's credentials: %v", err)
	}
	o := Options{Auth: good, CacheDir: t.TempDir()}
	if _, err := Open(ref, o).Release(ctx(t), "", trusted); err != nil {
		t.Fatalf("pull with explicit credentials: %v", err)
	}
	bad := Options{Auth: authn.FromConfig(authn.AuthConfig{Username: reg.User, Password: "nope"})}
	if _, err := Open(ref, bad).Release(ctx(t), "", trusted); !errors.Is(err, ErrAuth) {
		t.Errorf("pull with wrong credentials: %v, want ErrAuth", err)
	}

	// A tag that does not exist.
	if _, err := Open(mustRef(t, reg.Host+"/fleet/shop:nope"), o).Release(ctx(t), "", trusted); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tag: %v, want ErrNotFound", err)
	}

	// A plain container image under the tag.
	img, err := ggrandom.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	imgRef, _ := name.ParseReference(reg.Host + "/fleet/web:stable")
	if err := remote.Write(imgRef, img, remote.WithAuth(good)); err != nil {
		t.Fatal(err)
	}
	_, err = Open(mustRef(t, reg.Host+"/fleet/web:stable"), o).Release(ctx(t), "", trusted)
	if !errors.Is(err, ErrNotRelease) || !strings.Contains(err.Error(), "container image") {
		t.Errorf("container image: %v, want ErrNotRelease naming a container image", err)
	}

	// Signed with another project's key.
	other := mustRef(t, reg.Host+"/fleet/shop:other")
	if _, err := Push(ctx(t), other, Publication{Apps: []AppInput{in}, Key: testKey(9)}, o); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other, o).Release(ctx(t), "", trusted); !errors.Is(err, ospayload.ErrUntrusted) {
		t.Errorf("foreign key: %v, want ErrUntrusted", err)
	}

	// Plain HTTP to a registry that is not on loopback needs --insecure.
	tr := (&Options{}).transport()
	req, _ := http.NewRequest("GET", "http://10.1.2.3:5000/v2/", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("plain HTTP to 10.1.2.3: %v, want a refusal naming --insecure", err)
	}
	_ = os.Getenv
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestDamagedCache: a cached blob damaged on the reader's disk is fetched
// again, not taken for the registry's fault.
func TestDamagedCache(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{})
	key := testKey(1)
	o := Options{Keychain: authn.NewMultiKeychain(), CacheDir: t.TempDir()}
	ref := mustRef(t, reg.Host+"/fleet/shop:stable")
	in := appInput(t, testApp(t, 100<<10))
	if _, err := Push(ctx(t), ref, Publication{Apps: []AppInput{in}, Key: key}, o); err != nil {
		t.Fatal(err)
	}
	rel, err := Open(ref, o).Release(ctx(t), "", []ed25519.PublicKey{pub(key)})
	if err != nil {
		t.Fatal(err)
	}
	l := rel.Record.Apps[0].Layers[0]
	p, err := rel.Fetch(ctx(t), l.Blob)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	b[100] ^= 0xff
	put(t, p, b)
	var out bytes.Buffer
	if _, err := rel.WriteBundle(ctx(t), "shop", &out); err != nil {
		t.Fatalf("with a damaged cached layer: %v", err)
	}
	if !bytes.Equal(out.Bytes(), plainBundle(t, in)) {
		t.Fatal("the bundle differs after the layer was fetched again")
	}
}
