package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
)

type pushFlags struct {
	bf       buildFlags
	withOS   bool
	image    string
	insecure bool
	waves    []string
	pause    bool
	json     bool
}

func newPush(stdout, stderr io.Writer) *cobra.Command {
	var f pushFlags
	cmd := &cobra.Command{
		Use:   "push [APP_DIR] REF",
		Short: "Publish the app (and its OS update) as a signed release in an OCI registry or directory",
		Long: `Publish the project in APP_DIR (default: the current directory) under REF:
registry/repository:tag of any OCI registry (credentials from the Docker
config, as docker push uses them: run docker login first), or oci:DIR[:TAG],
an OCI image layout directory (a USB stick for nodes without a network).

Each app goes as two layers, its node_modules and its own code, so pushing
a one-line change uploads only the small code layer. With --os, the disk
image is built as 'nodeboot update' builds it and its OS update goes too.
The release is signed with .nodeboot/update.key: nodes and 'nodeboot
deploy|update NODE REF' accept only what that key (or a key it endorsed)
signed, whatever the registry serves.

--wave SHARE@WHEN (repeatable) makes a phased rollout for nodes that follow
the tag: from WHEN (RFC 3339, or +DURATION from now) the nodes whose random
seed is below SHARE (10% or 0.1, cumulative, the last 100%) apply it.
--pause publishes it paused. docs/oci.md has the format.`,
		Example: `  nodeboot push registry.example.com/shop/web:canary
  nodeboot push ./web localhost:5000/web:stable --wave 10%@+0 --wave 100%@+6h
  nodeboot push --os oci:/media/usb/fleet:stable`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPush(cmd.Context(), args, f, stdout, stderr)
		},
	}
	f.bf.register(cmd.Flags())
	cmd.Flags().BoolVar(&f.withOS, "os", false, "also publish the OS update (builds the disk image)")
	cmd.Flags().StringVar(&f.image, "image", "", "with --os: publish this disk image's OS update instead of building one")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry (a registry on this machine may always use it)")
	cmd.Flags().StringArrayVar(&f.waves, "wave", nil, "a rollout wave SHARE@WHEN, e.g. 10%@+0 or 100%@2026-12-24T08:00:00Z (repeatable)")
	cmd.Flags().BoolVar(&f.pause, "pause", false, "publish the release paused: following nodes wait for nodeboot promote --resume")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the result as JSON")
	return cmd
}

func runPush(ctx context.Context, args []string, f pushFlags, stdout, stderr io.Writer) error {
	dir, refArg := ".", args[len(args)-1]
	if len(args) == 2 {
		dir = args[0]
	}
	ref, err := oci.ParseRef(refArg, f.insecure)
	if err != nil {
		return err
	}
	if f.image != "" && !f.withOS {
		return errors.New("--image goes with --os: it names the disk image whose OS update to publish")
	}
	waves, err := parseWaves(f.waves, time.Now())
	if err != nil {
		return err
	}
	proj, err := spec.Load(dir, f.bf.config)
	if err != nil {
		return err
	}
	key, chain, err := updateKey(proj.Dir)
	if err != nil {
		return err
	}
	pub := oci.Publication{Key: key, KeyChain: chain}
	if len(waves) > 0 || f.pause {
		pub.Rollout = &oci.Rollout{Waves: waves, Paused: f.pause}
	}
	for i := range proj.Apps {
		a := &proj.Apps[i]
		libs, err := addonLibraries(a)
		if err != nil {
			return err
		}
		pub.Apps = append(pub.Apps, oci.AppInput{
			Meta:  bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines, Libraries: libs},
			Files: bundle.FromSpec(a.SrcDir, a.Files),
		})
	}
	if f.withOS {
		p, cleanup, err := makeOSPayload(ctx, dir, f.image, f.bf, key, stderr)
		defer cleanup()
		if err != nil {
			return err
		}
		pub.OS = p
	}
	res, err := oci.Push(ctx, ref, pub, oci.Options{Insecure: f.insecure, UserAgent: "nodeboot/" + Version})
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, pushJSON(res))
	}
	for _, a := range res.Record.Apps {
		var parts []string
		for _, l := range a.Layers {
			parts = append(parts, fmt.Sprintf("%s %s", l.Role, bytesIEC(uint64(l.Size))))
		}
		fmt.Fprintf(stderr, "app %s: %s (version %s)\n", a.Name, strings.Join(parts, ", "), shortVersion(a.Bundle.Digest))
	}
	if o := res.Record.OS; o != nil {
		fmt.Fprintf(stderr, "OS update %s (version %d): kernel %s, root file system %s\n", o.Image, o.Version, bytesIEC(uint64(o.Kernel.Size)), bytesIEC(uint64(o.RootFS.Size)))
	}
	fmt.Fprintf(stdout, "pushed %s: %s (%s new, the rest was there already)\n", res.Ref, res.Digest, bytesIEC(uint64(res.Uploaded)))
	return nil
}

