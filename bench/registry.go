package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/testregistry"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// followInterval is the booted node's "follow.interval": a check every
// 2 s (plus up to a fifth of it at random) bounds what polling adds to
// push → serving.
const followInterval = 2 * time.Second

// RegistryRun is a release published with `nodeboot push` and applied by
// a node booted from a disk image that follows the tag, as a fleet does:
// a one-line app change, then an OS change.
type RegistryRun struct {
	App            RegistryChange
	OS             RegistryChange
	FirstPushBytes int64 // the first push of the app, for scale
	Healthy        int   // update.healthySeconds of the node's image
	Err            string
}

// RegistryChange is one release: what the push sent, what the node
// downloaded from the registry (through a counting proxy: the node
// reaches the registry only through it), and the time from the start of
// the push until the node serves the release.
type RegistryChange struct {
	Changed  int64 // the changed layer (app), or the root file system (OS)
	Other    int64 // the unchanged layer (app), or the kernel (OS)
	PushSent int64 // request bodies on the wire during the push
	Uploaded int64 // of which blob uploads
	Received int64 // response bodies the node received
	Blobs    int64 // of which blobs (layers, record, OS parts)
	Requests int64 // the node's requests to the registry
	Manifest int64 // of which manifests (the release's)
	Build    time.Duration
	Push     time.Duration
	Serving  time.Duration // from the start of the push
	Err      string
}

// wire counts the bodies a transport moves.
type wire struct {
	next       http.RoundTripper
	sent, recv atomic.Int64
	blobs      atomic.Int64
	manifests  atomic.Int64
	requests   atomic.Int64
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	w.requests.Add(1)
	if r.Body != nil {
		r.Body = &counted{ReadCloser: r.Body, n: &w.sent}
	}
	resp, err := w.next.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		c := &counted{ReadCloser: resp.Body, n: &w.recv}
		switch {
		case strings.Contains(r.URL.Path, "/blobs/sha256:"):
			c.also = &w.blobs
		case strings.Contains(r.URL.Path, "/manifests/"):
			c.also = &w.manifests
		}
		resp.Body = c
	}
	return resp, err
}

func (w *wire) reset() {
	w.sent.Store(0)
	w.recv.Store(0)
	w.blobs.Store(0)
	w.manifests.Store(0)
	w.requests.Store(0)
}

type counted struct {
	io.ReadCloser
	n, also *atomic.Int64
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	if c.also != nil {
		c.also.Add(int64(n))
	}
	return n, err
}

// countingProxy serves the registry at host to the guest (10.0.2.2:port)
// and counts what it answers.
func countingProxy(host string) (port int, w *wire, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, nil, err
	}
	w = &wire{next: http.DefaultTransport}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: host})
	rp.Transport = w
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: time.Minute}
	go srv.Serve(ln)
	return ln.Addr().(*net.TCPAddr).Port, w, func() { srv.Close() }, nil
}

// measureRegistry publishes examples/hello with a real dependency (npm
// install through npm's configured registry) to the open-source registry
// on 127.0.0.1, boots a node from a disk image that follows the tag, and
// measures two releases until the node serves them.
func measureRegistry(ctx context.Context, e *env, o options) RegistryRun {
	run, err := registryRun(ctx, e, o)
	if err != nil {
		run.Err = err.Error()
	}
	return run
}

