package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
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
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/testregistry"
)

// RegistryRun is a one-line app change published and pulled through the
// real registry, as `nodeboot push` and a node that holds the previous
// release do it.
type RegistryRun struct {
	Deps, Code     int64 // the app's layers after the change
	PushSent       int64 // request bodies on the wire during the push
	Uploaded       int64 // of which blob uploads
	PullReceived   int64 // response bodies on the wire during the pull
	PullBlobs      int64 // of which blobs (layers and record)
	Push, Pull     time.Duration
	FirstPushBytes int64 // the first push of the app, for scale
	Err            string
	// OS is the same for an OS change (osRegistryRun).
	OS *RegistryOSRun
}

// RegistryOSRun is an OS change (the disk image rebuilt after a one-line
// change of its app) published with `push --os` and pulled by a reader
// whose cache holds the previous OS release, as a following node's does.
type RegistryOSRun struct {
	Kernel, RootFS     int64 // the new OS update's parts
	PushSent, Uploaded int64
	PullReceived       int64
	PullBlobs          int64
	Build, Push, Pull  time.Duration // Build: the disk image and its payload
	Err                string
}

// wire counts the bodies a transport moves.
type wire struct {
	next       http.RoundTripper
	sent, recv atomic.Int64
	blobs      atomic.Int64
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body = &counted{ReadCloser: r.Body, n: &w.sent}
	}
	resp, err := w.next.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		c := &counted{ReadCloser: resp.Body, n: &w.recv}
		if strings.Contains(r.URL.Path, "/blobs/sha256:") {
			c.also = &w.blobs
		}
		resp.Body = c
	}
	return resp, err
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

// measureRegistry publishes examples/hello with a real dependency (npm
// install through npm's configured registry) to the open-source registry
// on 127.0.0.1, changes one line of its code, publishes again, and pulls
// the new release into a cache that holds the first one.
func measureRegistry(ctx context.Context, e *env) RegistryRun {
	run, err := registryRun(ctx, e)
	if err != nil {
		run.Err = err.Error()
	}
	return run
}

func registryRun(ctx context.Context, e *env) (RegistryRun, error) {
	var run RegistryRun
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
	ref, err := oci.ParseRef(reg.Host+"/bench/hello:stable", false)
	if err != nil {
		return run, err
	}
	publish := func() (oci.Publication, error) {
		p, err := spec.Load(proj, "")
		if err != nil {
			return oci.Publication{}, err
		}
		a := &p.Apps[0]
		return oci.Publication{Key: cr.UpdateKey, Apps: []oci.AppInput{{
			Meta:  bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines},
			Files: bundle.FromSpec(a.SrcDir, a.Files),
		}}}, nil
	}
	cache := filepath.Join(e.tmp, "registry-cache")
	trusted := []ed25519.PublicKey{cr.UpdateKey.Public().(ed25519.PublicKey)}
	anon := authn.NewMultiKeychain()

	// v1, pulled once: the node's cache holds it.
	pub, err := publish()
	if err != nil {
		return run, err
	}
	first, err := oci.Push(ctx, ref, pub, oci.Options{Keychain: anon})
	if err != nil {
		return run, err
	}
	run.FirstPushBytes = first.Uploaded
	rel, err := oci.Open(ref, oci.Options{Keychain: anon, CacheDir: cache}).Release(ctx, "", trusted)
	if err != nil {
		return run, err
	}
	if _, err := rel.WriteBundle(ctx, pub.Apps[0].Meta.App, io.Discard); err != nil {
		return run, err
	}

	// The one-line change.
	js := filepath.Join(proj, "server.js")
	src, err := os.ReadFile(js)
	if err != nil {
		return run, err
	}
	if err := os.WriteFile(js, append(src, []byte("// one more line\n")...), 0o644); err != nil {
		return run, err
	}
	pub, err = publish()
	if err != nil {
		return run, err
	}
	push := &wire{next: http.DefaultTransport}
	t0 := time.Now()
	res, err := oci.Push(ctx, ref, pub, oci.Options{Keychain: anon, Transport: push})
	if err != nil {
		return run, err
	}
	run.Push = time.Since(t0)
	run.PushSent, run.Uploaded = push.sent.Load(), res.Uploaded
	for _, l := range res.Record.Apps[0].Layers {
		if l.Role == oci.RoleDeps {
			run.Deps = l.Size
		} else {
			run.Code = l.Size
		}
	}
	pull := &wire{next: http.DefaultTransport}
	t1 := time.Now()
	src2 := oci.Open(ref, oci.Options{Keychain: anon, CacheDir: cache, Transport: pull})
	d, err := src2.Resolve(ctx)
	if err != nil {
		return run, err
	}
	rel, err = src2.Release(ctx, d, trusted)
	if err != nil {
		return run, err
	}
	if _, err := rel.WriteBundle(ctx, pub.Apps[0].Meta.App, io.Discard); err != nil {
		return run, err
	}
	run.Pull = time.Since(t1)
	run.PullReceived, run.PullBlobs = pull.recv.Load(), pull.blobs.Load()

	osRun, err := osRegistryRun(ctx, e, proj, cr.UpdateKey, reg.Host, trusted)
	if err != nil {
		osRun.Err = err.Error()
	}
	run.OS = &osRun
	return run, nil
}

