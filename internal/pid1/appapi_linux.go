package pid1

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/appapi"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/mempressure"
	"github.com/nodeboot/nodeboot/internal/sandbox"
	"github.com/nodeboot/nodeboot/internal/secrets"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

// appAPI is PID 1's side of require('nodeboot') (internal/appapi): one
// socket per app, the apps' secrets, readiness for the health gates.
type appAPI struct {
	log     *boot.Logger
	n       *node
	srv     *appapi.Server
	secrets *secrets.Store // nil: /data has no room for them
	sockets map[string]bool

	mu        sync.Mutex
	listeners []net.Listener
}

// closeSockets closes the apps' sockets once the apps stopped: a bound
// socket holds /run, which could not be unmounted at power-off.
func (a *appAPI) closeSockets() {
	if a == nil {
		return
	}
	a.mu.Lock()
	ls := a.listeners
	a.listeners = nil
	a.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// startAppAPI opens every app's socket before the apps start. A socket
// that cannot be made leaves that app without the API (it says so at
// require time), not without its node.
func startAppAPI(log *boot.Logger, rt *spec.Runtime, n *node) *appAPI {
	a := &appAPI{log: log, n: n, sockets: map[string]bool{}}
	apps := make([]appapi.App, 0, len(rt.Apps))
	for _, ra := range rt.Apps {
		apps = append(apps, appapi.App{Name: ra.Name, UID: uint32(ra.UID), MaxLock: time.Duration(ra.MaxLockSeconds) * time.Second})
	}
	a.srv = appapi.New(appNode{a}, apps, appapi.Options{Log: log.Printf})
	if st, err := secrets.Open(secrets.Dir); err != nil {
		log.Printf("app secrets unavailable: %v", err)
	} else {
		a.secrets = st
	}
	for _, ra := range rt.Apps {
		l, err := appapi.Listen(appapi.SocketPath(ra.Name), ra.UID, ra.GID)
		if err != nil {
			log.Printf("app %s: no require('nodeboot') socket: %v", ra.Name, err)
			continue
		}
		a.sockets[ra.Name] = true
		a.mu.Lock()
		a.listeners = append(a.listeners, l)
		a.mu.Unlock()
		name := ra.Name
		goSafe("app api "+name, func() {
			if err := a.srv.Serve(l, name); err != nil {
				log.Printf("app %s: app api stopped: %v", name, err)
			}
		})
	}
	goSafe("app watchdogs", func() { a.srv.RunWatchdogs(context.Background(), 250*time.Millisecond) })
	readyCheck = func(app string) error {
		var started time.Time
		if ma, err := n.app(app); err == nil {
			started = ma.svc.Status().StartedAt
		}
		return a.srv.ReadySince(app, started)
	}
	publishEvent = a.publish
	nodeStopping = func(cause string) { a.srv.Stopping("", cause) }
	mw := &mempressure.Watcher{
		Apps: func() map[string]string {
			files := map[string]string{}
			for _, ra := range rt.Apps {
				files[ra.Name] = filepath.Join(sandbox.CgroupRoot, "apps", ra.Name, "memory.events")
			}
			return files
		},
		MemInfo: "/proc/meminfo",
		Emit: func(app, msg string) {
			log.Printf("%s", msg)
			a.publish(appapi.EventMemory, app, msg)
		},
	}
	goSafe("memory pressure", func() { mw.Run(context.Background(), memoryCheckEvery) })
	return a
}

// memoryCheckEvery is how often PID 1 reads the apps' memory.events and
// /proc/meminfo for memory pressure (internal/mempressure).
const memoryCheckEvery = 2 * time.Second

// nodeStopping records why every app is about to stop (appapi.Stopping),
// for their onShutdown handlers; set once the app API runs.
var nodeStopping = func(cause string) {}

// stopping records that app is about to be stopped for cause (a deploy);
// the returned func forgets it once the transaction is over.
func (a *appAPI) stopping(app, cause string) func() {
	if a == nil {
		return func() {}
	}
	return a.srv.Stopping(app, cause)
}

// publishEvent sends a node event to the apps (events()); set once the
// app API runs.
var publishEvent = func(typ, app, msg string) {}

// readyCheck is the health of an app whose config says "health":
// "ready" (probe); set once the app API runs.
var readyCheck = func(app string) error {
	return fmt.Errorf("app %s: the node's app API is not running", app)
}

// wire gives app a's service its socket: the path in its environment,
// the socket's dir in its sandbox, and its onShutdown handlers before each
// stop. (The module is in the image's /node_modules, where node finds it.)
func (a *appAPI) wire(o *supervise.Options, ra spec.RuntimeApp) {
	if !a.sockets[ra.Name] {
		return
	}
	o.Env = append(o.Env, appapi.SocketEnv+"="+appapi.SocketPath(ra.Name))
	if o.Sandbox != nil {
		o.Sandbox.APIDir = appapi.AppDir(ra.Name)
		o.Sandbox.Confine = append(o.Sandbox.Confine, appapi.SocketDir)
	}
	name := ra.Name
	o.BeforeStop = func(reason string) { a.srv.BeforeStop(name, reason) }
}

// waitLocks holds what (a deploy, an update's reboot, a reboot) until
// apps' locks are released or overridden.
func (a *appAPI) waitLocks(ctx context.Context, apps []string, what string) error {
	if a == nil {
		return nil
	}
	_, err := a.srv.WaitLocks(ctx, apps, what)
	return err
}

// status adds what app told the node to its status.
func (a *appAPI) status(as *contract.AppStatus, ra spec.RuntimeApp) {
	as.Health = ra.Health
	if a == nil {
		return
	}
	st := a.srv.Status(ra.Name)
	as.Ready = st.Ready
	as.WatchdogMs = st.WatchdogMs
	as.WatchdogRestarts = st.WatchdogRestarts
	as.LastLockOverride = st.LastOverride
	for _, l := range st.Locks {
		as.Locks = append(as.Locks, contract.AppLock{Reason: l.Reason, Since: l.Since.UTC(), Overridden: l.Overridden})
	}
}

// publish sends a node event to the apps that listen (events()).
func (a *appAPI) publish(typ, app, msg string) {
	if a != nil {
		a.srv.Publish(appapi.Event{Type: typ, App: app, Message: msg})
	}
}

// appNode answers the app API's questions from PID 1's state.
type appNode struct{ a *appAPI }

// appInfo is info()'s answer (docs/js.md).
type appInfo struct {
	Hostname      string             `json:"hostname"`
	ImageVersion  string             `json:"imageVersion"`
	NodeVersion   string             `json:"nodeVersion"`
	Kernel        string             `json:"kernel"`
	UptimeSeconds float64            `json:"uptimeSeconds"`
	BootID        string             `json:"bootId"`
	Memory        contract.Memory    `json:"memory"`
	Addresses     []string           `json:"addresses"`
	OS            *contract.OSStatus `json:"os,omitempty"`
	// Clock and Network are the states the "clock" and "network" events
	// announce: events are not replayed, so an app that subscribes after
	// them learns the state here.
	Clock   appInfoClock   `json:"clock"`
	Network appInfoNetwork `json:"network"`
	App     appInfoApp     `json:"app"`
}

type appInfoClock struct {
	Synced   bool       `json:"synced"`
	Source   string     `json:"source"`
	LastSync *time.Time `json:"lastSync,omitempty"`
}

type appInfoNetwork struct {
	Up        bool   `json:"up"`
	Interface string `json:"interface,omitempty"`
}

// liveState is info()'s clock and network: where the node is now.
func liveState() (appInfoClock, appInfoNetwork) {
	var c appInfoClock
	if nodeClock != nil {
		st := nodeClock.State()
		c.Synced, c.Source = st.Synced, st.Source
		if !st.LastSync.IsZero() {
			t := st.LastSync.UTC()
			c.LastSync = &t
		}
	}
	netState.Lock()
	defer netState.Unlock()
	return c, appInfoNetwork{Up: netState.ifname != "", Interface: netState.ifname}
}

type appInfoApp struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	PreviousVersion string `json:"previousVersion"`
	DataDir         string `json:"dataDir"`
	Port            int    `json:"port,omitempty"`
	Health          string `json:"health,omitempty"`
}