func registryRun(ctx context.Context, e *env, o options) (RegistryRun, error) {
	run := RegistryRun{Healthy: 30}
	if _, err := vm.FindFirmware(); err != nil {
		return run, err
	}
	proj := filepath.Join(e.tmp, "registry-project")
	if err := copyTree(e.appDir, proj); err != nil {
		return run, err
	}
	npm := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--save", "express@4")
	npm.Dir = proj
	if out, err := npm.CombinedOutput(); err != nil {
		return run, fmt.Errorf("npm install express (the app's dependency for this measurement): %w\n%s", err, out)
	}
	if _, _, err := creds.Ensure(proj); err != nil {
		return run, err
	}
	cr, err := creds.Load(proj)
	if err != nil {
		return run, err
	}
	reg, err := testregistry.New(testregistry.Options{})
	if err != nil {
		return run, err
	}
	defer reg.Close()
	proxyPort, nodeWire, stopProxy, err := countingProxy(reg.Host)
	if err != nil {
		return run, err
	}
	defer stopProxy()
	follow := fmt.Sprintf("10.0.2.2:%d/bench/hello:stable", proxyPort)
	cfg := fmt.Sprintf(`{"follow": {"ref": %q, "interval": %q, "insecure": true}}`, follow, followInterval.String())
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		return run, err
	}
	ref, err := oci.ParseRef(reg.Host+"/bench/hello:stable", false)
	if err != nil {
		return run, err
	}
	anon := authn.NewMultiKeychain()
	apps := func() ([]oci.AppInput, error) {
		p, err := spec.Load(proj, "")
		if err != nil {
			return nil, err
		}
		a := &p.Apps[0]
		return []oci.AppInput{{
			Meta:  bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines},
			Files: bundle.FromSpec(a.SrcDir, a.Files),
		}}, nil
	}
	diskImage := func(name string) (string, string, error) {
		img := filepath.Join(e.tmp, name)
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
			return "", "", fmt.Errorf("building the disk image: %w\n%s", err, log.String())
		}
		m, err := build.ReadManifestFile(build.DiskManifestPath(img))
		if err != nil {
			return "", "", err
		}
		return img, m.ImageVersion, nil
	}

	// v1: the image the node is flashed with, and the same app under the
	// tag, which the node deploys once (docs/follow.md).
	img, _, err := diskImage("registry-node.img")
	if err != nil {
		return run, err
	}
	in, err := apps()
	if err != nil {
		return run, err
	}
	first, err := oci.Push(ctx, ref, oci.Publication{Apps: in, Key: cr.UpdateKey}, oci.Options{Keychain: anon})
	if err != nil {
		return run, err
	}
	run.FirstPushBytes = first.Uploaded
	apiPort, err := vm.FreePort()
	if err != nil {
		return run, err
	}
	appPort, err := vm.FreePort()
	if err != nil {
		return run, err
	}
	vcfg := vm.Config{Disk: img, Persist: true, Memory: o.memory,
		Forwards: []vm.Forward{{Host: apiPort, Guest: contract.APIPort}, {Host: appPort, Guest: 8080}}}
	if o.verbose {
		vcfg.Console = prefixWriter{os.Stderr, "registry| "}
	}
	g, err := vm.Start(ctx, vcfg)
	if err != nil {
		return run, err
	}
	defer g.Kill()
	c := client.New(fmt.Sprintf("127.0.0.1:%d", apiPort), cr.ClientTLS(), cr.Token)
	appURL := fmt.Sprintf("http://127.0.0.1:%d/", appPort)
	if _, err := waitServing(ctx, c, g, appURL, first, "", 10*time.Minute); err != nil {
		return run, fmt.Errorf("the node did not apply the first release: %w", err)
	}

	// A one-line app change.
	fmt.Fprintf(os.Stderr, "registry: a one-line app change\n")
	if err := appendFile(filepath.Join(proj, "server.js"), "// one more line\n"); err != nil {
		return run, err
	}
	if in, err = apps(); err != nil {
		return run, err
	}
	run.App = publishAndWait(ctx, ref, oci.Publication{Apps: in, Key: cr.UpdateKey}, anon, nodeWire, c, g, appURL, "", 10*time.Minute)
	if run.App.Err != "" {
		return run, nil
	}

	// An OS change: the image built again after one more line, pushed
	// with its apps as `nodeboot push --os` does.
	fmt.Fprintf(os.Stderr, "registry: an OS change\n")
	if err := appendFile(filepath.Join(proj, "server.js"), "// and one more\n"); err != nil {
		return run, err
	}
	t0 := time.Now()
	img2, id2, err := diskImage("registry-node-2.img")
	if err != nil {
		return run, err
	}
	m, err := build.ReadManifestFile(build.DiskManifestPath(img2))
	if err != nil {
		return run, err
	}
	p2, err := ospayload.FromImage(img2, ospayload.BuildOptions{Key: cr.UpdateKey, Version: uint64(time.Now().Unix()), Image: m.ImageVersion, Arch: "amd64"})
	if err != nil {
		return run, err
	}
	build := time.Since(t0)
	if in, err = apps(); err != nil {
		return run, err
	}
	run.OS = publishAndWait(ctx, ref, oci.Publication{Apps: in, OS: p2, Key: cr.UpdateKey}, anon, nodeWire, c, g, appURL, id2, 30*time.Minute)
	run.OS.Build = build
	return run, nil
}

