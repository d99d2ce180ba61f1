// Package pid1 is the image's init: it brings the system up (boot), the
// network (netconf), starts and supervises the apps (supervise), and takes
// everything down cleanly on power-off. It never exits: a fatal error is
// logged, then the system syncs and reboots after a delay.
package pid1

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/appapi"
	"github.com/nodeboot/nodeboot/internal/applog"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/datafs"
	"github.com/nodeboot/nodeboot/internal/follow"
	"github.com/nodeboot/nodeboot/internal/netconf"
	"github.com/nodeboot/nodeboot/internal/persist"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

const (
	// stopGrace is how long apps get between SIGTERM and SIGKILL at power-off.
	stopGrace = 10 * time.Second
	// apiStartDelay is the longest the management API waits for the apps
	// to listen before it starts anyway.
	apiStartDelay = 5 * time.Second
	// fatalDelay leaves time to read the console before a fatal reboot.
	fatalDelay = 10 * time.Second
)

// Main runs PID 1. It does not return.
func Main() {
	log := boot.NewLogger(os.Stderr)
	// A panic in any goroutine PID 1 starts would panic the kernel: each
	// is started through crash.Go, which hands it to this sequence.
	seq := crashSequence(log)
	crash.SetHandler(seq.Panic)
	defer crash.Recover("main")
	if err := run(log); err != nil {
		seq.Fatal(err)
	}
	// run returns nil only after a completed shutdown request, which halts.
	seq.Fatal(fmt.Errorf("init loop ended unexpectedly"))
}

// initCPUAtStart is PID 1's CPU time when the init's own code began: the
// kernel's initcalls ran in this task before it exec'd /init and count in
// its rusage.
var initCPUAtStart time.Duration

// selfCPU is this process's user + system CPU time.
func selfCPU() (time.Duration, bool) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano()), true
}