func (an appNode) Info(app string) any {
	n := an.a.n
	st, _ := n.Status(context.Background())
	info := appInfo{
		Hostname: st.Node.Hostname, ImageVersion: st.Node.ImageVersion, NodeVersion: st.Node.NodeVersion,
		Kernel: st.Node.Kernel, UptimeSeconds: st.Node.UptimeSeconds, BootID: st.Node.BootID,
		Memory: st.Node.Memory, Addresses: st.Node.Addresses, OS: st.OS,
	}
	if info.Addresses == nil {
		info.Addresses = []string{}
	}
	info.Clock, info.Network = liveState()
	if ma, err := n.app(app); err == nil {
		info.App = appInfoApp{Name: app, DataDir: ma.rt.DataDir, Port: ma.rt.Port, Health: ma.rt.Health}
		info.App.Version, info.App.PreviousVersion = ma.tx.Versions()
	}
	return info
}

func (an appNode) Services() []appapi.ServiceInfo {
	n := an.a.n
	n.mu.Lock()
	apps := make([]*managedApp, 0, len(n.order))
	for _, name := range n.order {
		apps = append(apps, n.apps[name])
	}
	n.mu.Unlock()
	out := make([]appapi.ServiceInfo, 0, len(apps))
	for _, ma := range apps {
		si := appapi.ServiceInfo{Name: ma.rt.Name, Port: ma.rt.Port, State: string(ma.svc.Status().State), Ready: an.a.srv.Status(ma.rt.Name).Ready}
		if ma.rt.Port > 0 {
			si.URL = "http://127.0.0.1:" + strconv.Itoa(ma.rt.Port)
		}
		out = append(out, si)
	}
	return out
}

