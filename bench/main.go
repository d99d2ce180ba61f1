// Command bench measures how fast an image boots: it builds examples/hello
// with the initramfs compressed with zstd and with gzip, boots each variant N
// times under QEMU (alternating them, so drift on the host hits both alike),
// and writes a markdown report of the wall time from QEMU start to the app's
// first HTTP 200, the boot phases read off the guest console, and the image
// sizes. `make bench` runs it and writes docs/benchmarks.md.
//
// Usage:
//
//	go run ./bench [-n 5] [-o docs/benchmarks.md] [-memory 512M] [-accel auto]
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
	"syscall"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/initbuild"
	"github.com/nodeboot/nodeboot/internal/vm"
)

const (
	// appName is the app examples/hello runs as; appPort is where it listens.
	appName = "hello"
	appPort = 8080
	// pollEvery is how often the host tries the app's forwarded port.
	pollEvery = 25 * time.Millisecond
	// attemptTimeout bounds one HTTP attempt, so a connection that the guest
	// never answers does not stall the polling.
	attemptTimeout = 2 * time.Second
	// shutdownTimeout is how long a guest gets to power off between boots.
	shutdownTimeout = 30 * time.Second
)

// Variant is one image under test.
type Variant struct {
	Compression image.Compression
	Dir         string
	Result      *build.Result
}