// publishAndWait pushes pub and waits until the node serves it (with
// image: booted from it, committed).
func publishAndWait(ctx context.Context, ref oci.Ref, pub oci.Publication, kc authn.Keychain, node *wire, c *client.Client, g *vm.VM, appURL, image string, limit time.Duration) (r RegistryChange) {
	node.reset()
	push := &wire{next: http.DefaultTransport}
	t0 := time.Now()
	res, err := oci.Push(ctx, ref, pub, oci.Options{Keychain: kc, Transport: push})
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Push = time.Since(t0)
	if _, err := waitServing(ctx, c, g, appURL, res, image, limit); err != nil {
		r.Err = err.Error()
		return r
	}
	r.Serving = time.Since(t0)
	r.PushSent, r.Uploaded = push.sent.Load(), res.Uploaded
	r.Received, r.Blobs, r.Requests, r.Manifest = node.recv.Load(), node.blobs.Load(), node.requests.Load(), node.manifests.Load()
	if o := res.Record.OS; image != "" && o != nil {
		r.Changed, r.Other = o.RootFS.Size, o.Kernel.Size
	} else {
		for _, l := range res.Record.Apps[0].Layers {
			if l.Role == oci.RoleDeps {
				r.Other = l.Size
			} else {
				r.Changed = l.Size
			}
		}
	}
	fmt.Fprintf(os.Stderr, "  node received %s (%d requests); push %s, push → serving %s\n", size(r.Received), r.Requests, ms(r.Push), ms(r.Serving))
	return r
}

