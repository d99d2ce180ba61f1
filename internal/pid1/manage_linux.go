package pid1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/appapi"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/deploy"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/persist"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

const (
	// APIPort is where the management API listens (docs/api.md).
	APIPort = contract.APIPort
	// apiDir holds the node's key, certificate and the owner's token hash.
	apiDir = contract.APIDir
	// appsStore is where deployed versions live.
	appsStore = "/data/apps"
	// healthTimeout bounds how long a new version may take to answer.
	healthTimeout = 30 * time.Second
	// healthSettle is how long a new version must stay up after its port
	// first answers: an app that listens and then crashes is not healthy.
	healthSettle = 2 * time.Second
)

// managedApp is one app as the management API sees it.
type managedApp struct {
	rt  spec.RuntimeApp
	svc *supervise.Service
	// tx changes the version it runs (internal/deploy) and serialises
	// restarts with that.
	tx *deploy.App
}

// node implements api.Node on top of the supervisor and the version store.
type node struct {
	log     *boot.Logger
	rt      *spec.Runtime
	store   *store.Store // nil when /data has no room for one
	power   chan<- boot.Action
	persist bool // /data is a real disk
	trial   bool // an OS update's trial boot: the image's apps run

	mu       sync.Mutex
	apps     map[string]*managedApp
	order    []string
	bootSecs float64
	// gate allows one deploy or rollback on the node at a time: each
	// holds a bundle's worth of disk and a restart's worth of CPU.
	gate *deploy.Gate
	// appAPI serves require('nodeboot') (appapi_linux.go); nil before
	// it starts.
	appAPI *appAPI
	// apiSrv is the management API once it serves; down is set at
	// shutdown, after which it does not start (shutdown_linux.go).
	apiSrv *api.Server
	down   bool
}

// versionCommand is the argv (after node) and dir for app a running the
// code in dir with meta's entry and node flags.
func versionCommand(a spec.RuntimeApp, dir string, meta *bundle.Meta) supervise.Command {
	entry, nodeArgs := a.Entry, a.NodeArgs
	if meta != nil {
		entry, nodeArgs = meta.Entry, meta.NodeArgs
	}
	if !filepath.IsAbs(entry) {
		entry = filepath.Join(dir, entry)
	}
	args := append(append(append([]string{}, nodeArgs...), entry), a.Args...)
	return supervise.Command{Args: args, Dir: dir}
}

// manage sets up app a's version transactions over its service s, and
// picks what s runs at boot: the store's current version, with its persist
// dirs bound, or the image's own. Call it before s runs.
func (n *node) manage(a spec.RuntimeApp, s *supervise.Service) *managedApp {
	cfg := deploy.Config{
		App:     a.Name,
		Service: s,
		Persist: persistOf(a),
		Health:  func(ctx context.Context) error { return probe(ctx, a) },
		Command: func(v *store.Version) supervise.Command {
			if v == nil {
				return versionCommand(a, a.Dir, nil)
			}
			return versionCommand(a, v.Dir, &v.Meta)
		},
		Admit:         func(v *store.Version) error { return n.check(a, v) },
		Gate:          n.gate,
		Log:           n.log.Printf,
		HealthTimeout: healthTimeout,
		Settle:        healthSettle,
		ImageFirst:    n.trial,
	}
	if n.store != nil {
		// A nil *store.Store in the interface would not read as none.
		cfg.Store = n.store
	}
	return &managedApp{rt: a, svc: s, tx: deploy.New(cfg)}
}

// persistOf is app a's persist configuration.
func persistOf(a spec.RuntimeApp) persist.App {
	return persist.App{StateDir: a.DataDir, UID: a.UID, GID: a.GID, Dirs: a.Persist}
}

func short(digest string) string { return deploy.Short(digest) }