func run(log *boot.Logger) error {
	initCPUAtStart, _ = selfCPU()
	if err := boot.Run(boot.OS{}, func(string, ...any) {}, boot.EarlyMounts); err != nil {
		return err
	}
	if console, err := boot.OpenConsole(); err == nil {
		log.SetOutput(console)
	}
	log.Printf("%s (pid %d)", contract.InitStarted, os.Getpid())
	if lim, err := raiseFileLimit(); err != nil {
		log.Printf("%v: PID 1 keeps its limit", err)
	} else {
		log.Printf("file descriptors: up to %d", lim.Cur)
	}
	if err := checkInitramfs(); err != nil {
		return err
	}
	if err := boot.Run(boot.OS{}, log.Printf, boot.SystemMounts); err != nil {
		return err
	}
	startBootProfile() // needs /proc
	armWatchdog(log)   // needs /dev; first, so a hang anywhere later resets

	// Reaping starts before the first child exists: PID 1 inherits every
	// orphan, and the supervisor's own children must not be reaped by a
	// racing wait elsewhere.
	if _, err := supervise.NewReaper(supervise.ReaperOptions{Log: log.Printf}); err != nil {
		return err
	}

	// A configuration or /data PID 1 cannot use degrades the node rather
	// than failing the boot (degraded_linux.go).
	rt, degraded := prepare(bootSteps{
		readRuntime: func() (*spec.Runtime, error) {
			rt, err := spec.ReadRuntime(spec.RuntimePath)
			if err != nil {
				return nil, err
			}
			if rt.ImageVersion != "" {
				log.Printf("image %s", rt.ImageVersion)
			}
			if rt.Hostname != "" {
				if err := unix.Sethostname([]byte(rt.Hostname)); err != nil {
					log.Printf("sethostname: %v", err)
				}
			}
			return rt, nil
		},
		setupData: func(rt *spec.Runtime) error { return setupData(log, rt) },
		dataTmpfs: func() error { return boot.Run(boot.OS{}, log.Printf, []boot.Mount{boot.DataTmpfs}) },
	})
	setDegraded(log, degraded)
	// The clock is restored from /data now, before anything speaks TLS
	// (clock_linux.go).
	startClock(log, rt)
	if err := boot.RemountRootReadOnly(); err != nil {
		log.Printf("root stays writable: %v", err)
	} else {
		log.Printf("root file system is read-only")
	}

	ctx := context.Background()
	// Remote logs (logs_linux.go): /data is up, the apps not yet.
	startLogShipping(ctx, log, rt)
	if err := netconf.LoopbackUp(); err != nil {
		log.Printf("loopback: %v", err)
	}
	// Apps start before the network is configured: they bind 0.0.0.0, so
	// the address can come later, and a DHCP lease (~0.1-0.3 s under QEMU,
	// seconds on some LANs) stays off the boot's critical path. An app that
	// resolves names in its first moments may see no resolv.conf yet; it
	// then fails like on any host without network and is restarted.
	powerReq := make(chan boot.Action, 1)
	// OS updates (update_linux.go): settled before the apps start.
	osBoot := bootUpdate(log, rt, powerReq)
	n := newNode(log, rt, powerReq)
	// A trial runs the apps the update carries, not versions deployed on
	// the old image; the commit makes that last (trialGate).
	n.trial = osBoot.Trial
	// require('nodeboot'): every app's socket exists before it starts.
	n.appAPI = startAppAPI(log, rt, n)
	services := make([]*supervise.Service, 0, len(rt.Apps))
	var listening sync.WaitGroup
	for _, a := range rt.Apps {
		o, err := serviceOptions(log, rt, a)
		if err != nil {
			log.Printf("app %s not started: %v", a.Name, err)
			continue
		}
		n.appAPI.wire(&o, a)
		s := supervise.New(o)
		// A version deployed through the API runs instead of the image's
		// own, if it is complete (manage sets the command).
		n.add(n.manage(a, s))
		services = append(services, s)
		registerService(s)
		crash.Go("app "+a.Name, func() { s.Run(ctx) })
		listening.Add(1)
		crash.Go("app "+a.Name+" listening", func() { watchListening(log, a); listening.Done() })
	}
	if osBoot.Trial {
		crash.Go("update trial", func() { trialGate(log, rt, services, n.keepImages) })
	}
	appsUp := make(chan struct{})
	crash.Go("boot time", func() {
		listening.Wait()
		n.setBootSeconds(uptime())
		close(appsUp)
	})
	crash.Go("network", func() { startNetwork(ctx, log, rt) })
	// The management API waits until the apps listen (at most
	// apiStartDelay): loading its key and starting TLS costs CPU that node
	// needs while it starts, and nobody can reach the API before the
	// network is up anyway.
	crash.Go("api start", func() {
		select {
		case <-appsUp:
		case <-time.After(apiStartDelay):
		}
		n.serveAPI()
		// The follower starts with the API, once the apps listen: its
		// first check would only compete with node's start (follow_linux.go).
		if rt.Follow != nil {
			startFollowing(n, rt)
		}
	})
	power := boot.PowerEvents(log.Printf)

	var action boot.Action
	select {
	case action = <-power:
	case action = <-powerReq:
	}
	// The apps' lock()s hold a reboot or power-off off, each at most its
	// maxLockSeconds.
	_ = n.appAPI.waitLocks(context.Background(), n.names(), action.String())
	// An OS update's reboot recorded "update" already; that one stays.
	if action.IsReboot() {
		nodeStopping(appapi.CauseReboot)
	} else {
		nodeStopping(appapi.CausePowerOff)
	}
	log.Printf("%v requested: stopping %d app(s)", action, len(services))
	// Nothing from outside (a deploy, the follower) may start an app or
	// write to /data from now on (shutdown_linux.go).
	n.stopServing(2 * time.Second)
	supervise.StopAll(services, stopGrace)
	log.Printf("all apps stopped")
	closeDataFiles(log) // the apps' log files: /data must be unmounted
	n.appAPI.closeSockets()
	saveClock(log)
	stopLogShipping(2 * time.Second) // logs_linux.go: before /data goes
	boot.Halt(action, log.Printf, func() { log.Flush(5 * time.Second) })
	return nil
}

