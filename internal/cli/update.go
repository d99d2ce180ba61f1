package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// updatePoll is how often update asks a rebooting node whether its trial
// ended.
const updatePoll = 2 * time.Second

type updateFlags struct {
	nf             nodeFlags
	bf             buildFlags
	image          string
	allowDowngrade bool
	insecure       bool
	noWait         bool
	wait           time.Duration
}

func newUpdate(stdout, stderr io.Writer) *cobra.Command {
	var f updateFlags
	cmd := &cobra.Command{
		Use:   "update NODE [APP_DIR | REF]",
		Short: "Update the OS of a node flashed with a disk image",
		Long: `Update the whole image of a node flashed with a disk image (nodeboot build
--format disk): its kernel, node, PID 1, nodeboot.json and the apps.

The project in APP_DIR (default: the current directory) is built exactly as
'nodeboot build --format disk' builds it, its OS payload (kernel and root file
system) signed with .nodeboot/update.key and streamed to the node, which
writes it into its other root slot, verifying every chunk, and reboots into
it once as a trial. The node keeps it only when every app stays healthy for
update.healthySeconds (nodeboot.json, default 30); otherwise, or when the new
system does not come up at all, it boots its previous image again by itself.
/data is kept either way.

With REF (registry/repo:tag or oci:DIR[:TAG]) instead of APP_DIR, the OS
update of a release made by 'nodeboot push --os' is sent, after its
signature is checked against the project's update key (docs/oci.md).

update waits for the outcome (unless --no-wait) and exits 0 when the new
image runs, 1 when the trial failed (with the reason and the trial's last
notes; the previous image runs again).`,
		Example: `  nodeboot update pi
  nodeboot update local ./myapp
  nodeboot update pi --image out/disk.img
  nodeboot update pi oci:/media/usb/fleet:stable`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUpdate(cmd.Context(), args, f, stdout, stderr)
		},
	}
	f.nf.register(cmd.Flags(), true)
	f.bf.register(cmd.Flags())
	cmd.Flags().StringVar(&f.image, "image", "", "send this disk image (made by nodeboot build --format disk) instead of building APP_DIR")
	cmd.Flags().BoolVar(&f.allowDowngrade, "allow-downgrade", false, "accept sending an image older than (or the same as) the one the node runs")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry of a REF (a registry on this machine may always use it)")
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "return once the node has accepted the update, without waiting for its trial boot")
	cmd.Flags().DurationVar(&f.wait, "wait", 30*time.Minute, "how long to wait for the trial's outcome")
	return cmd
}