// serveAPI starts the management API when the image carries its
// credentials. It logs and returns on failure: a node without its API
// still runs its apps.
func (n *node) serveAPI() {
	key, err1 := os.ReadFile(filepath.Join(apiDir, "node.key"))
	crt, err2 := os.ReadFile(filepath.Join(apiDir, "node.crt"))
	sum, err3 := os.ReadFile(filepath.Join(apiDir, "owner.sha256"))
	if err := errors.Join(err1, err2, err3); err != nil {
		n.log.Printf("management API off: %v", err)
		return
	}
	hash, err := api.ParseOwnerHash(strings.TrimSpace(string(sum)))
	if err != nil {
		n.log.Printf("management API off: owner.sha256: %v", err)
		return
	}
	l, err := net.Listen("tcp", ":"+strconv.Itoa(APIPort))
	if err != nil {
		n.log.Printf("management API off: %v", err)
		return
	}
	srv := api.New(n, hash, api.Options{Log: n.log.Printf})
	n.mu.Lock()
	down := n.down
	if !down {
		n.apiSrv = srv
	}
	n.mu.Unlock()
	if down {
		l.Close()
		return
	}
	n.log.Printf("management API on https port %d", APIPort)
	goSafe("api", func() {
		if err := srv.Serve(l, crt, key); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Printf("management API stopped: %v", err)
		}
	})
}

func (n *node) app(name string) (*managedApp, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.apps[name]
	if !ok {
		return nil, fmt.Errorf("%w: no app %q on this node (apps: %s)", api.ErrNotFound, name, strings.Join(n.order, ", "))
	}
	return a, nil
}

// Status implements api.Node.
func (n *node) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	hn, _ := os.Hostname()
	st.Node.Hostname = hn
	st.Node.UptimeSeconds = uptime()
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		st.Node.BootID = strings.TrimSpace(string(b))
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		st.Node.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	st.Node.NodeVersion = n.rt.NodeVersion
	st.Node.ImageVersion = n.rt.ImageVersion
	total, avail := meminfo()
	st.Node.Memory.TotalBytes, st.Node.Memory.AvailableBytes = total, avail
	var sfs unix.Statfs_t
	if unix.Statfs("/data", &sfs) == nil {
		st.Node.Data.TotalBytes = sfs.Blocks * uint64(sfs.Bsize)
		st.Node.Data.FreeBytes = sfs.Bavail * uint64(sfs.Bsize)
	}
	st.Node.Data.Persistent = n.persist
	st.Node.Addresses = addresses()
	st.Node.CPUSecondsTotal = cpuSeconds()
	st.Node.Degraded = degradedReason()
	st.Node.ConsoleDroppedLines = n.log.Dropped()
	st.OS = osStatus()
	st.Follow = followStatus()   // follow_linux.go
	st.Clock = clockStatus(n.rt) // clock_linux.go
	st.Logs = logsStatus()       // logs_linux.go

	n.mu.Lock()
	defer n.mu.Unlock()
	st.Node.BootSeconds = n.bootSecs
	for _, name := range n.order {
		a := n.apps[name]
		s := a.svc.Status()
		version, prev := a.tx.Versions()
		as := api.AppStatus{
			Name:            name,
			State:           string(s.State),
			PID:             s.PID,
			Restarts:        s.Restarts,
			LastExit:        s.LastExit,
			Port:            a.rt.Port,
			Version:         version,
			PreviousVersion: prev,
		}
		if !s.StartedAt.IsZero() {
			as.StartedAt = s.StartedAt.UTC()
		}
		n.appAPI.status(&as, a.rt)
		st.Apps = append(st.Apps, as)
	}
	return st, nil
}

// Logs implements api.Node: the persisted log file's tail (it holds this
// boot's output and earlier boots'), else the ring buffer, then new lines.
func (n *node) Logs(ctx context.Context, app string, lines int, follow bool, emit func(string) error) error {
	a, err := n.app(app)
	if err != nil {
		return err
	}
	var sub <-chan string
	if follow {
		// Subscribe before reading the backlog, so no line falls between.
		c, cancel := a.svc.Subscribe()
		defer cancel()
		sub = c
	}
	backlog, err := tailFile(filepath.Join("/data/logs", app+".log"), lines)
	if err != nil || len(backlog) == 0 {
		backlog = a.svc.Lines(lines)
	}
	for _, l := range backlog {
		if err := emit(l); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-sub:
			if err := emit(l); err != nil {
				return err
			}
		}
	}
}

// tailFile returns the last n lines of path (n <= 0: all), reading at most
// the last 4 MiB.
func tailFile(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const max = 4 << 20
	if st, err := f.Stat(); err == nil && st.Size() > max {
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
		if n > 0 && len(out) > 2*n {
			out = append(out[:0], out[len(out)-n:]...)
		}
	}
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out, sc.Err()
}

