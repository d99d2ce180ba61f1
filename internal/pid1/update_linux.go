package pid1

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/appapi"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/supervise"
	"github.com/nodeboot/nodeboot/internal/trialgate"
	"github.com/nodeboot/nodeboot/internal/tryboot"
	"github.com/nodeboot/nodeboot/internal/update"
)

// OS updates on the node (docs/updates.md): PID 1 finds the disk's slots,
// mounts the ESP, settles what the last boots left (update.Boot) before the
// apps start, and on a trial boot runs the health gate that commits the
// update or fails it.

const (
	// espMount is where the ESP is mounted. It stays mounted read-write
	// for the whole boot: the updater writes at Boot, Commit and Fail and
	// for the length of an upload, concurrently with Status reading it; a
	// read-only mount flipped around each write would race those, and
	// every write the updater makes is synced (file and directory) before
	// it returns, so a power cut finds the FAT consistent all the same.
	espMount = "/run/nodeboot/esp"
	// stateDir holds the updater's records on /data.
	stateDir = "/data/update"
	// defaultHealthySeconds is update.healthySeconds' default.
	defaultHealthySeconds = 30
	// trialGrace is what the health gate allows beyond healthySeconds for
	// the apps to start and become healthy: a TCG guest starting node
	// needs tens of seconds, and over two minutes on a loaded host (seen:
	// 125 s and more, which failed good updates with 120 s); slow boards
	// starting a large app are no faster.
	trialGrace = 5 * time.Minute
	// crashLoopRestarts ends a trial at once: an app restarted this often
	// during the trial is not going to become healthy.
	crashLoopRestarts = 5
	// gateEvery is how often the gate probes each app.
	gateEvery = time.Second
)

// osUpdater is this boot's updater; nil until bootUpdate ran.
var osUpdater struct {
	sync.Mutex
	u *update.Updater
}

func currentUpdater() *update.Updater {
	osUpdater.Lock()
	defer osUpdater.Unlock()
	return osUpdater.u
}

// powerRebooter reboots through PID 1's power-off path, so the apps get
// TERM and the file systems are synced and unmounted first; the reboot is
// a firmware reset (reboot(2)), never kexec, so systemd-boot counts it.
type powerRebooter struct {
	log   *boot.Logger
	power chan<- boot.Action
	// action is boot.Reboot unless set (boot.RebootTryboot on a Pi).
	action boot.Action
}

func (r powerRebooter) Reboot(reason string) error {
	r.log.Printf("rebooting: %s", reason)
	// Only the updater reboots this way: the apps' onShutdown handlers
	// learn that it is for an OS update.
	nodeStopping(appapi.CauseUpdate)
	a := r.action
	if a == boot.PowerOff {
		a = boot.Reboot
	}
	select {
	case r.power <- a:
	default: // a power action is already on its way
	}
	return nil
}

// bootUpdate sets up this boot's updater and runs its Boot step. It never
// fails the boot: a node whose slots cannot be read still runs its apps,
// and only updates are refused (with the reason).
func bootUpdate(log *boot.Logger, rt *spec.Runtime, power chan<- boot.Action) *update.BootState {
	cfg, err := updateConfig(log, rt, power)
	if err != nil {
		log.Printf("OS updates off: %v", err)
		cfg = update.Config{Arch: runtime.GOARCH, Target: "uefi", Reboot: powerRebooter{log, power, boot.Reboot}}
	}
	u, err := update.New(cfg)
	if err != nil {
		log.Printf("OS updates off: %v", err)
		u, _ = update.New(update.Config{Reboot: powerRebooter{log, power, boot.Reboot}})
	}
	osUpdater.Lock()
	osUpdater.u = u
	osUpdater.Unlock()
	bs, err := u.Boot()
	if err != nil {
		log.Printf("OS update state: %v", err)
		return &update.BootState{}
	}
	if bs.NoSlots {
		return bs
	}
	log.Printf("booted root slot %s, image %s", strings.ToUpper(bs.Slot), cfg.Running)
	if o := bs.Settled; o != nil {
		if o.OK {
			log.Printf("%s%s (was %s)", contract.UpdateCommitted, o.Image, o.From)
		} else {
			log.Printf("%s%s", contract.UpdateFailed, o)
			for _, n := range o.Notes {
				log.Printf("  trial note: %s", n)
			}
		}
	}
	if bs.Trial {
		log.Printf("%s%s: committed once every app is healthy for %d s", contract.UpdateTrial, cfg.Running.ID, healthySeconds(rt))
	}
	return bs
}