func (an appNode) Secret(app, name string) (string, error) {
	if an.a.secrets == nil {
		return "", errors.New("this node keeps no secrets (/data could not hold them)")
	}
	v, err := an.a.secrets.Get(app, name)
	if errors.Is(err, secrets.ErrNotFound) {
		return "", fmt.Errorf("%w: %v", appapi.ErrNotFound, err)
	}
	return v, err
}

func (an appNode) Restart(app, reason string) {
	if ma, err := an.a.n.app(app); err == nil {
		ma.svc.Restart()
	}
}

// SetSecret implements api.SecretNode.
func (n *node) SetSecret(ctx context.Context, app, name string, value []byte) error {
	st, err := n.secretStore(app)
	if err != nil {
		return err
	}
	if err := st.Set(app, name, value); err != nil {
		return secretError(err)
	}
	// Never the value: not on the console, not in any log.
	n.log.Printf("app %s: secret %q set (%d bytes)", app, name, len(value))
	return nil
}

// Secrets implements api.SecretNode.
func (n *node) Secrets(ctx context.Context, app string) ([]string, error) {
	st, err := n.secretStore(app)
	if err != nil {
		return nil, err
	}
	names, err := st.List(app)
	return names, secretError(err)
}

// RemoveSecret implements api.SecretNode.
func (n *node) RemoveSecret(ctx context.Context, app, name string) error {
	st, err := n.secretStore(app)
	if err != nil {
		return err
	}
	if err := st.Remove(app, name); err != nil {
		return secretError(err)
	}
	n.log.Printf("app %s: secret %q removed", app, name)
	return nil
}

func (n *node) secretStore(app string) (*secrets.Store, error) {
	if _, err := n.app(app); err != nil {
		return nil, err
	}
	if n.appAPI == nil || n.appAPI.secrets == nil {
		return nil, fmt.Errorf("%w: this node keeps no secrets: /data could not hold them (see its console)", api.ErrNoRoom)
	}
	return n.appAPI.secrets, nil
}

func secretError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, secrets.ErrNotFound):
		return fmt.Errorf("%w: %v", api.ErrNotFound, err)
	case errors.Is(err, secrets.ErrTooLarge):
		return fmt.Errorf("%w: %v", api.ErrSecretTooLarge, err)
	case errors.Is(err, secrets.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrBadSecret, err)
	}
	return err
}

// names are the node's apps.
func (n *node) names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.order...)
}
