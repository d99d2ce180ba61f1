package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/spec"
)

func newDeploy(stdout, stderr io.Writer) *cobra.Command {
	var nf nodeFlags
	var app string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "deploy NODE [APP_DIR | REF]",
		Short: "Deploy a new version of an app to a running node",
		Long: `Deploy the app in APP_DIR (default: the current directory) to a running node,
without rebuilding its image.

The app's files are chosen as 'nodeboot build' chooses them (.nodebootignore
applies) and sent as one bundle. The node checks it, starts the new version
and keeps it only when it is healthy: it starts, its port accepts
connections (or its healthPath answers) within 30 s, and it is still
running 2 s later. Otherwise the old version serves again, and the new
version's last log lines are printed. The app keeps its /data state.

The app's name is --app, else its name in nodeboot.json or package.json; it
must be an app of the node's image. The node must run a node version that
package.json's engines.node allows.

With REF (registry/repo:tag or oci:DIR[:TAG], made by 'nodeboot push')
instead of APP_DIR, the app comes from that release, after its signature is
checked against the project's update key; --app picks one of several.`,
		Example: `  nodeboot deploy local
  nodeboot deploy pi ./api --app api
  nodeboot deploy pi oci:/media/usb/fleet:stable`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd.Context(), args, nf, app, insecure, stdout, stderr)
		},
	}
	nf.register(cmd.Flags(), true)
	cmd.Flags().StringVar(&app, "app", "", "the node's app to replace (default: the app's name in nodeboot.json or package.json)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to the registry of a REF (a registry on this machine may always use it)")
	return cmd
}

