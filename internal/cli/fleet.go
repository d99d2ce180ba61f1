package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/fleet"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// The fleet verbs act on every node of .nodeboot/nodes.json (or those of
// --nodes): status asks them all at once, deploy and update roll a change
// over them a few at a time (internal/fleet), stopping at the first node
// that fails its health gate.

func newFleet(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Act on every node of the project (.nodeboot/nodes.json)",
		Long: `Act on the nodes named in the project's .nodeboot/nodes.json ('nodeboot fleet
add' records one; 'nodeboot run' records its VM as "local").

  fleet status    asks every node at once: reachable, image, app versions,
                  the tag it follows and whether it runs what the tag names
  fleet deploy    deploys the app to the nodes, --max-unavailable at a time
  fleet update    sends the OS update to the nodes, --max-unavailable at a time

deploy and update stop at the first node that fails its health gate (that
node runs its previous version again by itself) and name it; the nodes not
reached yet keep what they run.`,
	}
	cmd.AddCommand(newFleetStatus(stdout, stderr), newFleetDeploy(stdout, stderr), newFleetUpdate(stdout, stderr), newFleetAdd(stdout, stderr))
	return cmd
}

// fleetFlags are the flags of the fleet verbs.
type fleetFlags struct {
	nf             nodeFlags
	nodes          []string
	maxUnavailable int
}

func (f *fleetFlags) register(cmd *cobra.Command, rolling bool) {
	f.nf.register(cmd.Flags(), true)
	cmd.Flags().StringSliceVar(&f.nodes, "nodes", nil, "only these nodes of nodes.json, in this order (default: all, by name)")
	if rolling {
		cmd.Flags().IntVar(&f.maxUnavailable, "max-unavailable", 1, "how many nodes change at once")
	}
}

// fleetNodes is the project's credentials and the chosen nodes.
type fleetNodes struct {
	project string
	cr      *creds.Creds
	names   []string
	targets map[string]*target
}

func loadFleet(f fleetFlags, start string) (*fleetNodes, error) {
	proj := f.nf.project
	if proj == "" {
		p, err := creds.FindProject(start)
		if err != nil {
			return nil, fmt.Errorf("%w; or pass --project DIR", err)
		}
		proj = p
	}
	cr, err := creds.Load(proj)
	if err != nil {
		return nil, err
	}
	all, err := creds.ReadNodes(proj)
	if err != nil {
		return nil, err
	}
	nodesFile := filepath.Join(proj, creds.Dir, creds.NodesFile)
	if len(all) == 0 {
		return nil, fmt.Errorf("%s names no nodes: add them with nodeboot fleet add NAME HOST[:PORT]", nodesFile)
	}
	known := make([]string, 0, len(all))
	for n := range all {
		known = append(known, n)
	}
	sort.Strings(known)
	names := known
	if len(f.nodes) > 0 {
		names = nil
		for _, n := range f.nodes {
			n = strings.TrimSpace(n)
			if _, ok := all[n]; !ok {
				return nil, fmt.Errorf("--nodes: %q is not a node of %s; its nodes: %s", n, nodesFile, strings.Join(known, ", "))
			}
			if slices.Contains(names, n) {
				return nil, fmt.Errorf("--nodes: %q is named twice", n)
			}
			names = append(names, n)
		}
	}
	if f.maxUnavailable < 0 {
		return nil, fmt.Errorf("--max-unavailable %d: give a number of nodes, 1 or more", f.maxUnavailable)
	}
	fn := &fleetNodes{project: proj, cr: cr, names: names, targets: map[string]*target{}}
	for _, n := range names {
		fn.targets[n] = &target{project: proj, name: n, c: client.New(all[n].Address, cr.ClientTLS(), cr.Token)}
	}
	return fn, nil
}

// FleetNode is one row of fleet status --json.
type FleetNode struct {
	Name      string           `json:"name"`
	Address   string           `json:"address"`
	Reachable bool             `json:"reachable"`
	Error     string           `json:"error,omitempty"`
	Status    *contract.Status `json:"status,omitempty"`
}