func runUpdate(ctx context.Context, args []string, f updateFlags, stdout, stderr io.Writer) error {
	dir := "."
	if len(args) == 2 {
		dir = args[1]
	}
	start := dir
	if isReleaseRef(dir) {
		start = "."
	}
	t, err := connect(f.nf.project, start, args[0])
	if err != nil {
		return err
	}
	before, err := t.status(ctx)
	if err != nil {
		return err
	}
	if before.OS == nil || before.OS.NoSlots {
		return fmt.Errorf("node %s booted from an initramfs and has no root slots to update: flash it with a disk image (nodeboot build --format disk, then nodeboot write)", t.label())
	}
	cr, err := creds.Load(t.project)
	if err != nil {
		return err
	}
	if cr.UpdateKey == nil {
		return fmt.Errorf("%s has no %s: run nodeboot build once to create it, then build and flash the node's image with it (the node trusts only the key its image carries)", filepath.Join(t.project, creds.Dir), creds.UpdateKeyFile)
	}

	var hdrP *ospayload.Header
	var p osStream
	if isReleaseRef(dir) {
		rel, err := pullRelease(ctx, dir, f.insecure, cr.UpdateKey, stderr)
		if err != nil {
			return err
		}
		op, err := rel.FetchOS(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		hdrP, p = op.Header, op
	} else {
		op, cleanup, err := makeOSPayload(ctx, dir, f.image, f.bf, cr.UpdateKey, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		hdrP, p = op.Header, op
	}
	var hdr bytes.Buffer
	if _, err := hdrP.WriteTo(&hdr); err != nil {
		return err
	}
	var from int64
	if o, err := t.c.UpdateOffset(ctx, hdr.Bytes()); err == nil {
		from = o.Offset
	}
	r, err := p.Open(from)
	if err != nil {
		return err
	}
	defer r.Close()
	size := p.Size() - from
	m := hdrP.Manifest
	fmt.Fprintf(stderr, "OS update %s (version %d): kernel %s, root file system %s\n", m.Image, m.Version, bytesIEC(uint64(m.Kernel.Size)), bytesIEC(uint64(m.RootFS.Size)))
	if from > 0 {
		fmt.Fprintf(stderr, "the node holds %s of it already: resuming\n", bytesIEC(uint64(from)))
	}

	sctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer
	if bar := uploadBar(stderr, size, "updating "+t.name); bar != nil {
		progress = bar
		defer bar.Close()
	}
	acc, err := t.c.Update(sctx, r, size, from, f.allowDowngrade, progress)
	if err != nil {
		return t.explain(err)
	}
	was := "-"
	if b := before.OS.Booted(); b != nil && b.Image != nil {
		was = b.Image.ID
	}
	if f.noWait {
		fmt.Fprintf(stdout, "node %s accepted image %s into slot %s and reboots into its trial (it runs %s until then)\n", t.label(), acc.Image.ID, strings.ToUpper(acc.Slot), was)
		return nil
	}
	fmt.Fprintf(stderr, "slot %s armed; the node reboots into its trial: waiting for the outcome\n", strings.ToUpper(acc.Slot))
	o, err := waitTrial(sctx, t, before, acc.Image.ID, f.wait)
	if err != nil {
		return err
	}
	if f.nf.json {
		if err := printJSON(stdout, o); err != nil {
			return err
		}
	}
	if o.OK {
		if !f.nf.json {
			fmt.Fprintf(stdout, "updated %s: image %s now running (was %s)\n", t.label(), acc.Image.ID, was)
		}
		return nil
	}
	if len(o.Notes) > 0 {
		fmt.Fprintln(stderr, "the trial boot's last notes:")
		for _, n := range o.Notes {
			fmt.Fprintln(stderr, "  "+n)
		}
	}
	return fmt.Errorf("the update of %s to image %s failed: %s; the node runs %s again", t.label(), acc.Image.ID, o.Reason, was)
}

// osStream is an OS update ready to send: made here from a disk image
// (ospayload.Payload) or pulled from a release (oci.OSPayload).
type osStream interface {
	Size() int64
	Open(from int64) (io.ReadCloser, error)
}

// makeOSPayload builds the project in dir as 'nodeboot build --format
// disk' does (or takes img, a disk image built before) and makes its
// signed OS update payload; cleanup removes the build. On an error it has
// removed the build itself (cleanup is then a no-op), so no failure path of
// a caller leaves a disk image behind in the user cache.
func makeOSPayload(ctx context.Context, dir, img string, bf buildFlags, key ed25519.PrivateKey, stderr io.Writer) (_ *ospayload.Payload, cleanup func(), err error) {
	cleanup = func() {}
	defer func() {
		if err != nil {
			cleanup()
			cleanup = func() {}
		}
	}()
	id, tgt := "", bf.target
	if img == "" {
		tmp, err := updateTempDir()
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = func() { os.RemoveAll(tmp) }
		bf.format = build.FormatDisk
		o, err := bf.options(dir, filepath.Join(tmp, "disk.img"), stderr)
		if err != nil {
			return nil, cleanup, err
		}
		res, err := build.Build(ctx, o)
		if err != nil {
			return nil, cleanup, err
		}
		img, id = res.DiskPath, res.Manifest.ImageVersion
	} else if b, err := os.ReadFile(build.DiskManifestPath(img)); err == nil {
		var m struct {
			ImageVersion string `json:"imageVersion"`
			Target       string `json:"target"`
		}
		if json.Unmarshal(b, &m) == nil {
			id = m.ImageVersion
			if m.Target != "" {
				tgt = m.Target
			}
		}
	}
	// The version is the time the payload is made: it grows with every
	// update sent, while the image itself carries none, so that the same
	// inputs still build the same bytes.
	o := ospayload.BuildOptions{Key: key, Version: uint64(time.Now().Unix()), Image: id}
	if bf.flags == nil || bf.flags.Changed("arch") || img == "" {
		// Built here for --arch, or an --arch the user gave for an image
		// built before: checked against the image's kernel. Otherwise the
		// image says (an arm64 image's update is an arm64 update whatever
		// the host is).
		o.Arch = bf.arch
	}
	if tgt == build.TargetPi {
		// A Pi's payload carries its slot's boot set; the node refuses
		// one for another target.
		o.Target, o.Arch = ospayload.TargetPi, "arm64"
	}
	p, err := ospayload.FromImage(img, o)
	if err != nil {
		return nil, cleanup, fmt.Errorf("making the OS update from %s: %w", img, err)
	}
	return p, cleanup, nil
}

// waitTrial polls the node until the trial of image has an outcome on a
// boot after bootID: committed on the trial slot, or failed and recorded
// by the old slot after the boot loader fell back to it.
func waitTrial(ctx context.Context, t *target, before *contract.Status, image string, limit time.Duration) (*contract.UpdateOutcome, error) {
	bootID := before.Node.BootID
	// An earlier outcome for the same image (sent before and failed) is
	// not this one's.
	var earlier time.Time
	if before.OS != nil && before.OS.Last != nil {
		earlier = before.OS.Last.At
	}
	deadline := time.Now().Add(limit)
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := t.c.Status(qctx)
		cancel()
		if err == nil && s.Node.BootID != bootID && s.OS != nil {
			if l := s.OS.Last; l != nil && l.Image.ID == image && !l.At.Equal(earlier) {
				return l, nil
			}
		}
		if errors.Is(err, creds.ErrWrongNode) {
			return nil, t.explain(err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("node %s did not report the outcome of the update within %v: see its console, or `nodeboot status %s` later", t.label(), limit, t.name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting (the update goes on on the node; `nodeboot status %s` shows its outcome): %w", t.name, ctx.Err())
		case <-time.After(updatePoll):
		}
	}
}

// updateTempDir is a fresh directory for the image update builds, in the
// user cache dir where nodeboot keeps what it makes.
func updateTempDir() (string, error) {
	base := os.TempDir()
	if cache, err := os.UserCacheDir(); err == nil {
		base = filepath.Join(cache, "nodeboot", "update")
		if err := os.MkdirAll(base, 0o700); err != nil {
			return "", fmt.Errorf("creating %s for the image: %w", base, err)
		}
	}
	return os.MkdirTemp(base, "build-*")
}

// printOS writes the root slots and the last OS update (status).
func printOS(w io.Writer, os *contract.OSStatus) {
	if os == nil || len(os.Slots) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tSTATE\tIMAGE\tVERSION\tBUILT")
	for _, sl := range os.Slots {
		name := strings.ToUpper(sl.Name)
		if sl.Booted {
			name += " (booted)"
		}
		state := sl.State
		if sl.State == "trial" && sl.TriesLeft > 0 {
			state = fmt.Sprintf("trial (%d tries left)", sl.TriesLeft)
		}
		img, ver, built := "-", "-", "-"
		if sl.Image != nil {
			img, ver = orDash(sl.Image.ID), strconv.FormatUint(sl.Image.Version, 10)
			if !sl.Image.Built.IsZero() {
				built = sl.Image.Built.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, state, img, ver, built)
	}
	tw.Flush()
	if l := os.Last; l != nil {
		if l.OK {
			fmt.Fprintf(w, "last OS update: to %s, kept (was %s)\n", l.Image.ID, orDash(l.From.ID))
		} else {
			fmt.Fprintf(w, "last OS update: to %s failed: %s\n", l.Image.ID, l.Reason)
		}
	}
}