// updateConfig finds the disk's slots and the ESP and reads what the image
// says about itself.
func updateConfig(log *boot.Logger, rt *spec.Runtime, power chan<- boot.Action) (update.Config, error) {
	cfg := update.Config{Arch: runtime.GOARCH, Target: "uefi", Reboot: powerRebooter{log, power, boot.Reboot}}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return cfg, err
	}
	if update.IsPiCmdline(string(cmdline)) {
		return piUpdateConfig(log, rt, power, cfg, string(cmdline))
	}
	d, err := update.DiscoverSlots("/sys", "/dev", string(cmdline))
	if err != nil {
		return cfg, err
	}
	if d == nil {
		// Booted from an initramfs: no slots; updates answer ErrNoSlots.
		return cfg, nil
	}
	espDev, slots, booted, diskSize := d.ESP, d.Slots, d.Booted, d.DiskSize
	if err := os.MkdirAll(espMount, 0o755); err != nil {
		return cfg, err
	}
	if err := unix.Mount(espDev, espMount, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME, "umask=0077,flush"); err != nil {
		return cfg, fmt.Errorf("mounting the ESP %s: %w", espDev, err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return cfg, fmt.Errorf("the update records: %w", err)
	}
	cfg.ESP, cfg.State = update.OSDir{Root: espMount}, update.OSDir{Root: stateDir}
	cfg.Slots, cfg.Booted, cfg.DiskSize = slots, booted, diskSize
	cfg.Keys = trustedKeys(log)
	cfg.Running = runningImage(rt, booted)
	return cfg, nil
}