// checkInitramfs fails the boot with a reason when the kernel could not unpack
// the whole initramfs (it does not fit in RAM): the kernel goes on with
// whatever was unpacked, and node would then fail with baffling errors such
// as "text file busy" on a half-written binary.
func checkInitramfs() error {
	buf := make([]byte, 1<<20)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil || n <= 0 {
		return nil
	}
	if i := bytes.Index(buf[:n], []byte("Initramfs unpacking failed")); i >= 0 {
		line := buf[i:n]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		return fmt.Errorf("the kernel reported %q: the image does not fit in this machine's RAM; give it more memory (an initramfs image needs about 3.5× its unpacked size: `nodeboot run --memory 512M`), build it with --compression zstd (a smaller archive to hold while unpacking) or with --format disk", line)
	}
	return nil
}

func serviceOptions(log *boot.Logger, rt *spec.Runtime, a spec.RuntimeApp) (supervise.Options, error) {
	nodePath := rt.NodePath
	if nodePath == "" {
		nodePath = "/usr/bin/node"
	}
	o, err := supervise.AppOptions(nodePath, a)
	if err != nil {
		return o, err
	}
	o.Env = append(o.Env, "PATH=/usr/bin")
	o.Console = log.Writer()
	// Output also goes to /data/logs/<app>.log, size-bounded, so it
	// survives reboots on disk images.
	// And to the remote log shipper, when there is one (logs_linux.go),
	// before the file: MultiWriter stops at the first writer's error.
	writers := []io.Writer{log.Writer()}
	if w := appLogWriter(a.Name); w != nil {
		writers = append(writers, w)
	}
	if f, err := applog.Open(filepath.Join("/data/logs", a.Name+".log"), 0, 0); err == nil {
		writers = append(writers, f)
		keepDataFile(f) // closed at shutdown, before /data is unmounted
	} else {
		log.Printf("app %s: no log file: %v", a.Name, err)
	}
	o.Console = io.MultiWriter(writers...)
	o.Log = log.Printf
	o.StopGrace = stopGrace
	o.Sandbox = appSandbox(log, a)
	return o, nil
}

// setupData mounts /data and creates each app's state dir, owned by the app.
func setupData(log *boot.Logger, rt *spec.Runtime) error {
	if rt.DataPartition == "" {
		if err := boot.Run(boot.OS{}, log.Printf, []boot.Mount{boot.DataTmpfs}); err != nil {
			return err
		}
		log.Printf("WARNING: /data is a tmpfs: this image has no data partition, nothing the apps write survives a reboot")
	} else {
		res := datafs.Mount("/data", log.Printf)
		if res.Tmpfs {
			// Loud on purpose: the node runs, but nothing it writes will last.
			for i := 0; i < 3; i++ {
				log.Printf("WARNING: %s", res.Warning)
			}
			log.Printf("WARNING: /data is a tmpfs for this boot: nothing the apps write survives a reboot")
		} else {
			log.Printf("mounted ext4 %s on /data (%d MiB)", res.Device, res.Size>>20)
		}
	}
	for _, d := range []string{"/data/state", "/data/logs"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	for _, a := range rt.Apps {
		dir := a.DataDir
		if dir == "" {
			continue
		}
		// The app owns its state dir and what is in it: it is opened
		// without following links, and the persist dirs bound through
		// fds (internal/persist, issue 12 item 5).
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(dir), err)
		}
		if err := persist.MakeStateDir(dir, a.UID, a.GID); err != nil {
			return err
		}
		// The image's code dir keeps these binds for the boot; a deployed
		// version gets its own while it runs (internal/deploy).
		if err := persistOf(a).Bind(a.Dir); err != nil {
			// The app would write into a read-only dir and fail in
			// its own way; say here what went wrong.
			log.Printf("app %s: %v", a.Name, err)
		}
	}
	return nil
}