// Restart implements api.Node. It waits for a deploy or rollback of the
// app in progress to end (issue 12, item 14).
func (n *node) Restart(ctx context.Context, app string) (int, error) {
	a, err := n.app(app)
	if err != nil {
		return 0, err
	}
	return a.tx.Restart(ctx)
}

// Power implements api.Node; the action runs after the answer is sent.
func (n *node) Power(action string) error {
	var a boot.Action
	switch action {
	case "reboot":
		a = boot.Reboot
	case "poweroff":
		a = boot.PowerOff
	default:
		return fmt.Errorf("unknown power action %q", action)
	}
	goSafe("power request", func() {
		time.Sleep(200 * time.Millisecond)
		n.power <- a
	})
	return nil
}

// Deploy implements api.Node: receive and verify the bundle, run the new
// version, and switch to it only once it is healthy (internal/deploy).
func (n *node) Deploy(ctx context.Context, app, digest string, size int64, body io.Reader) (api.DeployResult, error) {
	a, err := n.app(app)
	if err != nil {
		return api.DeployResult{}, err
	}
	// The app's lock() holds the deploy off (at most its maxLockSeconds).
	if err := n.appAPI.waitLocks(ctx, []string{app}, "deploy of "+app); err != nil {
		return api.DeployResult{}, err
	}
	n.log.Printf("app %s: receiving version %s (%d bytes)", app, short(digest), size)
	forget := n.appAPI.stopping(app, appapi.CauseDeploy)
	res, err := a.tx.Deploy(ctx, digest, body, bundle.Limits{})
	forget()
	if err == nil {
		publishEvent(appapi.EventDeploy, app, fmt.Sprintf("app %s now runs version %s", app, short(res.Version)))
	}
	return n.result(a, res, err)
}

// Rollback implements api.Node: the previous version, checked for health
// like a deploy.
func (n *node) Rollback(ctx context.Context, app string) (api.DeployResult, error) {
	a, err := n.app(app)
	if err != nil {
		return api.DeployResult{}, err
	}
	if err := n.appAPI.waitLocks(ctx, []string{app}, "rollback of "+app); err != nil {
		return api.DeployResult{}, err
	}
	forget := n.appAPI.stopping(app, appapi.CauseDeploy)
	res, err := a.tx.Rollback(ctx)
	forget()
	if err == nil {
		publishEvent(appapi.EventDeploy, app, fmt.Sprintf("app %s rolled back to version %s", app, short(res.Version)))
	}
	return n.result(a, res, err)
}

func (n *node) result(a *managedApp, res deploy.Result, err error) (api.DeployResult, error) {
	if err != nil {
		return api.DeployResult{}, deployError(err)
	}
	return api.DeployResult{
		App:             a.rt.Name,
		Version:         res.Version,
		PreviousVersion: res.Previous,
		State:           string(a.svc.Status().State),
		Warning:         strings.Join(res.Warnings, "; "),
	}, nil
}

// deployError maps a transaction's errors to the API's: a full disk is
// 507, a failing one 500, a bundle this node will not run 400.
func deployError(err error) error {
	var ue *deploy.UnhealthyError
	switch {
	case errors.As(err, &ue):
		return &api.UnhealthyError{Msg: ue.Msg, Logs: ue.Logs}
	case errors.Is(err, deploy.ErrBusy):
		return fmt.Errorf("%w: %v", api.ErrBusy, err)
	case errors.Is(err, deploy.ErrNoPrevious):
		return fmt.Errorf("%w: %v", api.ErrNoPrevious, err)
	case errors.Is(err, deploy.ErrNoStore), errors.Is(err, deploy.ErrDiskFull):
		return fmt.Errorf("%w: %v", api.ErrNoRoom, err)
	case errors.Is(err, deploy.ErrIO):
		return err // 500: the disk, not the request, is at fault
	case errors.Is(err, deploy.ErrRefused), errors.Is(err, store.ErrDigest), errors.Is(err, bundle.ErrUnsafe), errors.Is(err, bundle.ErrTooBig), errors.Is(err, bundle.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrBadBundle, err)
	}
	return err
}

