// Command bench measures nodeboot against the floor and the peer, in one
// run on one machine: it builds examples/hello as nodeboot images (the
// initramfs and the disk format), as the floor (the same kernel booting a
// minimal initramfs whose init execs node at once) and as the peer (Debian
// stable with systemd running the same node and app as a service), boots each
// N times under QEMU, alternating the systems so drift on the host hits all
// alike, and writes a markdown report: QEMU start → first HTTP 200, the boot
// phases read off the guest console, image sizes, the smallest RAM that still
// answers, the guest's memory in use after boot, and requests/s. `make bench`
// runs it and writes docs/benchmarks.md.
//
// Usage:
//
//	go run ./bench [-n 5] [-systems initramfs,disk,floor,debian] [-o docs/benchmarks.md]
//	               [-memory 512M] [-accel auto] [-min-ram=true] [-load=true] [-node SPEC]
//	               [-rebuild=true] [-rebuild-only] [-updates-only] [-registry-only]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/initbuild"
	"github.com/nodeboot/nodeboot/internal/kernel"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/vm"
)

const (
	// appName is the app examples/hello runs as; appPort is where it listens.
	appName = "hello"
	appPort = 8080
	// pollEvery is how often the host starts a new HTTP attempt on the
	// app's forwarded port.
	pollEvery = 25 * time.Millisecond
	// maxInFlight bounds the attempts waiting at once (see measure).
	maxInFlight = 80
	// attemptTimeout bounds one HTTP attempt.
	attemptTimeout = 2 * time.Second
	// shutdownTimeout is how long a guest gets to power off between boots.
	shutdownTimeout = 30 * time.Second
)

// Boot is the outcome of one boot.
type Boot struct {
	Seq    int // 1-based, in the order the boots ran
	System string
	Accel  string
	Memory string
	Wall   time.Duration // QEMU start → first HTTP 200 (host clock)
	// PreKernel is QEMU start → kernel start, estimated from when the host
	// saw the system's init marker and the guest's stamp on it.
	PreKernel time.Duration
	// KernelToInit is the guest's stamp on the init marker.
	KernelToInit time.Duration
	// InitToHTTP is init marker seen → first HTTP 200, host clock.
	InitToHTTP time.Duration
	HasInit    bool
	// SeenToHTTP is "app hello listening" seen → first HTTP 200 (nodeboot).
	SeenToHTTP time.Duration
	Phases     Phases // nodeboot's detailed phases; valid when HasPhases
	HasPhases  bool
	// Used is the guest's MemTotal - MemAvailable after boot, from the
	// balloon statistics; RPS is wrk's requests/s. 0 when not measured
	// (MeasureErr says why).
	Used       int64
	RPS        float64
	MeasureErr string
	Err        string // why the boot failed; "" when it succeeded
	// ShutdownErr: the power-off through the ACPI power button failed.
	ShutdownErr string
	// OtherLoad is the CPU (in cores) that everything on the host but this
	// harness and its QEMU used during the boot; HasLoad says whether it
	// could be measured.
	OtherLoad float64
	HasLoad   bool
	// Calibration is how long a fixed workload took on the host just
	// before the boot (see calibrate): the host's own speed at the time.
	Calibration time.Duration
}

// OK tells whether the boot produced numbers.
func (b *Boot) OK() bool { return b.Err == "" }

// load renders OtherLoad.
func (b *Boot) load() string {
	if !b.HasLoad {
		return "-"
	}
	return fmt.Sprintf("%.2f", b.OtherLoad)
}

// MinRAM is the outcome of one system's memory bisection.
type MinRAM struct {
	Pass, Fail int // MiB: smallest that answered, largest that did not (0: none failed)
	Tries      int
	FailWhy    string // how the boot at Fail failed
}