// osRegistryRun publishes the project's OS update, pulls it into a fresh
// cache, changes one line of the app, builds and publishes again, and
// pulls the new one into that cache.
func osRegistryRun(ctx context.Context, e *env, proj string, key ed25519.PrivateKey, host string, trusted []ed25519.PublicKey) (RegistryOSRun, error) {
	var run RegistryOSRun
	ref, err := oci.ParseRef(host+"/bench/hello-os:stable", false)
	if err != nil {
		return run, err
	}
	anon := authn.NewMultiKeychain()
	cache := filepath.Join(e.tmp, "registry-os-cache")
	payload := func(name string) (*ospayload.Payload, error) {
		img := filepath.Join(e.tmp, name)
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "-o", img}, &log, &log); err != nil {
			return nil, fmt.Errorf("building the disk image: %w\n%s", err, log.String())
		}
		m, err := build.ReadManifestFile(build.DiskManifestPath(img))
		if err != nil {
			return nil, err
		}
		return ospayload.FromImage(img, ospayload.BuildOptions{Key: key, Version: uint64(time.Now().Unix()), Image: m.ImageVersion, Arch: "amd64"})
	}
	pullOS := func(tr http.RoundTripper) error {
		src := oci.Open(ref, oci.Options{Keychain: anon, CacheDir: cache, Transport: tr})
		d, err := src.Resolve(ctx)
		if err != nil {
			return err
		}
		rel, err := src.Release(ctx, d, trusted)
		if err != nil {
			return err
		}
		_, err = rel.FetchOS(ctx)
		return err
	}
	p1, err := payload("registry-os-1.img")
	if err != nil {
		return run, err
	}
	if _, err := oci.Push(ctx, ref, oci.Publication{OS: p1, Key: key}, oci.Options{Keychain: anon}); err != nil {
		return run, err
	}
	if err := pullOS(http.DefaultTransport); err != nil {
		return run, err
	}

	js := filepath.Join(proj, "server.js")
	src, err := os.ReadFile(js)
	if err != nil {
		return run, err
	}
	if err := os.WriteFile(js, append(src, []byte("// and one more\n")...), 0o644); err != nil {
		return run, err
	}
	t0 := time.Now()
	p2, err := payload("registry-os-2.img")
	if err != nil {
		return run, err
	}
	run.Build = time.Since(t0)
	run.Kernel, run.RootFS = p2.Header.Manifest.Kernel.Size, p2.Header.Manifest.RootFS.Size
	push := &wire{next: http.DefaultTransport}
	t1 := time.Now()
	res, err := oci.Push(ctx, ref, oci.Publication{OS: p2, Key: key}, oci.Options{Keychain: anon, Transport: push})
	if err != nil {
		return run, err
	}
	run.Push = time.Since(t1)
	run.PushSent, run.Uploaded = push.sent.Load(), res.Uploaded
	pull := &wire{next: http.DefaultTransport}
	t2 := time.Now()
	if err := pullOS(pull); err != nil {
		return run, err
	}
	run.Pull = time.Since(t2)
	run.PullReceived, run.PullBlobs = pull.recv.Load(), pull.blobs.Load()
	return run, nil
}