// check refuses a version this image cannot run: another app's bundle, a
// Node range the image's node does not satisfy, an addon whose libraries
// the image lacks.
func (n *node) check(a spec.RuntimeApp, v *store.Version) error {
	if v.Meta.Engines != "" && n.rt.NodeVersion != "" {
		c, err := semver.NewConstraint(v.Meta.Engines)
		if err != nil {
			return fmt.Errorf("engines.node %q: %v", v.Meta.Engines, err)
		}
		nv, err := semver.NewVersion(strings.TrimPrefix(n.rt.NodeVersion, "v"))
		if err == nil && !c.Check(nv) {
			return fmt.Errorf("the new version needs node %s, the image has %s: build and install a new image (nodeboot build) with that node", v.Meta.Engines, n.rt.NodeVersion)
		}
	}
	// The same selection as the build's: only native files node here
	// could load (not a test fixture named *.node, not another system's
	// prebuild).
	var rels []string
	filepath.WalkDir(v.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if rel, err := filepath.Rel(v.Dir, p); err == nil {
				rels = append(rels, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	native, _, err := elfdeps.SelectNative(v.Dir, rels, runtime.GOARCH)
	if err != nil {
		return err
	}
	var addons []string
	for _, n := range native {
		addons = append(addons, filepath.Join(v.Dir, filepath.FromSlash(n.Rel)))
	}
	if len(addons) > 0 {
		if _, err := elfdeps.Resolve(addons, elfdeps.Options{ExtraDirs: []string{"/usr/lib/nodeboot"}}); err != nil {
			return fmt.Errorf("%v: the image lacks it; build and install a new image (nodeboot build) that includes this addon", err)
		}
	}
	return nil
}

// probe checks an app once: with "health": "ready", it has called ready();
// else its health path answers 2xx, or without one, its port accepts a
// connection. An app without a port is healthy when it
// stays up.
func probe(ctx context.Context, a spec.RuntimeApp) error {
	if a.Health == spec.HealthReady {
		// The app says itself, through require('nodeboot').ready().
		return readyCheck(a.Name)
	}
	if a.Port == 0 {
		return nil
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	if a.HealthPath == "" {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	cl := http.Client{Timeout: 2 * time.Second}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+a.HealthPath, nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", a.HealthPath, resp.Status)
	}
	return nil
}

func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

func meminfo() (total, avail uint64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total, avail
}

// cpuSeconds is the CPU time spent outside idle and iowait since boot.
func cpuSeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks uint64
	for i, s := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseUint(s, 10, 64)
		ticks += v
	}
	return float64(ticks) / 100 // USER_HZ
}

func addresses() []string {
	var out []string
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			out = append(out, a.String())
		}
	}
	return out
}

func newNode(log *boot.Logger, rt *spec.Runtime, power chan<- boot.Action) *node {
	n := &node{log: log, rt: rt, power: power, apps: map[string]*managedApp{}, gate: deploy.NewGate()}
	n.persist = rt.DataPartition != "" && !isTmpfs("/data")
	if err := os.MkdirAll(appsStore, 0o755); err == nil {
		if st, err := store.Open(appsStore); err == nil {
			// An old version the store cannot remove after a switch
			// is said on the console; the switch stands.
			st.SetLog(log.Printf)
			st.Recover(log.Printf)
			n.store = st
		} else {
			log.Printf("no version store: %v (deploys refused)", err)
		}
	}
	return n
}

// keepImages makes every app's image version current in the store (the
// versions deployed before an OS update become previous), so that the
// boots after the trial run what the trial ran. It goes on past an app's
// error, and returns them all.
func (n *node) keepImages() error {
	n.mu.Lock()
	apps := make([]*managedApp, 0, len(n.order))
	for _, name := range n.order {
		apps = append(apps, n.apps[name])
	}
	n.mu.Unlock()
	var errs []error
	for _, a := range apps {
		errs = append(errs, a.tx.KeepImage())
	}
	return errors.Join(errs...)
}

func (n *node) add(a *managedApp) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.apps[a.rt.Name] = a
	n.order = append(n.order, a.rt.Name)
}

func (n *node) setBootSeconds(s float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bootSecs = s
}

func isTmpfs(dir string) bool {
	var s unix.Statfs_t
	return unix.Statfs(dir, &s) == nil && s.Type == unix.TMPFS_MAGIC
}