type options struct {
	n        int
	out      string
	memory   string
	accel    string
	cpu      string
	timeout  time.Duration
	quiet    time.Duration
	verbose  bool
	systems  string
	node     string
	minRAM   bool
	ramFrom  int
	ramTries int
	ramOnly  string
	load     bool
	updates  bool
	// registry measures a release round trip through a registry;
	// registryOnly only that, spliced into o.out.
	registry, registryOnly bool
	// rebuild times warm rebuilds (rebuild.go); rebuildOnly only that,
	// spliced into o.out.
	rebuild, rebuildOnly bool
	// updatesOnly measures only the OS updates and replaces their
	// section in the -o file, keeping the boots' figures.
	updatesOnly bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 5, "boots per system")
	flag.StringVar(&o.out, "o", "", "write the markdown report to this file (default: stdout)")
	flag.StringVar(&o.systems, "systems", defaultSystems, "comma-separated systems to boot: "+systemNames())
	flag.StringVar(&o.memory, "memory", "512M", "guest RAM for the timed boots, QEMU -m syntax")
	flag.StringVar(&o.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	flag.StringVar(&o.cpu, "cpu", "", "QEMU -cpu model under TCG (default: what nodeboot run gives, "+vm.TCGCPU+")")
	flag.StringVar(&o.node, "node", "", "node for every system, as nodeboot's --node (default: what nodeboot picks)")
	flag.BoolVar(&o.minRAM, "min-ram", true, "find each system's smallest RAM that still answers (one boot per step)")
	flag.IntVar(&o.ramFrom, "min-ram-from", 64, "smallest RAM (MiB) the bisection tries")
	flag.IntVar(&o.ramTries, "min-ram-tries", 6, "most boots per system for the RAM bisection")
	flag.StringVar(&o.ramOnly, "min-ram-systems", "", "comma-separated systems to bisect RAM for (default: every system booted); a bisection on a loaded host costs minutes per system")
	flag.BoolVar(&o.load, "load", true, "load the app with wrk for 10 s after each boot (requests/s)")
	flag.BoolVar(&o.updates, "updates", true, "measure two OS updates of a disk-image node (the app changed; another node major version)")
	flag.BoolVar(&o.updatesOnly, "updates-only", false, "measure only the OS updates and replace their section in the -o file")
	flag.BoolVar(&o.registry, "registry", true, "measure a one-line app change published and pulled through the real registry")
	flag.BoolVar(&o.registryOnly, "registry-only", false, "measure only the registry round trip and replace its section in the -o file")
	flag.BoolVar(&o.rebuild, "rebuild", true, "time warm rebuilds of examples/hello after a one-line edit")
	flag.BoolVar(&o.rebuildOnly, "rebuild-only", false, "time only the warm rebuilds and replace their section in the -o file")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up on a boot that has not answered HTTP after this long")
	flag.DurationVar(&o.quiet, "quiet-wait", 2*time.Minute, "before each boot, wait up to this long for other work on the host to stop using the CPU (0: do not wait)")
	flag.BoolVar(&o.verbose, "v", false, "stream the guest consoles to stderr")
	flag.Parse()
	if o.n < 1 {
		fmt.Fprintln(os.Stderr, "bench: -n must be at least 1")
		os.Exit(2)
	}
	switch o.accel {
	case "auto", "kvm", "tcg":
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown -accel %q: use auto, kvm or tcg\n", o.accel)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func systemNames() string {
	var names []string
	for _, s := range allSystems() {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

func run(ctx context.Context, o options) error {
	systems, err := selectSystems(o.systems)
	if err != nil {
		return err
	}
	if o.ramOnly != "" {
		// Checked now, not after the timed boots: a misspelt name would
		// otherwise bisect nothing after an hour.
		if _, err := selectSystems(o.ramOnly); err != nil {
			return fmt.Errorf("-min-ram-systems: %w", err)
		}
		for _, n := range strings.Split(o.ramOnly, ",") {
			if n = strings.TrimSpace(n); n != "" && !want2(systems, n) {
				return fmt.Errorf("-min-ram-systems names %s, which -systems does not boot", n)
			}
		}
	}
	memMiB, err := parseMiB(o.memory)
	if err != nil {
		return err
	}
	if _, err := vm.FindQEMU("amd64"); err != nil {
		return err
	}
	src, err := initbuild.Source()
	if err != nil {
		return err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return fmt.Errorf("no user cache dir for the benchmark's images: %w (set XDG_CACHE_HOME)", err)
	}
	e := &env{appDir: filepath.Join(src, "examples", "hello"), src: src, cacheDir: filepath.Join(cache, "nodeboot", "bench"), nodeFlag: o.node}
	if e.tmp, err = os.MkdirTemp("", "nodeboot-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.tmp)
	if o.updatesOnly {
		return runUpdatesOnly(ctx, e, o)
	}
	if o.registryOnly {
		return runRegistryOnly(ctx, e, o)
	}
	if o.rebuildOnly {
		return runRebuildOnly(ctx, e, o)
	}
	// Every system runs the very node binary nodeboot picks.
	if e.node, err = noderuntime.Resolve(ctx, noderuntime.Request{Arch: "amd64", Flag: o.node, Log: os.Stderr}); err != nil {
		return err
	}
	k, err := kernel.Default("amd64")
	if err != nil {
		return err
	}
	e.kernel = k.Path
	e.systems = map[string]*System{}
	for _, s := range systems {
		e.systems[s.Name] = s
		fmt.Fprintf(os.Stderr, "preparing %s: %s\n", s.Name, s.Label)
		if err := s.prepare(ctx, e); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
	}

	rep := &Report{
		Date:       time.Now().UTC(),
		Host:       hostInfo(),
		QEMU:       qemuVersion(),
		AccelFlag:  o.accel,
		KVMOpens:   vm.KVMUsable(),
		Memory:     o.memory,
		N:          o.n,
		Systems:    systems,
		Node:       e.node,
		KernelVer:  k.Version,
		KernelSrc:  k.Source,
		Load:       o.load,
		MinRAM:     map[string]*MinRAM{},
		RAMFrom:    o.ramFrom,
		RAMTries:   o.ramTries,
		WrkVersion: wrkVersion(),
	}
	// Alternate the systems, so that whatever drifts on the host during the
	// run (load, thermals, caches) affects all of them alike.
	seq := 0
	for i := 0; i < o.n; i++ {
		for _, s := range systems {
			if err := ctx.Err(); err != nil {
				return err
			}
			seq++
			fmt.Fprintf(os.Stderr, "boot %d/%d: %s (%d of %d)\n", seq, o.n*len(systems), s.Name, i+1, o.n)
			b := bootOnce(ctx, o, s, seq, o.memory, o.timeout, true)
			if b.OK() {
				fmt.Fprintf(os.Stderr, "  %s: HTTP 200 after %s (kernel→init %s, init→HTTP %s; used %s, %.0f req/s; other load %s cores)\n",
					b.Accel, ms(b.Wall), ms(b.KernelToInit), ms(b.InitToHTTP), size(b.Used), b.RPS, b.load())
			} else {
				fmt.Fprintf(os.Stderr, "  FAILED: %s\n", b.Err)
			}
			if b.MeasureErr != "" {
				fmt.Fprintf(os.Stderr, "  not measured: %s\n", b.MeasureErr)
			}
			if b.ShutdownErr != "" {
				fmt.Fprintf(os.Stderr, "  shutdown: %s\n", b.ShutdownErr)
			}
			rep.Boots = append(rep.Boots, b)
		}
	}
	if o.minRAM {
		only := map[string]bool{}
		for _, n := range strings.Split(o.ramOnly, ",") {
			if n = strings.TrimSpace(n); n != "" {
				only[n] = true
			}
		}
		for _, s := range systems {
			if len(only) > 0 && !only[s.Name] {
				continue
			}
			wall := rep.summary(s.Name, func(b *Boot) (time.Duration, bool) { return b.Wall, true })
			if wall.N == 0 {
				continue
			}
			// A boot with too little RAM may hang instead of failing; give
			// it three times a good boot, and not less than a minute.
			timeout := max(3*wall.Max, time.Minute)
			m := &MinRAM{}
			m.Pass, m.Fail, m.Tries = bisectMiB(o.ramFrom, memMiB, 16, o.ramTries, func(mib int) bool {
				if ctx.Err() != nil {
					return true
				}
				seq++
				mem := fmt.Sprintf("%dM", mib)
				fmt.Fprintf(os.Stderr, "RAM bisection, %s at %s\n", s.Name, mem)
				b := bootOnce(ctx, o, s, seq, mem, timeout, false)
				rep.RAMBoots = append(rep.RAMBoots, b)
				if !b.OK() {
					fmt.Fprintf(os.Stderr, "  no answer: %s\n", b.Err)
					if m.FailWhy == "" || mib > m.Fail {
						m.FailWhy = b.Err
					}
					return false
				}
				fmt.Fprintf(os.Stderr, "  answered after %s\n", ms(b.Wall))
				return true
			})
			rep.MinRAM[s.Name] = m
		}
	}
	if o.updates {
		runs, err := measureUpdates(ctx, e, o)
		if err != nil {
			return fmt.Errorf("OS updates: %w", err)
		}
		rep.Updates = runs
	}
	if o.registry {
		r := measureRegistry(ctx, e, o)
		rep.Registry = &r
	}
	if o.rebuild {
		rep.Rebuilds = measureRebuilds(ctx, e)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	var out strings.Builder
	rep.Render(&out)
	if o.out == "" {
		_, err = io.WriteString(os.Stdout, out.String())
	} else {
		err = renameio.WriteFile(o.out, []byte(out.String()), 0o644)
		if err == nil {
			fmt.Fprintf(os.Stderr, "wrote %s\n", o.out)
		}
	}
	if err != nil {
		return err
	}
	for _, s := range systems {
		if len(rep.ok(s.Name)) == 0 {
			return fmt.Errorf("every %s boot failed; the report has the reasons", s.Name)
		}
	}
	return nil
}

// parseMiB reads a QEMU -m size ("512M", "1G", "512") in MiB.
func parseMiB(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(t, "G"):
		mult, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	}
	var n int
	if _, err := fmt.Sscanf(t, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != t || n > 1<<20 {
		return 0, fmt.Errorf("-memory %q: use MiB or GiB, e.g. 512M or 1G", s)
	}
	return n * mult, nil
}

// bootOnce boots s with mem of RAM, measures it and stops it. With full it
// also reads the guest's memory and loads the app. It never panics on a bad
// boot: the failure and its reason are in the result, the console tail on
// stderr.
func bootOnce(ctx context.Context, o options, s *System, seq int, mem string, timeout time.Duration, full bool) (b Boot) {
	b = Boot{Seq: seq, System: s.Name, Accel: "-", Memory: mem}
	if o.quiet > 0 {
		load, waited := waitQuiet(ctx, o.quiet)
		if load >= quietThreshold {
			fmt.Fprintf(os.Stderr, "  the host is busy (other work uses %.2f cores) after waiting %v; booting anyway\n", load, waited.Round(time.Second))
		} else if waited > 2*time.Second {
			fmt.Fprintf(os.Stderr, "  waited %v for the host to be quiet\n", waited.Round(time.Second))
		}
	}
	b.Calibration = calibrate()
	fail := func(err error) Boot {
		// The vm package appends the console tail to its errors after a
		// newline; the table gets the first line.
		msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
		b.Err = msg
		return b
	}
	if err := s.freshCopy(); err != nil {
		return fail(err)
	}
	port, err := vm.FreePort()
	if err != nil {
		return fail(err)
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := s.VMConfig(mem)
	cfg.Accel = o.accel
	cfg.CPU = o.cpu
	cfg.Forwards = []vm.Forward{{Host: port, Guest: appPort}}
	if o.verbose {
		cfg.Console = os.Stderr
	}
	g, err := vm.Start(bctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if !b.OK() {
			fmt.Fprintf(os.Stderr, "--- boot %d (%s) console tail ---\n%s\n---\n", seq, s.Name, g.Tail(40))
			g.Kill()
		}
		// Accel is final once QEMU has exited (a KVM failure relaunches
		// under TCG).
		b.Accel = g.Accel
	}()
	firstAccel := g.Accel

	meter := startLoadMeter(port)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	seen, err := measure(bctx, g, url, s)
	if load, err := meter.others(); err != nil {
		fmt.Fprintf(os.Stderr, "  other load not measured: %v\n", err)
	} else {
		b.OtherLoad, b.HasLoad = load, true
	}
	if err != nil {
		return fail(err)
	}
	if g.Accel != firstAccel {
		// QEMU was started twice: the time includes a failed KVM start.
		return fail(fmt.Errorf("KVM failed at run time and QEMU was started again under %s: this boot's times are not comparable (later boots go straight to %s)", g.Accel, g.Accel))
	}
	b.Wall = seen.http
	console := g.Console()
	if st, ok := markerStamp(console, s.InitMarker); ok && seen.init > 0 {
		// The guest's clock starts with the kernel; the host's with QEMU.
		// The host saw the init marker at seen.init and the guest stamped
		// it st, so the kernel started about seen.init - st after QEMU
		// did. The console read latency makes this a slight overestimate.
		b.KernelToInit, b.PreKernel, b.InitToHTTP, b.HasInit = st, seen.init-st, seen.http-seen.init, true
	}
	if s.Detailed {
		p, err := ParsePhases(console, appName)
		if err != nil {
			return fail(err)
		}
		b.Phases, b.HasPhases = p, true
		b.SeenToHTTP = seen.http - seen.listening
	}
	if full {
		var why []string
		if used, err := guestUsed(bctx, g); err != nil {
			why = append(why, err.Error())
		} else {
			b.Used = used
		}
		if o.load {
			if rps, err := runWrk(bctx, url, loadDuration); err != nil {
				why = append(why, err.Error())
			} else {
				b.RPS = rps
			}
		}
		b.MeasureErr = strings.Join(why, "; ")
	}
	if s.Kind == kindNodeboot {
		// nodeboot's power-off path is part of what it promises: check it
		// on every boot.
		if err := g.Shutdown(shutdownTimeout); err != nil {
			b.ShutdownErr = err.Error()
		}
	} else {
		// The floor has no power-off handling at all and the peer's is not
		// under test: a power cut is fine for throwaway overlays.
		g.Kill()
	}
	return b
}

// seenTimes are host times since QEMU start.
type seenTimes struct {
	init, listening, http time.Duration
}

// consoleEvent is a marker the host saw on the console.
type consoleEvent struct {
	marker string
	at     time.Duration // host time since QEMU start
	err    error
}

const (
	initMarker    = contract.ConsolePrefix + contract.InitStarted
	networkMarker = contract.ConsolePrefix + contract.NetworkConfigured
)

var listeningMarker = contract.ConsolePrefix + strings.TrimSuffix(contract.AppListening(appName, 0), "0")

// measure polls the app over the forwarded port until it answers 200 and
// notes when the console showed the system's init marker (and nodeboot's
// "app hello listening"). It fails at once when the guest dies or panics.
//
// A new attempt starts every pollEvery, each on its own connection, without
// waiting for the ones before: before the guest has an address, QEMU's user
// networking accepts the host's connection and holds it instead of refusing
// it, so one attempt at a time would see the first answer late by up to the
// attempt's timeout. Held connections go through once the guest answers, so
// the first 200 is seen within about pollEvery of when it was possible, the
// same way for every system.
func measure(ctx context.Context, g *vm.VM, url string, s *System) (seenTimes, error) {
	var st seenTimes
	markers := []string{s.InitMarker}
	if s.Detailed {
		markers = append(markers, listeningMarker)
	}
	events := make(chan consoleEvent, len(markers))
	go func() {
		off := 0
		for _, marker := range markers {
			var err error
			off, err = g.WaitFor(ctx, marker, off)
			events <- consoleEvent{marker: marker, at: g.Since(), err: err}
			if err != nil {
				return
			}
		}
	}()

	client := &http.Client{
		Timeout:   attemptTimeout,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	defer client.CloseIdleConnections()
	pctx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	var (
		mu       sync.Mutex
		lastErr  error
		inFlight int
	)
	answered := make(chan time.Duration, 1)
	attempt := func() {
		ok, err := try(pctx, client, url)
		at := g.Since()
		mu.Lock()
		inFlight--
		if !ok && pctx.Err() == nil {
			lastErr = err
		}
		mu.Unlock()
		if ok {
			select {
			case answered <- at:
			default:
			}
		}
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	handle := func(e consoleEvent) error {
		if e.err != nil {
			return e.err
		}
		switch e.marker {
		case s.InitMarker:
			st.init = e.at
		case listeningMarker:
			st.listening = e.at
		}
		return nil
	}
	for st.http == 0 {
		select {
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			if lastErr != nil {
				return st, fmt.Errorf("gave up after %v without an HTTP 200; last attempt: %v", g.Since().Round(time.Second), lastErr)
			}
			return st, fmt.Errorf("gave up after %v without an HTTP 200: %w", g.Since().Round(time.Second), ctx.Err())
		case e := <-events:
			if err := handle(e); err != nil {
				return st, err
			}
		case <-g.Done():
			return st, fmt.Errorf("QEMU exited before the app answered: %v", g.Err())
		case at := <-answered:
			st.http = at
		case <-tick.C:
			mu.Lock()
			start := inFlight < maxInFlight
			if start {
				inFlight++
			}
			mu.Unlock()
			if start {
				go attempt()
			}
		}
	}
	stopPolling()
	// The answer can beat the console lines to the host by a moment.
	for (st.init == 0 && s.InitMarker != "") || (s.Detailed && st.listening == 0) {
		select {
		case e := <-events:
			if err := handle(e); err != nil {
				return st, err
			}
		case <-time.After(10 * time.Second):
			if s.Detailed {
				return st, fmt.Errorf("the app answered but the console never showed %q", listeningMarker)
			}
			// The peer's init marker is a kernel message a quiet kernel
			// leaves out: then there are no phases, only the wall time.
			return st, nil
		}
	}
	return st, nil
}

// markerStamp returns the guest's timestamp on the first console line whose
// message starts with marker.
func markerStamp(console, marker string) (time.Duration, bool) {
	if marker == "" {
		return 0, false
	}
	for _, line := range strings.Split(console, "\n") {
		ts, msg, ok := parseStamp(strings.TrimSuffix(line, "\r"))
		if ok && strings.HasPrefix(msg, marker) {
			return ts, true
		}
	}
	return 0, false
}

func wrkVersion() string {
	if _, err := exec.LookPath("wrk"); err != nil {
		return ""
	}
	// wrk has no --version; its usage text starts with the version.
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// try makes one HTTP attempt; it succeeds on a 200 whose body is hello's.
func try(ctx context.Context, c *http.Client, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("HTTP %s", resp.Status)
	}
	if !strings.HasPrefix(string(body), "hello from ") {
		return false, fmt.Errorf("HTTP 200 with an unexpected body %q", body)
	}
	return true, nil
}

// HostInfo describes the machine the benchmark ran on.
type HostInfo struct {
	CPU    string
	Cores  int
	RAM    int64 // bytes
	Kernel string
}

func hostInfo() HostInfo {
	h := HostInfo{CPU: "unknown", Cores: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		h.CPU, h.Cores = parseCPUInfo(string(b), h.Cores)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		h.RAM = parseMemTotal(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// parseCPUInfo returns the first "model name" of /proc/cpuinfo and the
// number of "processor" entries (fallback when there are none).
func parseCPUInfo(s string, fallback int) (string, int) {
	model, n := "unknown", 0
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "unknown" {
				model = strings.TrimSpace(v)
			}
		case "processor":
			n++
		}
	}
	if n == 0 {
		n = fallback
	}
	return model, n
}

// parseMemTotal returns MemTotal of /proc/meminfo in bytes (0 if absent).
func parseMemTotal(s string) int64 {
	for _, line := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

func qemuVersion() string {
	bin, err := vm.FindQEMU("amd64")
	if err != nil {
		return "unknown"
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// prefixWriter indents the build's progress lines.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	lines := strings.SplitAfter(string(b), "\n")
	var sb strings.Builder
	for _, l := range lines {
		if l != "" {
			sb.WriteString(p.prefix + l)
		}
	}
	if _, err := io.WriteString(p.w, sb.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}
