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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Masterminds/semver/v3"
	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

const (
	// APIPort is where the management API listens (docs/api.md).
	APIPort = 9443
	// apiDir holds the node's key, certificate and the owner's token hash.
	apiDir = "/etc/nodeboot/api"
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
	rt      spec.RuntimeApp
	svc     *supervise.Service
	version string // "image" or "sha256:..."
	prev    string
}

// node implements api.Node on top of the supervisor and the version store.
type node struct {
	log     *boot.Logger
	rt      *spec.Runtime
	store   *store.Store // nil when /data has no room for one
	power   chan<- boot.Action
	persist bool // /data is a real disk

	mu        sync.Mutex
	apps      map[string]*managedApp
	order     []string
	bootSecs  float64
	deploying sync.Mutex
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

// deployedVersion returns the version of app a that the store says is
// current, with its persist dirs bound, or nil to run the image's own.
func (n *node) deployedVersion(a spec.RuntimeApp) *store.Version {
	if n.store == nil {
		return nil
	}
	v, err := n.store.Current(a.Name)
	if err != nil {
		n.log.Printf("app %s: deployed versions unreadable, running the image's: %v", a.Name, err)
		return nil
	}
	if v == nil {
		return nil
	}
	if err := bindVersionPersist(a, v.Dir); err != nil {
		n.log.Printf("app %s: version %s: %v; running the image's version", a.Name, short(v.Digest), err)
		return nil
	}
	return v
}

func short(digest string) string {
	d := strings.TrimPrefix(digest, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// bindVersionPersist makes app a's persist dirs in a deployed version's
// code dir the same persistent dirs the image's version uses.
func bindVersionPersist(a spec.RuntimeApp, dir string) error {
	for _, p := range a.Persist {
		dst := filepath.Join(dir, p)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("persist %s: %w", p, err)
		}
		if mounted(dst) {
			continue
		}
		va := a
		va.Dir = dir
		if err := bindPersist(va, p); err != nil {
			return fmt.Errorf("persist %s: %w", p, err)
		}
	}
	return nil
}

// mounted reports whether dir is a mount point (a persist dir bound at an
// earlier deploy of the same version).
func mounted(dir string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(dir, &a) != nil || unix.Lstat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

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
	n.log.Printf("management API on https port %d", APIPort)
	go func() {
		if err := srv.Serve(l, crt, key); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Printf("management API stopped: %v", err)
		}
	}()
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

	n.mu.Lock()
	defer n.mu.Unlock()
	st.Node.BootSeconds = n.bootSecs
	for _, name := range n.order {
		a := n.apps[name]
		s := a.svc.Status()
		as := api.AppStatus{
			Name:            name,
			State:           string(s.State),
			PID:             s.PID,
			Restarts:        s.Restarts,
			LastExit:        s.LastExit,
			Port:            a.rt.Port,
			Version:         a.version,
			PreviousVersion: a.prev,
		}
		if !s.StartedAt.IsZero() {
			as.StartedAt = s.StartedAt.UTC()
		}
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

// Restart implements api.Node.
func (n *node) Restart(ctx context.Context, app string) (int, error) {
	a, err := n.app(app)
	if err != nil {
		return 0, err
	}
	old := a.svc.Status().PID
	a.svc.Restart()
	// Answer with the new pid once there is one, so the caller sees it.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s := a.svc.Status()
		if s.State == supervise.StateRunning && s.PID != 0 && s.PID != old {
			return s.PID, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return a.svc.Status().PID, nil
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
	go func() {
		time.Sleep(200 * time.Millisecond)
		n.power <- a
	}()
	return nil
}

// Deploy implements api.Node: receive and verify the bundle, run the new
// version, and switch to it only once it is healthy.
func (n *node) Deploy(ctx context.Context, app, digest string, size int64, body io.Reader) (api.DeployResult, error) {
	if !n.deploying.TryLock() {
		return api.DeployResult{}, fmt.Errorf("%w: another deploy is in progress", api.ErrBusy)
	}
	defer n.deploying.Unlock()
	a, err := n.app(app)
	if err != nil {
		return api.DeployResult{}, err
	}
	if n.store == nil {
		return api.DeployResult{}, fmt.Errorf("%w: this node has no version store on /data", api.ErrNoRoom)
	}
	n.log.Printf("app %s: receiving version %s (%d bytes)", app, short(digest), size)
	v, err := n.store.Receive(app, body, digest, bundle.Limits{})
	if err != nil {
		return api.DeployResult{}, deployError(err)
	}
	if err := n.check(a, v); err != nil {
		return api.DeployResult{}, fmt.Errorf("%w: %v", api.ErrBadBundle, err)
	}
	if err := bindVersionPersist(a.rt, v.Dir); err != nil {
		return api.DeployResult{}, fmt.Errorf("preparing version %s: %w", short(v.Digest), err)
	}
	return n.switchTo(ctx, a, v, false)
}

// deployError maps the store's errors to the API's.
func deployError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: %v", api.ErrNoRoom, err)
	case errors.Is(err, store.ErrDigest), errors.Is(err, bundle.ErrUnsafe), errors.Is(err, bundle.ErrTooBig), errors.Is(err, bundle.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrBadBundle, err)
	}
	return err
}

// check refuses a version this image cannot run: another app's bundle, a
// Node range the image's node does not satisfy, an addon whose libraries
// the image lacks.
func (n *node) check(a *managedApp, v *store.Version) error {
	if v.Meta.App != a.rt.Name {
		return fmt.Errorf("the bundle is for app %q, not %q", v.Meta.App, a.rt.Name)
	}
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
	var addons []string
	filepath.WalkDir(v.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".node") {
			addons = append(addons, p)
		}
		return nil
	})
	if len(addons) > 0 {
		if _, err := elfdeps.Resolve(addons, elfdeps.Options{ExtraDirs: []string{"/usr/lib/nodeboot"}}); err != nil {
			return fmt.Errorf("%v: the image lacks it; build and install a new image (nodeboot build) that includes this addon", err)
		}
	}
	return nil
}

