package cli

// What the node management verbs (status, logs, deploy, rollback, restart,
// reboot, poweroff) share: finding the project and its credentials,
// naming the node, and printing its answers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/creds"
)

// quickTimeout bounds the verbs that only ask the node something: an
// answer takes milliseconds, so a node that says nothing for this long is
// hung, and waiting for ever would hide that. Deploys and followed logs
// are bounded by Ctrl-C instead.
const quickTimeout = 60 * time.Second

// nodeFlags are the flags of every management verb.
type nodeFlags struct {
	project string
	json    bool
}

func (f *nodeFlags) register(fs *pflag.FlagSet, withJSON bool) {
	fs.StringVar(&f.project, "project", "", "the project whose .nodeboot/ holds the node's credentials (default: found upward from the current directory)")
	if withJSON {
		fs.BoolVar(&f.json, "json", false, "print the node's answer as JSON")
	}
}

// target is a node to talk to and how it was named.
type target struct {
	project string
	name    string // as the user gave it: a name from nodes.json or host[:port]
	c       *client.Client
}

// label names the node in messages: its name and, when that is a
// nodes.json name, its address.
func (t *target) label() string {
	if t.name == t.c.Address() {
		return t.name
	}
	return fmt.Sprintf("%s (%s)", t.name, t.c.Address())
}

// connect finds the project (--project, else upward from start), loads its
// credentials and resolves the node argument.
func connect(projectFlag, start, node string) (*target, error) {
	proj := projectFlag
	if proj == "" {
		p, err := creds.FindProject(start)
		if err != nil {
			return nil, fmt.Errorf("%w; or pass --project DIR", err)
		}
		proj = p
	} else if st, err := os.Stat(filepath.Join(proj, creds.Dir)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--project %s: no %s/ there: name the project whose nodeboot build made the node's image", proj, creds.Dir)
	}
	cr, err := creds.Load(proj)
	if err != nil {
		return nil, err
	}
	addr, err := creds.Resolve(proj, node)
	if err != nil {
		return nil, err
	}
	return &target{project: proj, name: node, c: client.New(addr, cr.ClientTLS(), cr.Token)}, nil
}

// explain adds to an error what the node's name tells: the local VM's port
// changes with every `nodeboot run`.
func (t *target) explain(err error) error {
	if err == nil {
		return nil
	}
	if t.name == "local" && client.StatusOf(err) == 0 && !errors.Is(err, creds.ErrWrongNode) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("node local: %w (\"local\" is the VM of the last nodeboot run, which must still be running)", err)
	}
	return err
}

// status asks the node for its status.
func (t *target) status(ctx context.Context) (*client.Status, error) {
	s, err := t.c.Status(ctx)
	return s, t.explain(err)
}

// checkApp returns an error listing the node's apps when app is not one.
func (t *target) checkApp(s *client.Status, app string) error {
	if s.App(app) != nil {
		return nil
	}
	return fmt.Errorf("node %s has no app %q; its apps: %s", t.label(), app, appList(s))
}

// appError turns a 404 for app into the list of the node's apps when the
// app is not on it (a 404 also means "no previous version" for a rollback,
// which the node's own text says better).
func (t *target) appError(ctx context.Context, app string, err error) error {
	if client.StatusOf(err) != http.StatusNotFound {
		return t.explain(err)
	}
	if s, serr := t.c.Status(ctx); serr == nil && s.App(app) == nil {
		return t.checkApp(s, app)
	}
	return err
}

func appList(s *client.Status) string {
	if len(s.Apps) == 0 {
		return "none"
	}
	return strings.Join(s.AppNames(), ", ")
}

// printJSON writes v indented, as --json asks.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// shortVersion shortens sha256:<64 hex> to its first 12 digits, as git
// does, for tables; --json has the whole digest.
func shortVersion(v string) string {
	if h, ok := strings.CutPrefix(v, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	// Image versions may come as bare hex digests.
	if len(v) > 16 && strings.Trim(v, "0123456789abcdef") == "" {
		return v[:12]
	}
	if v == "" {
		return "-"
	}
	return v
}