func runDeploy(ctx context.Context, args []string, nf nodeFlags, appFlag string, insecure bool, stdout, stderr io.Writer) error {
	dir := "."
	if len(args) == 2 {
		dir = args[1]
	}
	if isReleaseRef(dir) {
		return runDeployRelease(ctx, args[0], dir, nf, appFlag, insecure, stdout, stderr)
	}
	proj, err := spec.Load(dir, "")
	if err != nil {
		return err
	}
	a, name, err := pickApp(proj, appFlag)
	if err != nil {
		return err
	}
	t, err := connect(nf.project, proj.Dir, args[0])
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := t.status(ctx)
	if err != nil {
		return err
	}
	if err := t.checkApp(s, name); err != nil {
		return fmt.Errorf("%w: deploy replaces an app of the node's image; pass --app with one of them, or add the app to the image's nodeboot.json and rebuild it", err)
	}
	if err := checkEngines(a.Engines, s.Node.NodeVersion, name, t); err != nil {
		return err
	}

	f, meta, err := writeBundle(a, name)
	if err != nil {
		return err
	}
	defer os.Remove(f.path)
	defer f.file.Close()
	fmt.Fprintf(stderr, "bundle of %s: %d files, %s, %s\n", name, len(a.Files), bytesIEC(uint64(f.size)), shortVersion(f.digest))
	if len(meta.Libraries) > 0 {
		fmt.Fprintf(stderr, "its native addons need %s\n", strings.Join(meta.Libraries, ", "))
	}

	var progress io.Writer
	if bar := uploadBar(stderr, f.size, "deploying "+name); bar != nil {
		progress = bar
		defer bar.Close()
	}
	r, err := t.c.Deploy(ctx, name, f.file, f.size, f.digest, progress)
	if err != nil {
		printUnhealthy(stderr, err)
		return t.explain(err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	return printResult(stdout, "deployed", t, r)
}

// pickApp chooses the project's app to deploy and the node's app name it
// replaces. A project of several apps (nodeboot.json "apps") needs --app
// to say which one.
func pickApp(proj *spec.Project, appFlag string) (*spec.App, string, error) {
	if len(proj.Apps) == 1 {
		a := &proj.Apps[0]
		if appFlag == "" {
			return a, a.Name, nil
		}
		if err := bundle.CheckAppName(appFlag); err != nil {
			return nil, "", fmt.Errorf("--app: %w", err)
		}
		return a, appFlag, nil
	}
	names := make([]string, 0, len(proj.Apps))
	for i := range proj.Apps {
		if proj.Apps[i].Name == appFlag {
			return &proj.Apps[i], appFlag, nil
		}
		names = append(names, proj.Apps[i].Name)
	}
	if appFlag == "" {
		return nil, "", fmt.Errorf("%s has several apps (%s): say which to deploy with --app", proj.Dir, strings.Join(names, ", "))
	}
	return nil, "", fmt.Errorf("--app %s: %s has no app of that name; its apps: %s", appFlag, proj.Dir, strings.Join(names, ", "))
}

// checkEngines refuses a version whose engines.node the node's node does
// not satisfy, before anything is sent: the node would refuse it too, but
// only after the upload. An unknown node version (an older node) is left
// to the node to check.
func checkEngines(engines, nodeVersion, app string, t *target) error {
	if engines == "" {
		return nil
	}
	c, err := semver.NewConstraint(engines)
	if err != nil {
		return fmt.Errorf("package.json engines.node %q of %s is not a version range nodeboot understands: %w; write it like \">=20\" or \"^22.3\"", engines, app, err)
	}
	v, err := semver.NewVersion(strings.TrimPrefix(nodeVersion, "v"))
	if err != nil {
		return nil
	}
	if !c.Check(v) {
		return fmt.Errorf("%s needs node %s (package.json engines.node), but node %s runs node %s: rebuild and install its image with a node that fits (nodeboot build --node VERSION), or relax engines.node", app, engines, t.label(), nodeVersion)
	}
	return nil
}

// bundleFile is a bundle written to a temporary file, ready to send.
type bundleFile struct {
	file   *os.File // at offset 0
	path   string
	size   int64
	digest string // sha256:<hex>
}

// writeBundle writes the bundle of app a, named name on the node, to a
// temporary file: its size must be known before the upload starts, and
// a big app should not have to fit in memory.
func writeBundle(a *spec.App, name string) (*bundleFile, bundle.Meta, error) {
	libs, err := addonLibraries(a)
	if err != nil {
		return nil, bundle.Meta{}, err
	}
	meta := bundle.Meta{
		Format:    bundle.Format,
		App:       name,
		Entry:     a.Entry,
		NodeArgs:  a.NodeArgs,
		Engines:   a.Engines,
		Libraries: libs,
	}
	dir, err := bundleTempDir()
	if err != nil {
		return nil, meta, err
	}
	f, err := os.CreateTemp(dir, "bundle-*.tar.zst")
	if err != nil {
		return nil, meta, fmt.Errorf("creating the bundle file: %w", err)
	}
	fail := func(err error) (*bundleFile, bundle.Meta, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, meta, err
	}
	h := sha256.New()
	if err := bundle.Write(io.MultiWriter(f, h), meta, bundle.FromSpec(a.SrcDir, a.Files)); err != nil {
		return fail(fmt.Errorf("bundling %s: %w", a.SrcDir, err))
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fail(fmt.Errorf("bundle file %s: %w", f.Name(), err))
	}
	return &bundleFile{file: f, path: f.Name(), size: size, digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}, meta, nil
}

// bundleTempDir is where bundles wait for their upload: the user cache
// dir, where nodeboot keeps everything it makes, else the temp dir.
func bundleTempDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return os.TempDir(), nil
	}
	dir := filepath.Join(cache, "nodeboot", "deploy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s for the bundle: %w", dir, err)
	}
	return dir, nil
}

// addonLibraries are the sonames the app's native addons need, found the
// way the image build finds them (internal/elfdeps). The node resolves
// them again against its own root and refuses what it lacks; listing them
// lets it say which.
func addonLibraries(a *spec.App) ([]string, error) {
	var rels []string
	for _, f := range a.Files {
		if f.Mode.IsRegular() {
			rels = append(rels, f.Rel)
		}
	}
	// The node's arch is not known here; its own check (the same
	// selection for its arch) is the one that refuses. This list only
	// lets it name the libraries, so a selection error is left to it.
	native, _, _ := elfdeps.SelectNative(a.SrcDir, rels, runtime.GOARCH)
	if len(native) == 0 {
		return nil, nil
	}
	var bins []string
	for _, n := range native {
		bins = append(bins, filepath.Join(a.SrcDir, filepath.FromSlash(n.Rel)))
	}
	c, err := elfdeps.Resolve(bins, elfdeps.Options{})
	if err != nil {
		return nil, err
	}
	var libs []string
	for _, f := range c.Files {
		if f.Soname != "" && !slices.Contains(libs, f.Soname) {
			libs = append(libs, f.Soname)
		}
	}
	slices.Sort(libs)
	return libs, nil
}