// switchTo runs v in place of what a runs now; healthy → v becomes
// current (rollback: the previous swaps with it), unhealthy → the old
// command runs again and the error carries the new version's last lines.
func (n *node) switchTo(ctx context.Context, a *managedApp, v *store.Version, rollback bool) (api.DeployResult, error) {
	old := a.svc.Command()
	cmd := versionCommand(a.rt, v.Dir, &v.Meta)
	lines, cancel := a.svc.Subscribe()
	var recent []string
	collect := func() {
		for {
			select {
			case l := <-lines:
				recent = append(recent, l)
				if len(recent) > 50 {
					recent = recent[1:]
				}
			default:
				return
			}
		}
	}
	n.log.Printf("app %s: starting version %s", a.rt.Name, short(v.Digest))
	before := a.svc.Status()
	a.svc.SetCommand(cmd)
	a.svc.Restart()
	err := n.waitHealthy(ctx, a, before, collect)
	collect()
	cancel()
	if err != nil {
		n.log.Printf("app %s: version %s unhealthy (%v): back to the previous version", a.rt.Name, short(v.Digest), err)
		before := a.svc.Status()
		a.svc.SetCommand(old)
		a.svc.Restart()
		// Answer once the previous version serves again, so a client
		// that sees the 422 also sees the old version answering.
		if err := n.waitHealthy(ctx, a, before, func() {}); err != nil {
			n.log.Printf("app %s: the previous version is not healthy either: %v", a.rt.Name, err)
		}
		return api.DeployResult{}, &api.UnhealthyError{Msg: fmt.Sprintf("version %s of %s did not become healthy: %v; the previous version serves again", short(v.Digest), a.rt.Name, err), Logs: recent}
	}
	var serr error
	if rollback {
		_, serr = n.store.Rollback(a.rt.Name)
	} else {
		serr = n.store.Switch(a.rt.Name, v)
	}
	if serr != nil {
		// It runs, but a reboot would run the old one: say so.
		n.log.Printf("app %s: version %s runs but could not be made current: %v", a.rt.Name, short(v.Digest), serr)
		return api.DeployResult{}, fmt.Errorf("version %s runs but could not be recorded as current (a reboot runs the previous one): %w", short(v.Digest), serr)
	}
	n.mu.Lock()
	a.prev, a.version = a.version, v.Digest
	res := api.DeployResult{App: a.rt.Name, Version: a.version, PreviousVersion: a.prev, State: string(a.svc.Status().State)}
	n.mu.Unlock()
	n.log.Printf("app %s: now running version %s (previous %s)", a.rt.Name, short(a.version), short(a.prev))
	return res, nil
}