// waitServing polls the node until it reports rel applied (the follower's
// applied digest and the app's version), with image booted from that OS
// image and committed, and the app answers.
func waitServing(ctx context.Context, c *client.Client, g *vm.VM, appURL string, rel *oci.Pushed, image string, limit time.Duration) (*contract.Status, error) {
	deadline := time.Now().Add(limit)
	hc := &http.Client{Timeout: 10 * time.Second}
	want := rel.Record.Apps[0].Bundle.Digest
	var last string
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := c.Status(qctx)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case s.Follow == nil:
			last = "the node follows no tag"
		default:
			last = fmt.Sprintf("follow %s applied %s (want %s): %s", s.Follow.State, short(s.Follow.Applied), short(rel.Digest), s.Follow.LastError)
			ok := s.Follow.Applied == rel.Digest && len(s.Apps) > 0 && s.Apps[0].Version == want && s.Apps[0].State == "running"
			if ok && image != "" {
				bs := (*contract.SlotStatus)(nil)
				if s.OS != nil {
					bs = s.OS.Booted()
				}
				ok = bs != nil && bs.State == "good" && bs.Image != nil && bs.Image.ID == image
			}
			if ok {
				if resp, err := hc.Get(appURL); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return s, nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not serving the release within %v (last: %s)\n%s", limit, last, g.Tail(20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.Done():
			return nil, fmt.Errorf("QEMU exited: %v\n%s", g.Err(), g.Tail(20))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func renderRegistry(p func(string, ...any), r RegistryRun) {
	p("## Releases through a registry\n\n")
	p("examples/hello with a real dependency (`npm install express@4`), flashed as a disk image (`nodeboot\n")
	p("build --format disk`) whose nodeboot.json follows a tag (`\"interval\": \"%s\"`) of the open-source\n", followInterval)
	p("registry (Docker Distribution %s) on 127.0.0.1, booted under QEMU (OVMF + systemd-boot, %s). The\n", testregistry.Version, "TCG on a shared host")
	p("node reaches the registry only through a proxy on the host that counts what it answers. Each release\n")
	p("is published with `nodeboot push` (in process) and timed from the start of the push until the node\n")
	p("serves it: the follower's applied digest and the app's version are the release's, the app answers,\n")
	p("and for the OS change the node runs from the new image, committed after its trial boot\n")
	p("(`update.healthySeconds` %d, the default). Bytes are HTTP bodies (headers not counted). Measured %s, %s.\n\n", r.Healthy, time.Now().UTC().Format("2006-01-02 15:04 MST"), cell(hostInfo().CPU))
	if r.Err != "" {
		p("Failed: %s\n\n", cell(firstLine(r.Err)))
		return
	}
	p("| release | changed + unchanged | push: uploaded / all sent | node received: blobs / all (requests) | received ÷ changed (blobs / all) | of which manifest | build | push | push → serving |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(what, changed string, c RegistryChange) {
		if c.Err != "" {
			p("| %s | failed: %s |||||||| \n", what, cell(firstLine(c.Err)))
			return
		}
		build := "–"
		if c.Build > 0 {
			build = ms(c.Build)
		}
		p("| %s | %s + %s | %s / %s | %s / %s (%d) | %.3f× / %.3f× | %d B | %s | %s | %s |\n", what, changed, size(c.Other),
			size(c.Uploaded), size(c.PushSent), size(c.Blobs), size(c.Received), c.Requests,
			float64(c.Blobs)/float64(c.Changed), float64(c.Received)/float64(c.Changed), c.Manifest,
			build, ms(c.Push), ms(c.Serving))
	}
	row("one line of the app (code layer + deps layer)", size(r.App.Changed), r.App)
	row("the OS (root file system + kernel; with the app's line)", size(r.OS.Changed), r.OS)
	p("\n")
	p("The first push of the app uploaded %s. A one-line change moves the changed code layer, the signed\n", size(r.FirstPushBytes))
	p("record (a blob) and the OCI manifest; the record and the manifest are fixed per release and name every\n")
	p("blob by digest. *Blobs* is what the node downloads as blobs (the record and the layer), *all* adds the\n")
	p("manifest; the other requests are the follower's `HEAD`s of the tag, which move no body.\n\n")
	if a := r.App; a.Err == "" && a.Changed > 0 {
		fixed := a.Received - a.Changed
		p("**Target: at most 1.1× the changed layer.** Blobs: %.3f×. All bytes: %.3f×, over the target by %s,\n",
			float64(a.Blobs)/float64(a.Changed), float64(a.Received)/float64(a.Changed), size(a.Received-a.Changed*11/10))
		p("because %s per release is fixed (record %s, manifest %s): the target holds on all bytes for code\n", size(fixed), size(a.Blobs-a.Changed), size(a.Manifest))
		p("layers from %s up. The record is compact JSON and the manifest's layers carry no annotations\n", size(fixed*10))
		p("(before: 1115 B of indented record and about 150 B of layer annotations, 1.14× / 1.26×). The next\n")
		p("step would be a zstd-compressed record (463 B instead of 813 for one app of two layers), about\n")
		p("0.35 KiB less; it changes the record's media type, which every node's reader must accept first.\n\n")
	}
	p("An OS change moves the whole root file system (there are no deltas) and the kernel: the push\n")
	p("uploads the kernel when the registry does not hold it yet (here the first release carried no OS),\n")
	p("and the node downloads it again, as it writes the other slot from the full stream and its cache\n")
	p("keeps only the release being applied. Push → serving includes the follower's wait for its next\n")
	p("check (up to %s plus a fifth), the health-gated deploy of the app's change (apps before the OS),\n", followInterval)
	p("the download and the slot's write, the reboot into the trial and its %d s health gate, and the\n", r.Healthy)
	p("commit.\n\n")
}

// runRegistryOnly measures the registry round trip and replaces its
// section of the report in o.out.
func runRegistryOnly(ctx context.Context, e *env, o options) error {
	if o.out == "" {
		return fmt.Errorf("-registry-only needs -o, the report whose registry section it replaces")
	}
	doc, err := os.ReadFile(o.out)
	if err != nil {
		return err
	}
	r := measureRegistry(ctx, e, o)
	var sec strings.Builder
	renderRegistry(func(f string, a ...any) { fmt.Fprintf(&sec, f, a...) }, r)
	if err := renameio.WriteFile(o.out, []byte(spliceSection(string(doc), "## Releases through a registry\n", sec.String())), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote the registry section of %s\n", o.out)
	switch {
	case r.Err != "":
		return fmt.Errorf("the registry measurement failed: %s", r.Err)
	case r.App.Err != "" || r.OS.Err != "":
		return fmt.Errorf("the registry measurement failed: %s %s", r.App.Err, r.OS.Err)
	}
	return nil
}