// progressTo returns w when it is a terminal, else nil: a progress bar in
// a log file or a pipe is only noise (every redraw a line of it).
func progressTo(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return w
	}
	return nil
}

// uploadBar is a progress bar on w when w is a terminal, else nil.
func uploadBar(w io.Writer, total int64, desc string) *progressbar.ProgressBar {
	if progressTo(w) == nil {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
		// The upload ends long before the node's verdict: say what the
		// wait is for.
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w, "\nwaiting for the new version to prove healthy") }),
	)
}

// printUnhealthy prints the last lines of a version the node found
// unhealthy (422), so the user sees why without another command.
func printUnhealthy(w io.Writer, err error) {
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity {
		return
	}
	// The error itself follows and says what happened; these are why.
	if len(e.Logs) == 0 {
		fmt.Fprintln(w, "the new version wrote no log lines")
		return
	}
	fmt.Fprintln(w, "last lines of the new version:")
	for _, l := range e.Logs {
		fmt.Fprintln(w, "  "+l)
	}
}

// printResult says which version runs now.
func printResult(w io.Writer, did string, t *target, r *client.DeployResult) error {
	_, err := fmt.Fprintf(w, "%s %s on %s: %s now %s (was %s)\n", did, r.App, t.label(), shortVersion(r.Version), orDash(r.State), shortVersion(r.PreviousVersion))
	if r.Warning != "" {
		fmt.Fprintf(w, "warning: %s\n", r.Warning)
	}
	return err
}

// runDeployRelease deploys an app of the release at refArg: its layers
// are fetched (from the registry, resuming, or the oci: directory), checked
// and assembled into the bundle a plain deploy would send.
func runDeployRelease(ctx context.Context, node, refArg string, nf nodeFlags, appFlag string, insecure bool, stdout, stderr io.Writer) error {
	t, err := connect(nf.project, ".", node)
	if err != nil {
		return err
	}
	key, _, err := updateKey(t.project)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rel, err := pullRelease(ctx, refArg, insecure, key, stderr)
	if err != nil {
		return err
	}
	names := rel.AppNames()
	name := appFlag
	if name == "" {
		if len(names) != 1 {
			return fmt.Errorf("release %s holds %s: say which to deploy with --app", refArg, orNone(names))
		}
		name = names[0]
	}
	a := rel.Record.App(name)
	if a == nil {
		return fmt.Errorf("--app %s: release %s holds no app of that name; its apps: %s", name, refArg, orNone(names))
	}
	s, err := t.status(ctx)
	if err != nil {
		return err
	}
	if err := t.checkApp(s, name); err != nil {
		return fmt.Errorf("%w: deploy replaces an app of the node's image; push the release from the project the node was built from", err)
	}
	if err := checkEngines(a.Meta.Engines, s.Node.NodeVersion, name, t); err != nil {
		return err
	}
	dir, err := bundleTempDir()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "bundle-*.tar.zst")
	if err != nil {
		return fmt.Errorf("creating the bundle file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	digest, err := rel.WriteBundle(ctx, name, f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bundle of %s from the release: %s, %s\n", name, bytesIEC(uint64(a.Bundle.Size)), shortVersion(digest))
	var progress io.Writer
	if bar := uploadBar(stderr, a.Bundle.Size, "deploying "+name); bar != nil {
		progress = bar
		defer bar.Close()
	}
	r, err := t.c.Deploy(ctx, name, f, a.Bundle.Size, digest, progress)
	if err != nil {
		printUnhealthy(stderr, err)
		return t.explain(err)
	}
	if nf.json {
		return printJSON(stdout, r)
	}
	return printResult(stdout, "deployed", t, r)
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "no app"
	}
	return strings.Join(names, ", ")
}