func renderRegistry(p func(string, ...any), r RegistryRun) {
	p("## Releases through a registry\n\n")
	p("examples/hello with a real dependency (`npm install express@4`) published with `nodeboot push` to the\n")
	p("open-source registry (Docker Distribution %s) on 127.0.0.1, one line added to server.js, published\n", testregistry.Version)
	p("again, then pulled by a reader whose cache holds the first release (as a following node's does):\n")
	p("resolve the tag, read and verify the record, fetch the changed layer, assemble and check the bundle.\n")
	p("Bytes are HTTP bodies (headers not counted). Measured %s, %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), cell(hostInfo().CPU))
	if r.Err != "" {
		p("Failed: %s\n\n", cell(firstLine(r.Err)))
		return
	}
	ratio := func(n int64) string { return fmt.Sprintf("%.2f×", float64(n)/float64(r.Code)) }
	p("| layers after the change (deps + code) | push: blobs uploaded / all sent | pull: blobs / all received | pulled ÷ changed layer (blobs / all) | push | pull | push → pulled |\n")
	p("|---|---:|---:|---:|---:|---:|---:|\n")
	p("| %s + %s | %s / %s | %s / %s | %s / %s | %s | %s | %s |\n\n",
		size(r.Deps), size(r.Code), size(r.Uploaded), size(r.PushSent), size(r.PullBlobs), size(r.PullReceived),
		ratio(r.PullBlobs), ratio(r.PullReceived), ms(r.Push), ms(r.Pull), ms(r.Push+r.Pull))
	p("The first push of the app uploaded %s. What a change moves beyond the changed layer is fixed per\n", size(r.FirstPushBytes))
	p("release: the signed record (which names every layer) and the manifest, about 2–3 KiB together, so the\n")
	p("target of at most 1.1× the changed layer holds for code layers from about 30 KiB up; below that the\n")
	p("release's own bytes dominate, though they stay a few KiB.\n\n")
	o := r.OS
	if o == nil {
		return
	}
	p("**An OS change.** The same app built as a disk image (`nodeboot build --format disk`), its OS update\n")
	p("published with `push --os`, pulled into a reader's cache; one more line in server.js, built, published\n")
	p("and pulled again. *Build* is the disk image and its signed payload.\n\n")
	if o.Err != "" {
		p("Failed: %s\n\n", cell(firstLine(o.Err)))
		return
	}
	p("| OS update (kernel + root) | push: blobs uploaded / all sent | pull: blobs / all received | pulled ÷ root | build | push | pull | push → pulled |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| %s + %s | %s / %s | %s / %s | %.2f× | %s | %s | %s | %s |\n\n",
		size(o.Kernel), size(o.RootFS), size(o.Uploaded), size(o.PushSent), size(o.PullBlobs), size(o.PullReceived),
		float64(o.PullBlobs)/float64(o.RootFS), ms(o.Build), ms(o.Push), ms(o.Pull), ms(o.Push+o.Pull))
	p("The kernel did not change, so neither the push nor a node holding the previous release moves it\n")
	p("again; the root file system goes whole (there are no deltas), and with it the app's one line.\n")
	p("Applying it on a node (write the slot, trial boot, commit) is the OS updates section's *upload* and\n")
	p("*trial*.\n\n")
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
	r := measureRegistry(ctx, e)
	var sec strings.Builder
	renderRegistry(func(f string, a ...any) { fmt.Fprintf(&sec, f, a...) }, r)
	if err := renameio.WriteFile(o.out, []byte(spliceSection(string(doc), "## Releases through a registry\n", sec.String())), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote the registry section of %s\n", o.out)
	if r.Err != "" {
		return fmt.Errorf("the registry measurement failed: %s", r.Err)
	}
	return nil
}