type pushResult struct {
	Ref      string      `json:"ref"`
	Digest   string      `json:"digest"`
	Uploaded int64       `json:"uploaded"`
	Sent     int64       `json:"sent"`
	Record   *oci.Record `json:"record"`
}

func pushJSON(r *oci.Pushed) pushResult {
	return pushResult{Ref: r.Ref.String(), Digest: r.Digest, Uploaded: r.Uploaded, Sent: r.Sent, Record: r.Record}
}

// updateKey loads the project's update key, which signs releases.
func updateKey(dir string) (ed25519.PrivateKey, []ospayload.Endorsement, error) {
	proj, err := creds.FindProject(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (its update.key signs releases)", err)
	}
	cr, err := creds.Load(proj)
	if err != nil {
		return nil, nil, err
	}
	if cr.UpdateKey == nil {
		return nil, nil, fmt.Errorf("%s has no %s: run nodeboot build once to create it (nodes trust only the key their image carries)", filepath.Join(proj, creds.Dir), creds.UpdateKeyFile)
	}
	return cr.UpdateKey, nil, nil
}

// parseWaves reads --wave SHARE@WHEN values.
func parseWaves(specs []string, now time.Time) ([]oci.Wave, error) {
	var ws []oci.Wave
	for _, s := range specs {
		share, when, ok := strings.Cut(s, "@")
		if !ok {
			return nil, fmt.Errorf("--wave %q: write SHARE@WHEN, e.g. 10%%@+0, 50%%@+2h or 100%%@2026-12-24T08:00:00Z", s)
		}
		var v float64
		var err error
		if p, isPct := strings.CutSuffix(share, "%"); isPct {
			v, err = strconv.ParseFloat(p, 64)
			v /= 100
		} else {
			v, err = strconv.ParseFloat(share, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("--wave %q: share %q is not a number: write 10%% or 0.1", s, share)
		}
		var at time.Time
		if d, rel := strings.CutPrefix(when, "+"); rel {
			dur := time.Duration(0)
			if d != "0" {
				if dur, err = time.ParseDuration(d); err != nil {
					return nil, fmt.Errorf("--wave %q: %q is not a duration like +30m or +6h", s, when)
				}
			}
			at = now.Add(dur).UTC().Truncate(time.Second)
		} else if at, err = time.Parse(time.RFC3339, when); err != nil {
			return nil, fmt.Errorf("--wave %q: %q is neither +DURATION nor an RFC 3339 time like 2026-12-24T08:00:00Z", s, when)
		}
		ws = append(ws, oci.Wave{Share: v, NotBefore: at.UTC()})
	}
	if err := (&oci.Rollout{Waves: ws}).Check(); err != nil {
		return nil, fmt.Errorf("--wave: %w", err)
	}
	return ws, nil
}

type promoteFlags struct {
	project  string
	insecure bool
	waves    []string
	noWaves  bool
	pause    bool
	resume   bool
	json     bool
}

func newPromote(stdout, stderr io.Writer) *cobra.Command {
	var f promoteFlags
	cmd := &cobra.Command{
		Use:   "promote SRC_REF DST_TAG",
		Short: "Point another tag (a channel: canary, stable) at a release",
		Long: `Point DST_TAG of SRC_REF's repository (or oci: directory) at the release
SRC_REF names. Promoting is retagging: the same release, no layer moves.

--wave, --no-waves, --pause and --resume change the rollout on the way:
the release record is signed again (with .nodeboot/update.key) and points
at the same layers. Pausing the tag nodes follow stops a rollout: nodes that
have not applied the release wait; --resume lets them go on.`,
		Example: `  nodeboot promote registry.example.com/shop/web:canary stable --wave 10%@+0 --wave 100%@+24h
  nodeboot promote registry.example.com/shop/web:stable stable --pause`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPromote(cmd.Context(), args, f, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&f.project, "project", "", "the project whose .nodeboot/update.key signed the release (default: found upward from the current directory)")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry (a registry on this machine may always use it)")
	cmd.Flags().StringArrayVar(&f.waves, "wave", nil, "replace the rollout's waves: SHARE@WHEN, e.g. 10%@+0 (repeatable)")
	cmd.Flags().BoolVar(&f.noWaves, "no-waves", false, "remove the waves: every node at once")
	cmd.Flags().BoolVar(&f.pause, "pause", false, "pause the rollout")
	cmd.Flags().BoolVar(&f.resume, "resume", false, "resume a paused rollout")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the result as JSON")
	return cmd
}

func runPromote(ctx context.Context, args []string, f promoteFlags, stdout, stderr io.Writer) error {
	src, err := oci.ParseRef(args[0], f.insecure)
	if err != nil {
		return err
	}
	if f.pause && f.resume {
		return errors.New("--pause and --resume together: choose one")
	}
	if f.noWaves && len(f.waves) > 0 {
		return errors.New("--no-waves and --wave together: choose one")
	}
	p := oci.Promotion{Pause: f.pause, Resume: f.resume}
	if len(f.waves) > 0 {
		if p.Waves, err = parseWaves(f.waves, time.Now()); err != nil {
			return err
		}
	}
	if f.noWaves {
		p.Waves = []oci.Wave{}
	}
	dir := "."
	if f.project != "" {
		dir = f.project
	}
	if p.Key, p.KeyChain, err = updateKey(dir); err != nil {
		return err
	}
	res, err := oci.Promote(ctx, src, args[1], p, oci.Options{Insecure: f.insecure, UserAgent: "nodeboot/" + Version})
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, pushJSON(res))
	}
	state := "every node at once"
	if ro := res.Record.Rollout; ro != nil {
		if ro.Paused {
			state = "paused"
		} else {
			var ws []string
			for _, w := range ro.Waves {
				ws = append(ws, fmt.Sprintf("%g%% from %s", w.Share*100, w.NotBefore.Format(time.RFC3339)))
			}
			state = strings.Join(ws, ", ")
		}
	}
	fmt.Fprintf(stdout, "%s now names %s (rollout: %s)\n", res.Ref, res.Digest, state)
	return nil
}

// isReleaseRef says whether a deploy or update argument names a release
// (oci:DIR, registry/repo:tag) rather than an app directory: an existing
// directory always wins.
func isReleaseRef(arg string) bool {
	if strings.HasPrefix(arg, oci.LayoutPrefix) {
		return true
	}
	if _, err := os.Stat(arg); err == nil {
		return false
	}
	first, _, ok := strings.Cut(arg, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost") && !strings.HasPrefix(arg, ".")
}

// pullRelease reads and verifies the release at refArg with the project's
// update key.
func pullRelease(ctx context.Context, refArg string, insecure bool, key ed25519.PrivateKey, stderr io.Writer) (*oci.Release, error) {
	ref, err := oci.ParseRef(refArg, insecure)
	if err != nil {
		return nil, err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	src := oci.Open(ref, oci.Options{Insecure: insecure, CacheDir: filepath.Join(cache, "nodeboot", "oci"), UserAgent: "nodeboot/" + Version})
	rel, err := src.Release(ctx, "", []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "release %s (%s), created %s, signed by key %s\n", ref, shortVersion(rel.Digest), rel.Record.Created.Format(time.RFC3339), ospayload.KeyID(rel.Signer))
	return rel, nil
}