// piUpdateConfig is updateConfig on a Raspberry Pi: the slots by MBR
// partition number, the control partition (1) mounted where the ESP is on
// a PC (it holds autoboot.txt and the slots' manifests), the firmware's
// tryboot as the A/B switch (internal/tryboot), and its reboot.
func piUpdateConfig(log *boot.Logger, rt *spec.Runtime, power chan<- boot.Action, cfg update.Config, cmdline string) (update.Config, error) {
	cfg.Target = "pi"
	d, err := update.DiscoverPi("/sys", "/dev", cmdline)
	if err != nil {
		return cfg, err
	}
	if err := os.MkdirAll(espMount, 0o755); err != nil {
		return cfg, err
	}
	if err := unix.Mount(d.Control, espMount, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME, "umask=0077,flush"); err != nil {
		return cfg, fmt.Errorf("mounting the control partition %s: %w", d.Control, err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return cfg, fmt.Errorf("the update records: %w", err)
	}
	state := update.OSDir{Root: stateDir}
	cfg.ESP, cfg.State = update.OSDir{Root: espMount}, state
	cfg.Slots, cfg.Booted, cfg.DiskSize = d.Slots, d.Booted, d.DiskSize
	cfg.Pi = &update.PiConfig{
		Switch:    &tryboot.Switch{Control: tryboot.OSControl{Root: espMount}, State: state},
		Boot:      d.Boot,
		Signature: d.Signature,
		TryReboot: powerRebooter{log, power, boot.RebootTryboot},
	}
	cfg.Keys = trustedKeys(log)
	cfg.Running = runningImage(rt, d.Booted)
	return cfg, nil
}

// trustedKeys reads the update keys the image carries.
func trustedKeys(log *boot.Logger) []ed25519.PublicKey {
	b, err := os.ReadFile(creds.ImageUpdateKeys)
	if err != nil {
		log.Printf("OS updates: no trusted keys (%v): every update is refused; build the image with a current nodeboot", err)
		return nil
	}
	var keys []ed25519.PublicKey
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, err := ospayload.ParsePublicKey(line)
		if err != nil {
			log.Printf("OS updates: %s: %v", creds.ImageUpdateKeys, err)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// runningImage is the image the booted slot holds: what the update that
// wrote it signed (its manifest on the ESP), else the image the disk was
// flashed with, version 0, its id the build's image version.
func runningImage(rt *spec.Runtime, slot string) update.Image {
	if b, err := os.ReadFile(filepath.Join(espMount, "nodeboot", slot, "manifest.json")); err == nil {
		var sm struct {
			Manifest json.RawMessage `json:"manifest"`
		}
		if json.Unmarshal(b, &sm) == nil {
			if m, err := ospayload.ParseManifest(sm.Manifest); err == nil {
				return update.Image{ID: m.Image, Version: m.Version, Built: m.Built}
			}
		}
	}
	return update.Image{ID: rt.ImageVersion}
}

func healthySeconds(rt *spec.Runtime) int {
	if rt.HealthySeconds > 0 {
		return rt.HealthySeconds
	}
	return defaultHealthySeconds
}

// trialGate runs the health gate of a trial boot (internal/trialgate):
// every app healthy (its port accepts, or its healthPath answers 2xx)
// continuously for healthySeconds within healthySeconds + trialGrace, then
// Commit; an app that crash-loops, never becomes healthy, or a node that
// runs degraded ends the trial with Fail (which reboots into the old slot).
// keepImages runs before the commit (node.keepImages): a power cut between
// the two leaves the trial to the next boot, which runs the image's apps
// all the same (only if that trial failed would the old image run its own
// apps rather than those deployed on it; a rollback returns to them).
func trialGate(log *boot.Logger, rt *spec.Runtime, services []*supervise.Service, keepImages func() error) {
	names := make([]string, 0, len(rt.Apps))
	apps := map[string]trialgate.App{}
	svc := map[string]*supervise.Service{}
	for _, s := range services {
		svc[s.Name()] = s
	}
	for _, a := range rt.Apps {
		names = append(names, a.Name)
		if s := svc[a.Name]; s != nil {
			apps[a.Name] = gateApp{a, s}
		}
	}
	trialgate.Run(trialgate.Config{
		Healthy:   time.Duration(healthySeconds(rt)) * time.Second,
		Grace:     trialGrace,
		CrashLoop: crashLoopRestarts,
		Every:     gateEvery,
		Degraded:  degradedReason(),
		Log:       log.Printf,
	}, gateTrial{log: log, u: currentUpdater(), keepImages: keepImages}, names, apps)
}

// gateApp is a supervised app as the gate sees it.
type gateApp struct {
	a spec.RuntimeApp
	s *supervise.Service
}

func (g gateApp) Restarts() int    { return g.s.Status().Restarts }
func (g gateApp) LastExit() string { return g.s.Status().LastExit }
func (g gateApp) Healthy() error   { return appHealthy(g.a, g.s.Status()) }
func (g gateApp) LastLine() string {
	if l := g.s.Lines(1); len(l) > 0 {
		return l[0]
	}
	return ""
}

// gateTrial is the updater as the gate sees it, with the console's lines
// the e2e tests and the operator look for.
type gateTrial struct {
	log *boot.Logger
	u   trialUpdater
	// keepImages makes the apps' image versions current in the store
	// (node.keepImages); nil: nothing to keep.
	keepImages func() error
}

// trialUpdater is what the gate needs of the updater (*update.Updater).
type trialUpdater interface {
	Note(line string) error
	Commit() (*update.Outcome, error)
	Fail(reason string) error
}

func (g gateTrial) Note(line string) error { return g.u.Note(line) }

func (g gateTrial) Commit() (string, error) {
	if g.keepImages != nil {
		if err := g.keepImages(); err != nil {
			// The update is healthy all the same; an app whose store
			// could not be changed runs its deployed version after the
			// next boot.
			g.log.Printf("OS update: keeping the image's app versions: %v", err)
		}
	}
	o, err := g.u.Commit()
	if err != nil {
		return "", err
	}
	publishEvent(appapi.EventUpdate, "", fmt.Sprintf("OS update committed: %s (was %s)", o.Image, o.From))
	return fmt.Sprintf("%s%s (was %s)", contract.UpdateCommitted, o.Image, o.From), nil
}

func (g gateTrial) Fail(reason string) error {
	g.log.Printf("%s%s", contract.UpdateFailed, reason)
	publishEvent(appapi.EventUpdate, "", "OS update failed, the node reboots into the previous image: "+reason)
	return g.u.Fail(reason)
}

// appHealthy probes one app of a trial the way a deploy does (probe).
func appHealthy(a spec.RuntimeApp, st supervise.Status) error {
	if st.State != supervise.StateRunning {
		if st.LastExit != "" {
			return fmt.Errorf("%s (last exit: %s)", st.State, st.LastExit)
		}
		return errors.New(string(st.State))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := probe(ctx, a); err != nil {
		if a.HealthPath != "" {
			return fmt.Errorf("%s on port %d: %v", a.HealthPath, a.Port, err)
		}
		return fmt.Errorf("port %d: %v", a.Port, err)
	}
	return nil
}

// osStatus is the "os" object of the status answer.
func osStatus() *contract.OSStatus {
	u := currentUpdater()
	if u == nil {
		return nil
	}
	st, err := u.Status()
	if err != nil {
		return &contract.OSStatus{Error: err.Error()}
	}
	// The updater's Status has the wire's shape (docs/api.md); one JSON
	// round trip keeps the two types apart without a field-by-field copy.
	var out contract.OSStatus
	b, err := json.Marshal(st)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		return &contract.OSStatus{Error: err.Error()}
	}
	return &out
}

// OSUpdater implements api.UpdateNode.
func (n *node) OSUpdater() api.OSUpdater {
	if u := currentUpdater(); u != nil {
		return eventUpdater{u}
	}
	return nil
}

// eventUpdater tells the apps (events()) when an OS update is staged.
type eventUpdater struct{ api.OSUpdater }

func (e eventUpdater) Install(ctx context.Context, r io.Reader, o update.InstallOptions) (*update.Armed, error) {
	a, err := e.OSUpdater.Install(ctx, r, o)
	if err == nil {
		publishEvent(appapi.EventUpdate, "", fmt.Sprintf("OS update staged: %s in slot %s (was %s); the node reboots into it", a.Image, strings.ToUpper(a.Slot), a.From))
	}
	return a, err
}
