package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// UpdateRun is one OS update of a running disk-image node, measured as
// `nodeboot update` performs it: build the disk image, make and sign the
// payload, stream it, then the node's reboot into the trial, its health
// gate (update.healthySeconds, 30 s by default) and the commit.
type UpdateRun struct {
	What           string
	From, To       string // node versions
	Kernel, RootFS int64  // payload sections, bytes
	Sent           int64  // bytes on the wire (header + body)
	Build          time.Duration
	Payload        time.Duration // making and signing it
	Upload         time.Duration // PUT /v1/update until the 202
	Trial          time.Duration // the 202 until the node reports the commit
	Err            string
}

func (u UpdateRun) Total() time.Duration { return u.Build + u.Payload + u.Upload + u.Trial }

// measureUpdates flashes examples/hello as a disk image, boots it, and
// sends it two updates: the app changed, then the app on another node
// major version (engines.node).
func measureUpdates(ctx context.Context, e *env, o options) ([]UpdateRun, error) {
	proj := filepath.Join(e.tmp, "update-project")
	if err := copyTree(e.appDir, proj); err != nil {
		return nil, err
	}
	img := filepath.Join(e.tmp, "update-node.img")
	var log bytes.Buffer
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		return nil, fmt.Errorf("building the node's disk: %w\n%s", err, log.String())
	}
	cr, err := creds.Load(proj)
	if err != nil {
		return nil, err
	}
	apiPort, err := vm.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := vm.Config{Disk: img, Persist: true, Memory: o.memory, Forwards: []vm.Forward{{Host: apiPort, Guest: contract.APIPort}}}
	if o.verbose {
		cfg.Console = prefixWriter{os.Stderr, "update| "}
	}
	g, err := vm.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer g.Kill()
	c := client.New(fmt.Sprintf("127.0.0.1:%d", apiPort), cr.ClientTLS(), cr.Token)
	st, err := waitStatus(ctx, c, g, "", 5*time.Minute)
	if err != nil {
		return nil, err
	}
	node := st.Node.NodeVersion
	other := "22"
	if strings.HasPrefix(node, "v22.") {
		other = "20"
	}
	changes := []struct {
		what string
		edit func() error
	}{
		{"the app changed", func() error {
			return appendFile(filepath.Join(proj, "server.js"), "\n// changed for the update benchmark\n")
		}},
		{"node " + other + " (engines.node) and the app changed", func() error {
			if err := appendFile(filepath.Join(proj, "server.js"), "// and again\n"); err != nil {
				return err
			}
			return setEngines(filepath.Join(proj, "package.json"), other)
		}},
	}
	var runs []UpdateRun
	for i, ch := range changes {
		fmt.Fprintf(os.Stderr, "update %d/%d: %s\n", i+1, len(changes), ch.what)
		if err := ch.edit(); err != nil {
			return runs, err
		}
		r := updateOnce(ctx, c, g, cr, proj, &st)
		r.What = ch.what
		if r.Err != "" {
			fmt.Fprintf(os.Stderr, "  FAILED: %s\n", r.Err)
		} else {
			fmt.Fprintf(os.Stderr, "  %s sent; build %s, upload %s, trial %s: %s in all\n", size(r.Sent), ms(r.Build), ms(r.Upload), ms(r.Trial), ms(r.Total()))
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// updateOnce sends the project as it is now; st is the node's status
// before, replaced by the one after.
func updateOnce(ctx context.Context, c *client.Client, g *vm.VM, cr *creds.Creds, proj string, st **contract.Status) (r UpdateRun) {
	r.From = (*st).Node.NodeVersion
	fail := func(err error) UpdateRun { r.Err = err.Error(); return r }
	dir, err := os.MkdirTemp("", "nodeboot-bench-update-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	var log bytes.Buffer
	t0 := time.Now()
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "-o", img}, &log, &log); err != nil {
		return fail(fmt.Errorf("build: %w\n%s", err, log.String()))
	}
	r.Build = time.Since(t0)
	m, err := build.ReadManifestFile(build.DiskManifestPath(img))
	if err != nil {
		return fail(err)
	}
	t0 = time.Now()
	p, err := ospayload.FromImage(img, ospayload.BuildOptions{Key: cr.UpdateKey, Version: uint64(time.Now().Unix()), Image: m.ImageVersion, Arch: "amd64"})
	if err != nil {
		return fail(err)
	}
	r.Payload = time.Since(t0)
	r.Kernel, r.RootFS, r.Sent = p.Header.Manifest.Kernel.Size, p.Header.Manifest.RootFS.Size, p.Size()
	body, err := p.Open(0)
	if err != nil {
		return fail(err)
	}
	defer body.Close()
	t0 = time.Now()
	if _, err := c.Update(ctx, body, p.Size(), 0, false, nil); err != nil {
		return fail(err)
	}
	r.Upload = time.Since(t0)
	t0 = time.Now()
	after, err := waitStatus(ctx, c, g, (*st).Node.BootID, 15*time.Minute, m.ImageVersion)
	if err != nil {
		return fail(err)
	}
	r.Trial = time.Since(t0)
	if l := after.OS.Last; l == nil || !l.OK {
		return fail(fmt.Errorf("the update was not committed: %+v", l))
	}
	r.To = after.Node.NodeVersion
	*st = after
	return r
}

// waitStatus polls the node until its API answers from a boot other than
// bootID (any, if ""), and, with image, until that boot reports the update
// to image settled.
func waitStatus(ctx context.Context, c *client.Client, g *vm.VM, bootID string, limit time.Duration, image ...string) (*contract.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := c.Status(qctx)
		cancel()
		if err == nil && s.Node.BootID != bootID {
			if len(image) == 0 {
				return s, nil
			}
			if s.OS != nil && s.OS.Last != nil && s.OS.Last.Image.ID == image[0] {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no answer from the node's API within %v (last: %v)\n%s", limit, err, g.Tail(20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.Done():
			return nil, fmt.Errorf("QEMU exited: %v\n%s", g.Err(), g.Tail(20))
		case <-time.After(time.Second):
		}
	}
}

func appendFile(p, s string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setEngines sets package.json's engines.node (examples/hello has none).
func setEngines(p, major string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	s := strings.TrimSpace(string(b))
	if !strings.HasSuffix(s, "}") || strings.Contains(s, `"engines"`) {
		return fmt.Errorf("%s: cannot add engines.node", p)
	}
	s = strings.TrimSuffix(s, "}") + fmt.Sprintf(",\n  \"engines\": { \"node\": %q }\n}\n", major)
	return os.WriteFile(p, []byte(s), 0o644)
}

// copyTree copies a directory of regular files.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// renderUpdates writes the OS update section.
func renderUpdates(p func(string, ...any), runs []UpdateRun) {
	p("## OS updates\n\n")
	p("examples/hello flashed as a disk image (`nodeboot build --format disk --size 1G`), booted under OVMF +\n")
	p("systemd-boot, then sent two OS updates one after the other as `nodeboot update` sends them: the\n")
	p("disk image built again, its payload made and signed (kernel + the whole root file system: there\n")
	p("are no deltas), streamed to `PUT /v1/update`, then the node's reboot into the new slot, the trial\n")
	p("boot's health gate (every app healthy for `update.healthySeconds`, 30 s by default) and the commit,\n")
	p("until the node's status reports it. *Trial* is the 202 until that report. Measured %s, %s, with\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), cell(hostInfo().CPU))
	p("whatever else the host ran meanwhile (TCG: a shared 2-core machine).\n\n")
	p("| update | node | sent (kernel + root) | build | payload | upload | trial → committed | total |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		if r.Err != "" {
			p("| %s | %s | failed: %s | | | | | |\n", cell(r.What), cell(r.From), cell(firstLine(r.Err)))
			continue
		}
		p("| %s | %s → %s | %s (%s + %s) | %s | %s | %s | %s | %s |\n", cell(r.What), cell(r.From), cell(r.To),
			size(r.Sent), size(r.Kernel), size(r.RootFS), ms(r.Build), ms(r.Payload), ms(r.Upload), ms(r.Trial), ms(r.Total()))
	}
	p("\n")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// spliceSection replaces the section that starts with heading in doc (up
// to the next "## " heading) with section, or inserts it before the
// "## Method" heading, or appends it.
func spliceSection(doc, heading, section string) string {
	if i := strings.Index(doc, heading); i >= 0 {
		rest := doc[i+len(heading):]
		if j := strings.Index(rest, "\n## "); j >= 0 {
			return doc[:i] + section + rest[j+1:]
		}
		return doc[:i] + section
	}
	if i := strings.Index(doc, "\n## Method"); i >= 0 {
		return doc[:i+1] + section + doc[i+1:]
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + section
}

// runUpdatesOnly measures the OS updates and replaces their section of the
// report in o.out.
func runUpdatesOnly(ctx context.Context, e *env, o options) error {
	if o.out == "" {
		return fmt.Errorf("-updates-only needs -o, the report whose OS update section it replaces")
	}
	if _, err := os.Stat(o.out); err != nil {
		return err
	}
	runs, err := measureUpdates(ctx, e, o)
	if err != nil {
		return err
	}
	// Read only now: the report may have changed during the minutes the
	// updates took.
	doc, err := os.ReadFile(o.out)
	if err != nil {
		return err
	}
	var sec strings.Builder
	renderUpdates(func(f string, a ...any) { fmt.Fprintf(&sec, f, a...) }, runs)
	if err := renameio.WriteFile(o.out, []byte(spliceSection(string(doc), "## OS updates\n", sec.String())), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote the OS updates of %s\n", o.out)
	for _, r := range runs {
		if r.Err != "" {
			return fmt.Errorf("an update failed; the report has the reason")
		}
	}
	return nil
}