// waitHealthy waits until the restarted app's port answers (or its health
// path returns 2xx) and it stays up for healthSettle.
func (n *node) waitHealthy(ctx context.Context, a *managedApp, before supervise.Status, collect func()) error {
	deadline := time.Now().Add(healthTimeout)
	var pid int
	// The restart first stops the old process; wait for the new one.
	for pid == 0 {
		collect()
		s := a.svc.Status()
		if s.State == supervise.StateRunning && s.PID != before.PID && s.PID != 0 {
			pid = s.PID
			break
		}
		if s.Restarts > before.Restarts {
			return fmt.Errorf("it exited: %s", s.LastExit)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("it did not start within %v", healthTimeout)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	crashed := func() error {
		s := a.svc.Status()
		if s.PID != pid || s.Restarts > before.Restarts {
			if s.LastExit == "" {
				return errors.New("it exited")
			}
			return fmt.Errorf("it exited: %s", s.LastExit)
		}
		return nil
	}
	for {
		collect()
		if err := crashed(); err != nil {
			return err
		}
		if err := probe(a.rt); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("port %d did not answer within %v: %v", a.rt.Port, healthTimeout, err)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	settle := time.Now().Add(healthSettle)
	for time.Now().Before(settle) {
		collect()
		if err := crashed(); err != nil {
			return err
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return crashed()
}

// probe checks an app once: its health path answers 2xx, or without one,
// its port accepts a connection. An app without a port is healthy when it
// stays up.
func probe(a spec.RuntimeApp) error {
	if a.Port == 0 {
		return nil
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	if a.HealthPath == "" {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + a.HealthPath)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", a.HealthPath, resp.Status)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// Rollback implements api.Node: the previous version, checked for health
// like a deploy.
func (n *node) Rollback(ctx context.Context, app string) (api.DeployResult, error) {
	if !n.deploying.TryLock() {
		return api.DeployResult{}, fmt.Errorf("%w: a deploy is in progress", api.ErrBusy)
	}
	defer n.deploying.Unlock()
	a, err := n.app(app)
	if err != nil {
		return api.DeployResult{}, err
	}
	if n.store == nil {
		return api.DeployResult{}, fmt.Errorf("%w: this node keeps no versions", api.ErrNoPrevious)
	}
	n.mu.Lock()
	prev := a.prev
	n.mu.Unlock()
	if prev == "" {
		return api.DeployResult{}, fmt.Errorf("%w: app %s has no previous version", api.ErrNoPrevious, app)
	}
	if prev == "image" {
		// Back to the image's own code: the store forgets the deploy.
		return n.rollbackToImage(ctx, a)
	}
	v, err := n.store.Previous(app)
	if err != nil || v == nil {
		return api.DeployResult{}, fmt.Errorf("%w: app %s: the previous version is gone (%v)", api.ErrNoPrevious, app, err)
	}
	if err := bindVersionPersist(a.rt, v.Dir); err != nil {
		return api.DeployResult{}, err
	}
	return n.switchTo(ctx, a, v, true)
}

// rollbackToImage runs the image's baked version again and clears the
// store's current pointer, so the next boot runs it too.
func (n *node) rollbackToImage(ctx context.Context, a *managedApp) (api.DeployResult, error) {
	old := a.svc.Command()
	before := a.svc.Status()
	a.svc.SetCommand(versionCommand(a.rt, a.rt.Dir, nil))
	a.svc.Restart()
	if err := n.waitHealthy(ctx, a, before, func() {}); err != nil {
		a.svc.SetCommand(old)
		a.svc.Restart()
		return api.DeployResult{}, &api.UnhealthyError{Msg: fmt.Sprintf("the image's version of %s did not become healthy: %v", a.rt.Name, err), Logs: a.svc.Lines(30)}
	}
	if err := n.store.Reset(a.rt.Name); err != nil {
		return api.DeployResult{}, fmt.Errorf("the image's version runs but the deployed one stays current for the next boot: %w", err)
	}
	n.mu.Lock()
	a.prev, a.version = a.version, "image"
	res := api.DeployResult{App: a.rt.Name, Version: a.version, PreviousVersion: a.prev, State: string(a.svc.Status().State)}
	n.mu.Unlock()
	return res, nil
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
	n := &node{log: log, rt: rt, power: power, apps: map[string]*managedApp{}}
	n.persist = rt.DataPartition != "" && !isTmpfs("/data")
	if err := os.MkdirAll(appsStore, 0o755); err == nil {
		if st, err := store.Open(appsStore); err == nil {
			st.Recover(log.Printf)
			n.store = st
		} else {
			log.Printf("no version store: %v (deploys refused)", err)
		}
	}
	return n
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