func newFleetStatus(stdout, stderr io.Writer) *cobra.Command {
	var f fleetFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node of the project at once",
		Long: `Ask every node of .nodeboot/nodes.json (or --nodes) for its status at once and
print one row each: reachable or why not, image, app versions, the tag it
follows and whether it runs what the tag names. Exits 1 when a node cannot
be reached.`,
		Example: `  nodeboot fleet status
  nodeboot fleet status --nodes kiosk-1,kiosk-2 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFleetStatus(cmd.Context(), f, stdout)
		},
	}
	f.register(cmd, false)
	return cmd
}

func runFleetStatus(ctx context.Context, f fleetFlags, stdout io.Writer) error {
	fn, err := loadFleet(f, ".")
	if err != nil {
		return err
	}
	answers := fleet.Ask(ctx, fn.names, 32, func(ctx context.Context, n string) (*contract.Status, error) {
		qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return fn.targets[n].status(qctx)
	})
	rows := make([]FleetNode, 0, len(answers))
	unreachable := 0
	for _, a := range answers {
		r := FleetNode{Name: a.Node, Address: fn.targets[a.Node].c.Address(), Reachable: a.Err == nil, Status: a.Value}
		if a.Err != nil {
			r.Error = a.Err.Error()
			unreachable++
		}
		rows = append(rows, r)
	}
	if f.nf.json {
		if err := printJSON(stdout, rows); err != nil {
			return err
		}
	} else {
		printFleet(stdout, rows)
	}
	if unreachable > 0 {
		return fmt.Errorf("%d of %d nodes did not answer", unreachable, len(rows))
	}
	return nil
}

func printFleet(w io.Writer, rows []FleetNode) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREACHABLE\tIMAGE\tAPPS\tFOLLOWS\tBEHIND")
	for _, r := range rows {
		if !r.Reachable {
			fmt.Fprintf(tw, "%s\tno: %s\t-\t-\t-\t-\n", r.Name, r.Error)
			continue
		}
		s := r.Status
		var apps []string
		for _, a := range s.Apps {
			apps = append(apps, fmt.Sprintf("%s@%s (%s)", a.Name, shortVersion(a.Version), orDash(a.State)))
		}
		img := shortVersion(s.Node.ImageVersion)
		if s.OS != nil {
			if b := s.OS.Booted(); b != nil && b.Image != nil && b.Image.ID != "" {
				img = b.Image.ID
			}
		}
		follows, behind := "-", "-"
		if fl := s.Follow; fl != nil {
			follows = fl.Ref
			behind = "no"
			if fl.Behind() {
				behind = "yes: " + fl.State
				if fl.LastError != "" {
					behind += ": " + fl.LastError
				}
			}
		}
		fmt.Fprintf(tw, "%s\tyes\t%s\t%s\t%s\t%s\n", r.Name, img, orDash(strings.Join(apps, ", ")), follows, behind)
	}
	tw.Flush()
}

// printFollow writes the followed tag (status).
func printFollow(w io.Writer, f *contract.FollowStatus) {
	if f == nil {
		return
	}
	fmt.Fprintf(w, "\nfollows %s: %s\n", f.Ref, f.State)
	check := "never"
	if !f.LastCheck.IsZero() {
		check = f.LastCheck.UTC().Format(time.RFC3339)
	}
	applied := orDash(shortVersion(f.Applied))
	if f.Version != "" {
		applied += " (" + f.Version + ")"
	}
	fmt.Fprintf(w, "  last check %s, applied %s", check, applied)
	if f.Behind() {
		fmt.Fprintf(w, ", the tag names %s", shortVersion(f.Target))
	}
	if f.PullCredentials {
		fmt.Fprint(w, "; has pull credentials")
	}
	fmt.Fprintln(w)
	if !f.WaveOpens.IsZero() {
		fmt.Fprintf(w, "  its wave opens at %s\n", f.WaveOpens.UTC().Format(time.RFC3339))
	}
	if f.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", f.LastError)
	}
}

// rollOut runs step over the chosen nodes and prints each node's
// progress on stderr.
func rollOut(ctx context.Context, fn *fleetNodes, f fleetFlags, verb string, step fleet.Step, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	width := max(f.maxUnavailable, 1)
	fmt.Fprintf(stderr, "%s %d nodes, %d at a time: %s\n", verb, len(fn.names), width, strings.Join(fn.names, ", "))
	var mu sync.Mutex
	res := fleet.Roll(ctx, fn.names, step, fleet.Options{MaxUnavailable: width, Report: func(e fleet.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case fleet.Started:
			fmt.Fprintf(stderr, "%s: started\n", e.Node)
		case fleet.Done:
			fmt.Fprintf(stderr, "%s: done\n", e.Node)
		case fleet.Failed:
			fmt.Fprintf(stderr, "%s: FAILED: %v\n", e.Node, e.Err)
		}
	}})
	if f.nf.json {
		type failed struct {
			Node  string `json:"node"`
			Error string `json:"error"`
		}
		out := struct {
			Done      []string `json:"done"`
			Failed    []failed `json:"failed"`
			Untouched []string `json:"untouched"`
		}{Done: orEmpty(res.Done), Failed: []failed{}, Untouched: orEmpty(res.Untouched)}
		for _, e := range res.Failed {
			out.Failed = append(out.Failed, failed{e.Node, e.Err.Error()})
		}
		if err := printJSON(stdout, out); err != nil {
			return err
		}
	}
	if err := res.Err(); err != nil {
		return err
	}
	if !f.nf.json {
		fmt.Fprintf(stdout, "%s all %d nodes: %s\n", pastTense(verb), len(res.Done), strings.Join(fn.names, ", "))
	}
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func pastTense(verb string) string {
	switch verb {
	case "deploying to":
		return "deployed to"
	case "updating":
		return "updated"
	}
	return verb
}

func newFleetDeploy(stdout, stderr io.Writer) *cobra.Command {
	var f fleetFlags
	var app string
	cmd := &cobra.Command{
		Use:   "deploy [APP_DIR]",
		Short: "Deploy the app to every node, a few at a time",
		Long: `Deploy the app in APP_DIR (default: the current directory) to the nodes of
.nodeboot/nodes.json (or --nodes, in that order), --max-unavailable at a time,
as 'nodeboot deploy' does to one: the bundle is made once, each node keeps
the new version only when it is healthy. The rollout stops at the first node
that fails (which runs its old version again) and says which; the nodes it
had not reached keep theirs.`,
		Example: `  nodeboot fleet deploy
  nodeboot fleet deploy ./api --app api --nodes edge-1,edge-2 --max-unavailable 2`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFleetDeploy(cmd.Context(), args, f, app, stdout, stderr)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&app, "app", "", "the nodes' app to replace (default: the app's name in nodeboot.json or package.json)")
	return cmd
}

func runFleetDeploy(ctx context.Context, args []string, f fleetFlags, appFlag string, stdout, stderr io.Writer) error {
	dir := "."
	if len(args) == 1 {
		dir = args[0]
	}
	proj, err := spec.Load(dir, "")
	if err != nil {
		return err
	}
	a, name, err := pickApp(proj, appFlag)
	if err != nil {
		return err
	}
	fn, err := loadFleet(f, proj.Dir)
	if err != nil {
		return err
	}
	bf, _, err := writeBundle(a, name)
	if err != nil {
		return err
	}
	defer os.Remove(bf.path)
	bf.file.Close()
	fmt.Fprintf(stderr, "bundle of %s: %d files, %s, %s\n", name, len(a.Files), bytesIEC(uint64(bf.size)), shortVersion(bf.digest))
	var out sync.Mutex
	step := func(ctx context.Context, n string) error {
		t := fn.targets[n]
		s, err := t.status(ctx)
		if err != nil {
			return err
		}
		if err := t.checkApp(s, name); err != nil {
			return err
		}
		if err := checkEngines(a.Engines, s.Node.NodeVersion, name, t); err != nil {
			return err
		}
		body, err := os.Open(bf.path)
		if err != nil {
			return err
		}
		defer body.Close()
		r, err := t.c.Deploy(ctx, name, body, bf.size, bf.digest, nil)
		if err != nil {
			out.Lock()
			printUnhealthy(stderr, err)
			out.Unlock()
			return t.explain(err)
		}
		out.Lock()
		defer out.Unlock()
		if !f.nf.json {
			return printResult(stderr, "deployed", t, r)
		}
		return nil
	}
	return rollOut(ctx, fn, f, "deploying to", step, stdout, stderr)
}

func newFleetUpdate(stdout, stderr io.Writer) *cobra.Command {
	var f fleetFlags
	var bf buildFlags
	var allowDowngrade, insecure bool
	var image string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "update [APP_DIR|REF]",
		Short: "Update the OS of every node, a few at a time",
		Long: `Build the project in APP_DIR as 'nodeboot update' does (once; or take the disk
image --image names, or the OS update of a release REF made by 'nodeboot push
--os'), then send the signed OS update to the nodes of .nodeboot/nodes.json
(or --nodes, in that order), --max-unavailable at a time, each waiting for
its node's trial boot. The rollout stops at the first node whose trial fails
(it boots its previous image again by itself) and says which; the nodes it
had not reached keep their image.`,
		Example: `  nodeboot fleet update
  nodeboot fleet update --nodes a,b,c --max-unavailable 1
  nodeboot fleet update --image out/disk.img
  nodeboot fleet update registry.example.com/shop/web:stable`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFleetUpdate(cmd.Context(), args, f, bf, image, allowDowngrade, insecure, wait, stdout, stderr)
		},
	}
	f.register(cmd, true)
	bf.register(cmd.Flags())
	cmd.Flags().StringVar(&image, "image", "", "send this disk image (made by nodeboot build --format disk) instead of building APP_DIR")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "accept sending an image older than (or the same as) the one a node runs")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to the registry of a REF (a registry on this machine may always use it)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Minute, "how long to wait for each node's trial outcome")
	return cmd
}

func runFleetUpdate(ctx context.Context, args []string, f fleetFlags, bf buildFlags, image string, allowDowngrade, insecure bool, wait time.Duration, stdout, stderr io.Writer) error {
	dir := "."
	if len(args) == 1 {
		dir = args[0]
	}
	start := dir
	if isReleaseRef(dir) {
		if image != "" {
			return usageError{errors.New("--image and a REF both name the OS update: give one")}
		}
		start = "."
	}
	fn, err := loadFleet(f, start)
	if err != nil {
		return err
	}
	if fn.cr.UpdateKey == nil {
		return fmt.Errorf("%s has no %s: run nodeboot build once to create it, then build and flash the nodes' image with it", filepath.Join(fn.project, creds.Dir), creds.UpdateKeyFile)
	}
	// One payload for every node: built (or read) once.
	var hdrP *ospayload.Header
	var p osStream
	if isReleaseRef(dir) {
		rel, err := pullRelease(ctx, dir, insecure, fn.cr.UpdateKey, stderr)
		if err != nil {
			return err
		}
		op, err := rel.FetchOS(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		hdrP, p = op.Header, op
	} else {
		op, cleanup, err := makeOSPayload(ctx, dir, image, bf, fn.cr.UpdateKey, stderr)
		defer cleanup()
		if err != nil {
			return err
		}
		hdrP, p = op.Header, op
	}
	var hdr bytes.Buffer
	if _, err := hdrP.WriteTo(&hdr); err != nil {
		return err
	}
	m := hdrP.Manifest
	fmt.Fprintf(stderr, "OS update %s (version %d): kernel %s, root file system %s\n", m.Image, m.Version, bytesIEC(uint64(m.Kernel.Size)), bytesIEC(uint64(m.RootFS.Size)))
	step := func(ctx context.Context, n string) error {
		t := fn.targets[n]
		before, err := t.status(ctx)
		if err != nil {
			return err
		}
		if before.OS == nil || before.OS.NoSlots {
			return fmt.Errorf("it booted from an initramfs and has no root slots to update: flash it with a disk image (nodeboot build --format disk, then nodeboot write)")
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
		acc, err := t.c.Update(ctx, r, p.Size()-from, from, allowDowngrade, nil)
		if err != nil {
			return t.explain(err)
		}
		o, err := waitTrial(ctx, t, before, acc.Image.ID, wait)
		if err != nil {
			return err
		}
		if !o.OK {
			msg := fmt.Sprintf("its trial of image %s failed: %s; it runs its previous image again", acc.Image.ID, o.Reason)
			if len(o.Notes) > 0 {
				msg += " (last note: " + o.Notes[len(o.Notes)-1] + ")"
			}
			return errors.New(msg)
		}
		return nil
	}
	return rollOut(ctx, fn, f, "updating", step, stdout, stderr)
}

func newFleetAdd(stdout, stderr io.Writer) *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:   "add NAME HOST[:PORT]",
		Short: "Record a node in .nodeboot/nodes.json",
		Long: `Record a node under NAME in the project's .nodeboot/nodes.json, so that every
verb takes NAME and the fleet verbs include it. The port defaults to 9443.
The node must run an image built from this project (it answers only to its
credentials).`,
		Example: `  nodeboot fleet add kiosk-1 192.168.1.20`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			proj := project
			if proj == "" {
				p, err := creds.FindProject(".")
				if err != nil {
					return fmt.Errorf("%w; or pass --project DIR", err)
				}
				proj = p
			}
			addr, err := creds.Resolve(proj, args[1])
			if err != nil {
				return err
			}
			if err := creds.RecordNode(proj, args[0], addr); err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "node %s is %s\n", args[0], addr)
			return err
		},
	}
	cmd.Flags().StringVar(&project, "project", "", "the project whose .nodeboot/ records the node (default: found upward from the current directory)")
	return cmd
}