// startNetwork configures the first Ethernet link (DHCP or static) and
// keeps the lease; it runs in the background for the node's life.
func startNetwork(ctx context.Context, log *boot.Logger, rt *spec.Runtime) {
	ifname, err := netconf.FirstEthernet()
	if err != nil {
		log.Printf("network: %v (apps run with loopback only)", err)
		return
	}
	st, err := netconf.Start(ctx, netconf.Config{
		Interface:  ifname,
		Net:        rt.Network,
		Hostname:   rt.Hostname,
		ResolvConf: "/run/resolv.conf",
		Log:        log.Printf,
		Timeout:    -1, // keep trying: a LAN's DHCP server may come up after the node
		NoTimeSync: rt.Network.NTPOff,
		NTPAdjust:  nodeClock.Adjust,
	})
	if err != nil {
		log.Printf("network %s: %v", ifname, err)
		return
	}
	log.Printf("%s: %s %s", contract.NetworkConfigured, ifname, strings.Join(st.Addrs(), " "))
	if !rt.Network.NTPOff {
		ntpServers.mu.Lock()
		ntpServers.list = netconf.NTPServerList(st.NTPServers(), rt.Network.NTP)
		ntpServers.mu.Unlock()
	}
	networkUp(ifname, st.Addrs())
}

// netState is the interface the network came up on this boot ("" before),
// for info() (liveState).
var netState struct {
	sync.Mutex
	ifname string
}

// networkUp tells the apps (events()) that the node's network is up, and
// the log shipper and the follower, which tried their endpoints before
// the node had an address and would otherwise wait out their backoff
// (up to a minute; up to the follow interval). It records it for info().
func networkUp(ifname string, addrs []string) {
	netState.Lock()
	netState.ifname = ifname
	netState.Unlock()
	publishEvent(appapi.EventNetwork, "", fmt.Sprintf("network up: %s %s", ifname, strings.Join(addrs, " ")))
	logsNetworkUp()
	if f := currentFollower(); f != nil && f.Status().State == follow.StateOffline {
		f.Wake()
	}
}

// watchListening logs when an app's port accepts connections: the boot's
// last phase, and the marker the benchmark and `nodeboot run` read. It
// reads the kernel's socket tables rather than connecting (tcpListening);
// an app in its own network namespace ("network": "none") is not in them,
// and for it a connect would not work either.
func watchListening(log *boot.Logger, a spec.RuntimeApp) {
	if a.Port == 0 {
		return
	}
	// Poll every 100 ms while a boot is in progress, then rarely: even
	// reading two /proc files costs ~1.7 ms of CPU per poll under TCG
	// (measured with nodeboot.cpuprofile), and an app that never listens
	// must not cost the node a busy loop. The marker is late by up to one
	// interval; the app itself is reachable as soon as it listens.
	start := time.Now()
	for {
		if portListening(a.Port) {
			cpu := ""
			if d, ok := selfCPU(); ok {
				cpu = fmt.Sprintf(" (init CPU since it started: %d ms)", (d - initCPUAtStart).Milliseconds())
			}
			log.Printf("%s%s", contract.AppListening(a.Name, a.Port), cpu)
			stopBootProfile(log)
			return
		}
		if time.Since(start) < time.Minute {
			time.Sleep(100 * time.Millisecond)
		} else {
			time.Sleep(time.Second)
		}
	}
}

func portListening(port int) bool {
	for _, t := range []string{"/proc/net/tcp6", "/proc/net/tcp"} {
		if b, err := os.ReadFile(t); err == nil && tcpListening(b, port) {
			return true
		}
	}
	return false
}