// Boot is the outcome of one boot.
type Boot struct {
	Seq         int // 1-based, in the order the boots ran
	Compression image.Compression
	Accel       string
	Wall        time.Duration // QEMU start → first HTTP 200 (host clock)
	PreKernel   time.Duration // QEMU start → kernel start, estimated (see measure)
	SeenToHTTP  time.Duration // host saw "app hello listening" → first HTTP 200
	Phases      Phases
	Err         string // why the boot failed; "" when it succeeded
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

type options struct {
	n       int
	out     string
	memory  string
	accel   string
	timeout time.Duration
	quiet   time.Duration
	verbose bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 5, "boots per compression")
	flag.StringVar(&o.out, "o", "", "write the markdown report to this file (default: stdout)")
	flag.StringVar(&o.memory, "memory", "512M", "guest RAM, QEMU -m syntax")
	flag.StringVar(&o.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
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

func run(ctx context.Context, o options) error {
	if _, err := vm.FindQEMU("amd64"); err != nil {
		return err
	}
	src, err := initbuild.Source()
	if err != nil {
		return err
	}
	appDir := filepath.Join(src, "examples", "hello")
	tmp, err := os.MkdirTemp("", "nodeboot-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	variants := []*Variant{{Compression: image.Zstd}, {Compression: image.Gzip}}
	for _, v := range variants {
		v.Dir = filepath.Join(tmp, string(v.Compression))
		fmt.Fprintf(os.Stderr, "building %s with %s\n", appDir, v.Compression)
		res, err := build.Build(ctx, build.Options{
			AppDir:      appDir,
			OutDir:      v.Dir,
			Compression: v.Compression,
			Log:         prefixWriter{w: os.Stderr, prefix: "  "},
			Version:     "bench",
		})
		if err != nil {
			return fmt.Errorf("building %s (%s): %w", appDir, v.Compression, err)
		}
		v.Result = res
	}

	rep := &Report{
		Date:      time.Now().UTC(),
		Host:      hostInfo(),
		QEMU:      qemuVersion(),
		AccelFlag: o.accel,
		KVMOpens:  vm.KVMUsable(),
		Memory:    o.memory,
		N:         o.n,
		Variants:  variants,
	}
	// Alternate the variants, zstd, gzip, zstd, gzip, ..., so that whatever
	// drifts on the host during the run (load, thermals, caches) affects both.
	seq := 0
	for i := 0; i < o.n; i++ {
		for _, v := range variants {
			if err := ctx.Err(); err != nil {
				return err
			}
			seq++
			fmt.Fprintf(os.Stderr, "boot %d/%d: %s (%d of %d)\n", seq, o.n*len(variants), v.Compression, i+1, o.n)
			var waited time.Duration
			if o.quiet > 0 {
				var load float64
				load, waited = waitQuiet(ctx, o.quiet)
				if load >= quietThreshold {
					fmt.Fprintf(os.Stderr, "  the host is busy (other work uses %.2f cores) after waiting %v; booting anyway\n", load, waited.Round(time.Second))
				} else if waited > 2*time.Second {
					fmt.Fprintf(os.Stderr, "  waited %v for the host to be quiet\n", waited.Round(time.Second))
				}
			}
			calib := calibrate()
			b := bootOnce(ctx, o, v, seq)
			b.Calibration = calib
			if b.OK() {
				fmt.Fprintf(os.Stderr, "  %s: HTTP 200 after %s (kernel→init %s, init→%s: started %s, node start-up %s; other load %s cores)\n",
					b.Accel, ms(b.Wall), ms(b.Phases.KernelToInit), appName, ms(b.Phases.InitToApp), ms(b.Phases.AppToListening), b.load())
			} else {
				fmt.Fprintf(os.Stderr, "  FAILED: %s\n", b.Err)
			}
			if b.ShutdownErr != "" {
				fmt.Fprintf(os.Stderr, "  shutdown: %s\n", b.ShutdownErr)
			}
			rep.Boots = append(rep.Boots, b)
		}
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
	for _, v := range variants {
		if len(rep.ok(v.Compression)) == 0 {
			return fmt.Errorf("every %s boot failed; the report has the reasons", v.Compression)
		}
	}
	return nil
}

// bootOnce boots v, measures it and powers it off. It never panics on a bad
// boot: the failure and its reason are in the result, the console tail on
// stderr.
func bootOnce(ctx context.Context, o options, v *Variant, seq int) (b Boot) {
	b = Boot{Seq: seq, Compression: v.Compression, Accel: "-"}
	fail := func(err error) Boot {
		// The vm package appends the console tail to its errors after a
		// newline; the table gets the first line.
		msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
		b.Err = msg
		return b
	}
	port, err := vm.FreePort()
	if err != nil {
		return fail(err)
	}
	bctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var console io.Writer
	if o.verbose {
		console = os.Stderr
	}
	m := v.Result.Manifest
	g, err := vm.Start(bctx, vm.Config{
		Kernel:   v.Result.KernelPath,
		Initrd:   v.Result.InitrdPath,
		Cmdline:  m.Cmdline,
		Memory:   o.memory,
		Accel:    o.accel,
		Forwards: []vm.Forward{{Host: port, Guest: appPort}},
		Console:  console,
	})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if !b.OK() {
			fmt.Fprintf(os.Stderr, "--- boot %d (%s) console tail ---\n%s\n---\n", seq, v.Compression, g.Tail(40))
			g.Kill()
		}
		// Accel is final once QEMU has exited (a KVM failure relaunches
		// under TCG).
		b.Accel = g.Accel
	}()

	meter := startLoadMeter(port)
	seen, err := measure(bctx, g, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if load, err := meter.others(); err != nil {
		fmt.Fprintf(os.Stderr, "  other load not measured: %v\n", err)
	} else {
		b.OtherLoad, b.HasLoad = load, true
	}
	if err != nil {
		return fail(err)
	}
	b.Wall = seen.http
	p, err := ParsePhases(g.Console(), appName)
	if err != nil {
		return fail(err)
	}
	b.Phases = p
	// The guest's clock starts with the kernel; the host's with QEMU. The
	// host saw "init started" at seen.init and the guest stamped it
	// p.Init, so the kernel started about seen.init - p.Init after QEMU
	// did (firmware, loading the kernel and the initramfs). The console
	// read latency makes this a slight overestimate.
	b.PreKernel = seen.init - p.Init
	b.SeenToHTTP = seen.http - seen.listening
	if err := g.Shutdown(shutdownTimeout); err != nil {
		b.ShutdownErr = err.Error()
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
	initMarker    = "nodeboot: init started"
	networkMarker = "nodeboot: network configured"
)

var listeningMarker = fmt.Sprintf("nodeboot: app %s listening on port", appName)

// measure polls the app over the forwarded port until it answers 200 and
// notes when the console showed "init started" and "app hello listening".
// It fails at once when the guest dies or panics.
//
// Polling starts once the console shows "network configured": before the
// guest has an address, QEMU's user networking accepts the host connection
// and holds it instead of refusing it, so an attempt would stall for its
// whole timeout and the first 200 would be seen late. From then on the guest
// refuses connections at once until hello listens.
func measure(ctx context.Context, g *vm.VM, url string) (seenTimes, error) {
	var s seenTimes
	events := make(chan consoleEvent, 4)
	go func() {
		off := 0
		for _, marker := range []string{initMarker, networkMarker, listeningMarker} {
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
	var lastErr error
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	polling := false
	handle := func(e consoleEvent) error {
		if e.err != nil {
			return e.err
		}
		switch e.marker {
		case initMarker:
			s.init = e.at
		case networkMarker:
			polling = true
		case listeningMarker:
			s.listening = e.at
		}
		return nil
	}
	for s.http == 0 {
		select {
		case <-ctx.Done():
			if !polling {
				return s, fmt.Errorf("gave up after %v: the console never showed %q", g.Since().Round(time.Second), networkMarker)
			}
			if lastErr != nil {
				return s, fmt.Errorf("gave up after %v without an HTTP 200; last attempt: %v", g.Since().Round(time.Second), lastErr)
			}
			return s, fmt.Errorf("gave up after %v without an HTTP 200: %w", g.Since().Round(time.Second), ctx.Err())
		case e := <-events:
			if err := handle(e); err != nil {
				return s, err
			}
		case <-g.Done():
			return s, fmt.Errorf("QEMU exited before the app answered: %v", g.Err())
		case <-tick.C:
			if !polling {
				continue
			}
			ok, err := try(ctx, client, url)
			if ok {
				s.http = g.Since()
			} else {
				lastErr = err
			}
		}
	}
	// The answer can beat the console line to the host by a moment.
	for s.listening == 0 {
		select {
		case e := <-events:
			if err := handle(e); err != nil {
				return s, err
			}
		case <-time.After(10 * time.Second):
			return s, fmt.Errorf("the app answered but the console never showed %q", listeningMarker)
		}
	}
	return s, nil
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
