package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/nodeboot/nodeboot/internal/noderuntime"
)

// Targets, from the speed issue: nodeboot against the floor and the peer.
const (
	targetBootFloor = 1.10 // boot-to-HTTP ≤ 1.10 × floor
	targetBootPeer  = 0.35 // boot-to-HTTP ≤ 0.35 × peer
	targetImagePeer = 0.5  // image ≤ 0.5 × peer
	targetRAMPeer   = 0.6  // minimum RAM ≤ 0.6 × peer
)

// Report is everything docs/benchmarks.md says.
type Report struct {
	Date       time.Time
	Host       HostInfo
	QEMU       string
	AccelFlag  string
	KVMOpens   bool
	Memory     string
	N          int
	Systems    []*System
	Node       *noderuntime.Runtime
	KernelVer  string
	KernelSrc  string
	Load       bool
	WrkVersion string
	Boots      []Boot
	// The RAM bisection: its boots and each system's outcome.
	RAMBoots []Boot
	MinRAM   map[string]*MinRAM
	RAMFrom  int
	RAMTries int
	// Updates are the OS updates measured (renderUpdates).
	Updates []UpdateRun
	// Registry is the release round trip (renderRegistry).
	Registry *RegistryRun
	// Rebuilds are the warm rebuilds timed (renderRebuilds).
	Rebuilds []RebuildRun
}

// metric is one row of a boot-time table.
type metric struct {
	label string
	get   func(b *Boot) (time.Duration, bool)
}

var (
	wallMetric      = metric{"**QEMU start → first HTTP 200** (host clock)", func(b *Boot) (time.Duration, bool) { return b.Wall, true }}
	preKernelMetric = metric{"QEMU start → kernel start (QEMU, firmware, loading, kernel self-decompression; estimate)", func(b *Boot) (time.Duration, bool) { return b.PreKernel, b.HasInit }}
	kernelMetric    = metric{"kernel start → init (guest clock)", func(b *Boot) (time.Duration, bool) { return b.KernelToInit, b.HasInit }}
	userMetric      = metric{"init → first HTTP 200 (host clock)", func(b *Boot) (time.Duration, bool) { return b.InitToHTTP, b.HasInit }}
)

// detailed are nodeboot's own phases, read off its console markers.
var detailed = []metric{
	wallMetric,
	preKernelMetric,
	{"kernel start → `init started`", func(b *Boot) (time.Duration, bool) { return b.Phases.KernelToInit, b.HasPhases }},
	{"↳ of which the kernel unpacks the initramfs", func(b *Boot) (time.Duration, bool) { return b.Phases.Unpack, b.HasPhases && b.Phases.HasUnpack }},
	{"`init started` → `network configured`", func(b *Boot) (time.Duration, bool) { return b.Phases.InitToNetwork, b.HasPhases }},
	{"`init started` → `hello: started` (the init's overhead)", func(b *Boot) (time.Duration, bool) { return b.Phases.InitToApp, b.HasPhases }},
	{"`hello: started` → `app hello listening` (node start-up)", func(b *Boot) (time.Duration, bool) { return b.Phases.AppToListening, b.HasPhases }},
	{"kernel start → `app hello listening` (guest clock)", func(b *Boot) (time.Duration, bool) { return b.Phases.KernelToListening, b.HasPhases }},
	{"`app hello listening` on the host console → first HTTP 200", func(b *Boot) (time.Duration, bool) { return b.SeenToHTTP, b.HasPhases }},
}

// ok returns the successful timed boots of a system.
func (r *Report) ok(name string) []*Boot {
	var out []*Boot
	for i := range r.Boots {
		if b := &r.Boots[i]; b.System == name && b.OK() {
			out = append(out, b)
		}
	}
	return out
}

func (r *Report) countBoots(name string) int {
	n := 0
	for _, b := range r.Boots {
		if b.System == name {
			n++
		}
	}
	return n
}

// summary summarises one metric over the successful boots of a system.
func (r *Report) summary(name string, get func(*Boot) (time.Duration, bool)) Summary {
	var xs []time.Duration
	for _, b := range r.ok(name) {
		if d, ok := get(b); ok {
			xs = append(xs, d)
		}
	}
	return Summarize(xs)
}

// medianOf is the median of a per-boot number over the successful boots
// that have it (> 0); ok is false when none has.
func (r *Report) medianOf(name string, get func(*Boot) float64) (float64, bool) {
	var xs []time.Duration
	for _, b := range r.ok(name) {
		if v := get(b); v > 0 {
			// Summarize works on durations; the unit does not matter.
			xs = append(xs, time.Duration(v*1000))
		}
	}
	s := Summarize(xs)
	return float64(s.Median) / 1000, s.N > 0
}

func (r *Report) system(name string) *System {
	for _, s := range r.Systems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// floorFor is the floor b's boot time is held against: the floor booting
// b's kernel when one ran (a kernel's own cost is not nodeboot's to cut),
// else def.
func (r *Report) floorFor(b, def *System) *System {
	for _, s := range r.Systems {
		if s.Kind == kindFloor && s.KernelName == b.KernelName {
			return s
		}
	}
	return def
}

// first returns the first system of a kind (the one ratios use).
func (r *Report) first(kind string) *System {
	for _, s := range r.Systems {
		if s.Kind == kind {
			return s
		}
	}
	return nil
}

func (r *Report) accels() string {
	seen := map[string]bool{}
	var out []string
	for _, b := range append(append([]Boot(nil), r.Boots...), r.RAMBoots...) {
		if b.Accel != "" && b.Accel != "-" && !seen[b.Accel] {
			seen[b.Accel] = true
			out = append(out, b.Accel)
		}
	}
	if len(out) == 0 {
		return "none (no boot started)"
	}
	return strings.Join(out, ", ")
}

func (r *Report) accelNote() string {
	used := r.accels()
	switch {
	case r.AccelFlag == "auto" && used == "tcg" && r.KVMOpens:
		return "tcg: `/dev/kvm` exists and opens, but KVM fails at run time on this host (KVM internal error), so the vm package falls back to TCG, QEMU's software emulation"
	case r.AccelFlag == "auto" && used == "tcg":
		return "tcg: `/dev/kvm` is missing or cannot be opened, so the vm package uses TCG, QEMU's software emulation"
	}
	return fmt.Sprintf("%s (`-accel %s`)", used, r.AccelFlag)
}

// order renders the boot order of the systems.
func (r *Report) order() string {
	var names []string
	for _, s := range r.Systems {
		names = append(names, s.Name)
	}
	return strings.Join(append(names, "..."), ", ")
}

// minRAMOf is a system's smallest answering RAM in MiB (0: not measured).
func (r *Report) minRAMOf(name string) int {
	if m := r.MinRAM[name]; m != nil {
		return m.Pass
	}
	return 0
}

// minRAMText renders a bisection's outcome.
func (r *Report) minRAMText(name string) string {
	m := r.MinRAM[name]
	switch {
	case m == nil:
		return "-"
	case m.Fail == 0:
		return fmt.Sprintf("≤ %d MiB", m.Pass)
	case m.Pass-m.Fail > 16:
		return fmt.Sprintf("%d MiB (fails at %d; bisection stopped after %d boots)", m.Pass, m.Fail, m.Tries)
	}
	return fmt.Sprintf("%d MiB (fails at %d)", m.Pass, m.Fail)
}

// ratio renders a/b and whether it meets the target (≤ target).
func ratio(a, b, target float64) (string, string) {
	if a <= 0 || b <= 0 {
		return "-", "not measured"
	}
	q := a / b
	if q <= target {
		return fmt.Sprintf("%.2f", q), "yes"
	}
	return fmt.Sprintf("%.2f", q), "**no**"
}

// Render writes the whole report. The file is generated: nothing in it is
// edited by hand (docs/performance.md holds the decisions).
func (r *Report) Render(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }

	p("<!-- Generated by `make bench` (go run ./bench -o docs/benchmarks.md). The harness writes the\n")
	p("     whole file: do not edit it by hand; change bench/ and run `make bench` again. The decisions\n")
	p("     taken from these numbers are in docs/performance.md. -->\n\n")
	p("# Benchmarks\n\n")
	p("examples/hello booted by nodeboot (initramfs and disk image), by the *floor* (the same kernel booting a\n")
	p("minimal initramfs whose init execs node at once: the least any system on this kernel can do) and by the\n")
	p("*peer* (Debian stable with systemd, running the same node binary and app as a systemd service), in one\n")
	p("run on one machine, alternating the systems. Decisions taken from these numbers: [performance.md](performance.md).\n\n")

	p("## Run\n\n")
	p("| | |\n|---|---|\n")
	p("| date | %s |\n", r.Date.Format("2006-01-02 15:04 MST"))
	p("| machine | %s, %d cores, %s RAM, Linux %s |\n", cell(r.Host.CPU), r.Host.Cores, size(r.Host.RAM), cell(r.Host.Kernel))
	p("| QEMU | %s |\n", cell(r.QEMU))
	p("| accelerator | %s |\n", r.accelNote())
	p("| guest | 1 vCPU, %s RAM for the timed boots, virtio-net (user networking, port forward), virtio-rng, virtio-balloon |\n", cell(r.Memory))
	p("| guest kernel | Linux %s (%s), the same for every system |\n", cell(r.KernelVer), cell(r.KernelSrc))
	if r.Node != nil {
		p("| node | %s (%s), the same binary for every system |\n", cell(r.Node.Version), cell(r.Node.Source))
	}
	if r.Load {
		wrk := r.WrkVersion
		if wrk == "" {
			wrk = "wrk missing"
		}
		p("| load | %s, 1 thread, %d connections, %v per boot |\n", cell(wrk), wrkConnections, loadDuration)
	}
	p("| boots | %d per system, alternating %s |\n\n", r.N, r.order())

	p("## Systems\n\n")
	p("| system | what | machine | kernel command line |\n|---|---|---|---|\n")
	for _, s := range r.Systems {
		machine := "pc"
		if s.Machine != "" {
			machine = s.Machine
		}
		if s.uefi() {
			machine += " + OVMF"
		}
		what := s.Label
		if len(s.Notes) > 0 {
			what += " (" + strings.Join(s.Notes, "; ") + ")"
		}
		cmdline := s.Cmdline
		if s.Disk != "" {
			cmdline += " (from the boot entry)"
		}
		p("| %s | %s | %s | `%s` |\n", s.Name, cell(what), machine, cell(strings.TrimSpace(cmdline+" "+s.ExtraCmdline)))
	}
	p("\n")

	p("## Results\n\n")
	p("Medians over the boots that succeeded (min–max in brackets). *Image* is every file QEMU boots (kernel,\n")
	p("initramfs, disk image): *on disk* is the blocks they take on the host, *zstd* their size compressed with zstd.\n")
	p("*Min RAM* is the smallest `-m`, in 16 MiB steps, at which the app still answered (one boot per step).\n")
	p("*Used* is the guest's MemTotal − MemAvailable shortly after the first HTTP 200, from the virtio-balloon\n")
	p("statistics. *req/s* is wrk's figure over %v after boot.\n\n", loadDuration)
	p("| system | ok | QEMU → HTTP 200 | kernel → init | init → HTTP 200 | image on disk | image zstd | min RAM | used after boot | req/s |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Systems {
		wall := r.summary(s.Name, wallMetric.get)
		used, hasUsed := r.medianOf(s.Name, func(b *Boot) float64 { return float64(b.Used) })
		rps, hasRPS := r.medianOf(s.Name, func(b *Boot) float64 { return b.RPS })
		usedText, rpsText := "-", "-"
		if hasUsed {
			usedText = size(int64(used))
		}
		if hasRPS {
			rpsText = fmt.Sprintf("%.0f", rps)
		}
		p("| %s | %d of %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Name, len(r.ok(s.Name)), r.countBoots(s.Name),
			rangeText(wall), medText(r.summary(s.Name, kernelMetric.get)), medText(r.summary(s.Name, userMetric.get)),
			size(s.Size.Allocated), size(s.Size.Zstd), r.minRAMText(s.Name), usedText, rpsText)
	}
	p("\n")

	r.renderTargets(p)

	var variants []*System
	for _, s := range r.Systems {
		if s.Kind == kindNodeboot && s.Name != "initramfs" && s.Name != "disk" && s.Name != "disk-direct" {
			variants = append(variants, s)
		}
	}
	if base := r.system("initramfs"); base != nil && len(variants) > 0 {
		p("## Variants of nodeboot\n\n")
		p("Each against `initramfs`, from the pairs of boots that ran in the same round.\n\n")
		for _, v := range variants {
			p("- **%s** (%s): %s\n", v.Name, cell(v.Label), r.compare(base.Name, v.Name))
		}
		p("\n")
	}

	var det []*System
	for _, s := range r.Systems {
		if s.Detailed {
			det = append(det, s)
		}
	}
	if len(det) > 0 {
		p("## nodeboot's boot phases\n\n")
		p("From nodeboot's console markers: the kernel and the init stamp their lines with the same clock (time\n")
		p("since the kernel started). Medians.\n\n")
		p("| phase |")
		for _, s := range det {
			p(" %s |", s.Name)
		}
		p("\n|---|")
		for range det {
			p("---:|")
		}
		p("\n")
		for _, mt := range detailed {
			p("| %s |", mt.label)
			for _, s := range det {
				p(" %s |", medText(r.summary(s.Name, mt.get)))
			}
			p("\n")
		}
		p("\n")
	}

	p("## Every boot\n\n")
	p("In the order they ran. Times in ms. *Other CPU* is the CPU, in cores of the host's %d, that everything\n", r.Host.Cores)
	p("on the host besides the harness and the boot's own QEMU used while the boot ran. *Host calib.* is how\n")
	p("long a fixed CPU and memory workload took on the host just before the boot: the host's own speed.\n\n")
	r.bootTable(p, r.Boots)
	if len(r.RAMBoots) > 0 {
		p("### RAM bisection boots\n\n")
		r.bootTable(p, r.RAMBoots)
	}

	p("## What this says\n\n")
	for _, para := range r.Findings() {
		p("%s\n\n", para)
	}

	if len(r.Updates) > 0 {
		renderUpdates(p, r.Updates)
	}
	if r.Registry != nil {
		renderRegistry(p, *r.Registry)
	}
	if len(r.Rebuilds) > 0 {
		renderRebuilds(p, r.Rebuilds)
	}
	p("## Method\n\n")
	p("`go run ./bench` (flags: `-n` boots per system, `-systems`, `-o`, `-memory`, `-accel`, `-node`,\n")
	p("`-min-ram`, `-min-ram-from`, `-min-ram-tries`, `-load`, `-quiet-wait`, `-timeout`, `-v`) builds every\n")
	p("system once from the same kernel, node binary and app, then boots them in turn, each in a fresh QEMU.\n\n")
	p("- **nodeboot**: `nodeboot build` of examples/hello; the initramfs booted as `nodeboot run out/` does\n")
	p("  (kernel and initramfs given to QEMU), the disk image as `nodeboot run app.img` does (OVMF →\n")
	p("  systemd-boot → kernel → squashfs root; throwaway overlay).\n")
	p("- **floor**: a static Go init (bench/floorinit, built with CGO_ENABLED=0) in an uncompressed initramfs (as nodeboot's default) with node,\n")
	p("  its libraries and the app. It mounts devtmpfs and /proc, brings eth0 up with the static address QEMU's\n")
	p("  user network expects (10.0.2.15/24, netlink), because the HTTP check comes in through the port forward,\n")
	p("  and execs node. No supervisor, no /data, no DHCP.\n")
	p("- **peer**: `debootstrap --variant=minbase --include=%s %s` from the host's apt mirror, node copied\n", peerInclude, peerSuite)
	p("  to /usr/local/bin, the app in /opt/hello with a systemd unit (`User=hello`, `After=network.target`),\n")
	p("  systemd-networkd with DHCP on the virtio NIC (what a user would set up; QEMU's user network answers\n")
	p("  DHCP with 10.0.2.15), an ext4 image made with `mkfs.ext4 -d`, booted with `-kernel` and `root=/dev/vda`\n")
	p("  on a virtio disk, no initramfs. Root file system and image are cached in the user cache dir\n")
	p("  (nodeboot/bench). Its kernel → init phase ends at the kernel's `Run /sbin/init as init process`.\n")
	p("- The wall time runs from QEMU's start to the first HTTP 200 from hello through the forwarded port. A\n")
	p("  new attempt on a new connection starts every %d ms without waiting for earlier ones (QEMU's user\n", pollEvery.Milliseconds())
	p("  networking holds a connection open until the guest can take it), so every system's first answer is\n")
	p("  seen the same way.\n")
	p("- kernel → init is the guest's timestamp on each system's init marker; QEMU start → kernel start is\n")
	p("  when the host saw that line minus that timestamp (an estimate, slightly high); init → HTTP 200 is the\n")
	p("  host's clock.\n")
	p("- *Used*: every guest has a virtio-balloon device with statistics polling (QMP `qom-set\n")
	p("  guest-stats-polling-interval`, `qom-get guest-stats`), and the balloon driver reports MemTotal and\n")
	p("  MemAvailable as the guest's kernel computes them; used = total − available. The same device and\n")
	p("  reading for all three systems, no agent in the guest.\n")
	p("- *Min RAM*: a bisection between %d MiB and the timed boots' RAM in 16 MiB steps, at most %d boots per\n", r.RAMFrom, r.RAMTries)
	p("  system, each given three times the slowest good boot (at least a minute) to answer.\n")
	p("- nodeboot guests are powered off through the ACPI power button (which checks that path on every\n")
	p("  boot); the floor and the peer are stopped by killing QEMU (their disks are throwaway overlays).\n")
	p("- Before each boot the harness waits (up to `-quiet-wait`) until the rest of the host uses under\n")
	p("  %.2f cores, and times a fixed workload (*host calib.*); during the boot it measures the CPU\n", quietThreshold)
	p("  everything else used (*other CPU*, from /proc/stat).\n")
	p("- Which of two systems is faster is decided on the pairs of boots that ran in the same round: a\n")
	p("  one-sided sign test on how many pairs the faster median won (p < %.2f), unless every boot of one beat\n", significance)
	p("  every boot of the other outright.\n")
	p("- A failed boot stays in the tables with its reason.\n")
}

func medText(s Summary) string {
	if s.N == 0 {
		return "-"
	}
	return ms(s.Median)
}

func rangeText(s Summary) string {
	if s.N == 0 {
		return "-"
	}
	if s.N == 1 {
		return ms(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", ms(s.Median), num(s.Min), num(s.Max))
}

func (r *Report) bootTable(p func(string, ...any), boots []Boot) {
	p("| # | system | RAM | accel | QEMU → HTTP 200 | kernel → init | init → HTTP 200 | used | req/s | other CPU | host calib. | result |\n")
	p("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for i := range boots {
		b := &boots[i]
		if !b.OK() {
			p("| %d | %s | %s | %s | - | - | - | - | - | %s | %s | **failed**: %s |\n", b.Seq, b.System, b.Memory, cell(b.Accel), b.load(), num(b.Calibration), cell(b.Err))
			continue
		}
		k, u := "-", "-"
		if b.HasInit {
			k, u = num(b.KernelToInit), num(b.InitToHTTP)
		}
		used, rps := "-", "-"
		if b.Used > 0 {
			used = size(b.Used)
		}
		if b.RPS > 0 {
			rps = fmt.Sprintf("%.0f", b.RPS)
		}
		result := "ok"
		var notes []string
		if b.ShutdownErr != "" {
			notes = append(notes, "power-off: "+cell(b.ShutdownErr))
		}
		if b.MeasureErr != "" {
			notes = append(notes, "not measured: "+cell(b.MeasureErr))
		}
		if len(notes) > 0 {
			result += " (" + strings.Join(notes, "; ") + ")"
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", b.Seq, b.System, b.Memory, cell(b.Accel), num(b.Wall), k, u, used, rps, b.load(), num(b.Calibration), result)
	}
	p("\n")
}

// renderTargets checks the targets of nodeboot against the floor and the
// peer and says, where one is missed, which phase costs it.
func (r *Report) renderTargets(p func(string, ...any)) {
	floor, peer := r.first(kindFloor), r.first(kindPeer)
	var bases []*System
	for _, n := range []string{"initramfs", "disk", "disk-direct", "initramfs-vmkernel", "disk-vmkernel", "disk-direct-vmkernel", "disk-pckernel"} {
		if s := r.system(n); s != nil {
			bases = append(bases, s)
		}
	}
	if len(bases) == 0 || (floor == nil && peer == nil) {
		return
	}
	p("## Targets\n\n")
	p("| nodeboot | measure | against | nodeboot | other | ratio | target | met |\n|---|---|---|---:|---:|---:|---:|---|\n")
	var why []string
	wallOf := func(s *System) float64 { return float64(r.summary(s.Name, wallMetric.get).Median) }
	for _, b := range bases {
		floor := r.floorFor(b, floor)
		row := func(measure string, other *System, a, o float64, render func(float64) string, target float64) {
			q, met := ratio(a, o, target)
			p("| %s | %s | %s | %s | %s | %s | ≤ %.2f | %s |\n", b.Name, measure, other.Name, render(a), render(o), q, target, met)
			if met == "**no**" {
				why = append(why, r.whyMissed(b, other, measure))
			}
		}
		dur := func(v float64) string {
			if v <= 0 {
				return "-"
			}
			return ms(time.Duration(v))
		}
		bytes := func(v float64) string {
			if v <= 0 {
				return "-"
			}
			return size(int64(v))
		}
		mib := func(v float64) string {
			if v <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f MiB", v)
		}
		if floor != nil {
			row("QEMU start → HTTP 200", floor, wallOf(b), wallOf(floor), dur, targetBootFloor)
		}
		if peer != nil {
			row("QEMU start → HTTP 200", peer, wallOf(b), wallOf(peer), dur, targetBootPeer)
			row("image on disk", peer, float64(b.Size.Allocated), float64(peer.Size.Allocated), bytes, targetImagePeer)
			row("image zstd", peer, float64(b.Size.Zstd), float64(peer.Size.Zstd), bytes, targetImagePeer)
			row("min RAM", peer, float64(r.minRAMOf(b.Name)), float64(r.minRAMOf(peer.Name)), mib, targetRAMPeer)
		}
	}
	p("\n")
	if len(why) > 0 {
		p("Where a target is missed:\n\n")
		for _, w := range why {
			p("- %s\n", w)
		}
		p("\n")
	}
}

// whyMissed says which phase makes b miss a target against other.
func (r *Report) whyMissed(b, other *System, measure string) string {
	switch {
	case strings.HasPrefix(measure, "QEMU start"):
		type part struct {
			name string
			d    time.Duration
		}
		var parts []part
		for _, mt := range []struct {
			name string
			m    metric
		}{{"QEMU start → kernel start (firmware, loading)", preKernelMetric}, {"kernel start → init", kernelMetric}, {"init → HTTP 200", userMetric}} {
			x, y := r.summary(b.Name, mt.m.get), r.summary(other.Name, mt.m.get)
			if x.N > 0 && y.N > 0 {
				parts = append(parts, part{mt.name, x.Median - y.Median})
			}
		}
		if len(parts) == 0 {
			return fmt.Sprintf("%s against %s: no phases to compare.", b.Name, other.Name)
		}
		worst := parts[0]
		var list []string
		for _, pt := range parts {
			if pt.d > worst.d {
				worst = pt
			}
			list = append(list, fmt.Sprintf("%s %+d ms", pt.name, pt.d.Milliseconds()))
		}
		text := fmt.Sprintf("%s boots slower than %s needs: the phase that costs it most is **%s** (%+d ms; all phases, %s minus %s: %s).",
			b.Name, "the target against "+other.Name, worst.name, worst.d.Milliseconds(), b.Name, other.Name, strings.Join(list, ", "))
		if worst.name == "init → HTTP 200" && b.Detailed {
			text += fmt.Sprintf(" Inside it, nodeboot's init takes %s before node runs and node %s to listen.",
				medText(r.summary(b.Name, detailed[5].get)), medText(r.summary(b.Name, detailed[6].get)))
		}
		if strings.HasPrefix(worst.name, "QEMU start") && b.uefi() {
			text += " That is the UEFI path: OVMF starting, systemd-boot, and the firmware loading the kernel from the ESP, which a kernel given to QEMU directly skips."
		}
		if worst.name == "kernel start → init" && b.Initrd != "" {
			text += fmt.Sprintf(" Most of it is the kernel unpacking the %s initramfs (%s).", size(b.Size.Apparent-fileSizeOr0(b.Kernel)), medText(r.summary(b.Name, detailed[3].get)))
		}
		return text
	case measure == "min RAM":
		m := r.MinRAM[b.Name]
		if m == nil || m.Fail == 0 {
			return fmt.Sprintf("%s needs more RAM than the target allows.", b.Name)
		}
		text := fmt.Sprintf("%s needs %d MiB; at %d MiB: %s.", b.Name, m.Pass, m.Fail, m.FailWhy)
		if b.Initrd != "" {
			text += " An initramfs lives in RAM: the kernel keeps the compressed archive while it unpacks it into a RAM-backed root, so the whole image (node alone is about 95 MiB) is in memory before node starts; the peer reads its root from disk on demand."
		}
		if b.uefi() {
			text += " Under UEFI the kernel's EFI stub decompresses the kernel in firmware-managed memory first (see docs/ARCHITECTURE.md); the peer's kernel is loaded by QEMU directly."
		}
		return text
	}
	return fmt.Sprintf("%s against %s: %s over the target.", b.Name, other.Name, measure)
}

func fileSizeOr0(p string) int64 {
	if s, err := measureFileSize(p); err == nil {
		return s
	}
	return 0
}

// compare says whether a or b boots faster (wall time), from the pairs of
// boots in the same round, and how the other figures differ.
func (r *Report) compare(a, b string) string {
	sa, sb := r.summary(a, wallMetric.get), r.summary(b, wallMetric.get)
	if sa.N == 0 || sb.N == 0 {
		return "no comparison: every boot of one of them failed."
	}
	fast, slow, sf, ss := a, b, sa, sb
	if sb.Median < sa.Median {
		fast, slow, sf, ss = b, a, sb, sa
	}
	diff := ss.Median - sf.Median
	wins, pairs, _ := r.paired(fast, slow, wallMetric.get)
	var s strings.Builder
	switch {
	case diff == 0:
		fmt.Fprintf(&s, "no difference: both medians are %s.", ms(sf.Median))
	case sf.Max < ss.Min:
		fmt.Fprintf(&s, "**%s is faster**, %s against %s (medians), %s or %.1f%% less; every %s boot beat every %s boot.",
			fast, ms(sf.Median), ms(ss.Median), ms(diff), pctOf(diff, ss.Median), fast, slow)
	case signTest(wins, pairs) < significance:
		fmt.Fprintf(&s, "**%s is faster**, %s against %s (medians), %s or %.1f%% less; it won %d of %d pairs (%s).",
			fast, ms(sf.Median), ms(ss.Median), ms(diff), pctOf(diff, ss.Median), wins, pairs, pText(signTest(wins, pairs)))
	default:
		fmt.Fprintf(&s, "**not separated**: %s's median is lower, %s against %s (%s or %.1f%%), but it won only %d of %d pairs (%s).",
			fast, ms(sf.Median), ms(ss.Median), ms(diff), pctOf(diff, ss.Median), wins, pairs, pText(signTest(wins, pairs)))
	}
	ra, okA := r.medianOf(a, func(b *Boot) float64 { return b.RPS })
	rb, okB := r.medianOf(b, func(b *Boot) float64 { return b.RPS })
	if okA && okB {
		fmt.Fprintf(&s, " Requests/s: %.0f (%s) against %.0f (%s).", ra, a, rb, b)
	}
	var failed []string
	for _, n := range []string{a, b} {
		if f := r.countBoots(n) - len(r.ok(n)); f > 0 {
			failed = append(failed, fmt.Sprintf("%d %s boots failed", f, n))
		}
	}
	for _, n := range []string{a, b} {
		for _, bt := range r.ok(n) {
			if bt.ShutdownErr != "" {
				failed = append(failed, fmt.Sprintf("%s did not power off cleanly (%s)", n, bt.ShutdownErr))
				break
			}
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&s, " Note: %s.", strings.Join(failed, "; "))
	}
	return s.String()
}

// paired compares the k-th boot of a with the k-th boot of b, which ran in
// the same round, so host drift affects both alike: it returns how many pairs
// a won, how many pairs had both numbers, and the median of b − a.
func (r *Report) paired(a, b string, get func(*Boot) (time.Duration, bool)) (aWins, n int, median time.Duration) {
	var as, bs []*Boot
	for i := range r.Boots {
		switch r.Boots[i].System {
		case a:
			as = append(as, &r.Boots[i])
		case b:
			bs = append(bs, &r.Boots[i])
		}
	}
	var diffs []time.Duration
	for k := 0; k < len(as) && k < len(bs); k++ {
		if !as[k].OK() || !bs[k].OK() {
			continue
		}
		x, ok1 := get(as[k])
		y, ok2 := get(bs[k])
		if !ok1 || !ok2 {
			continue
		}
		n++
		if x < y {
			aWins++
		}
		diffs = append(diffs, y-x)
	}
	return aWins, n, Summarize(diffs).Median
}

// Findings are the "what this says" paragraphs, computed from the numbers.
func (r *Report) Findings() []string {
	var out []string
	for _, s := range r.Systems {
		total := r.countBoots(s.Name)
		switch failed := total - len(r.ok(s.Name)); {
		case failed == total && total > 0:
			out = append(out, fmt.Sprintf("Every %s boot failed (see \"Every boot\" for the reasons).", s.Name))
		case failed > 0:
			out = append(out, fmt.Sprintf("%d of %d %s boots failed (see \"Every boot\"); the medians are over the others.", failed, total, s.Name))
		}
	}
	floor, peer := r.first(kindFloor), r.first(kindPeer)
	for _, n := range []string{"initramfs", "disk"} {
		if r.system(n) == nil {
			continue
		}
		for _, o := range []*System{floor, peer} {
			if o != nil {
				out = append(out, fmt.Sprintf("%s against %s: %s", n, o.Name, r.compare(n, o.Name)))
			}
		}
	}
	if para := r.loadFinding(); para != "" {
		out = append(out, para)
	}
	if para := r.driftFinding(); para != "" {
		out = append(out, para)
	}
	if r.accels() == "tcg" {
		out = append(out, "All of this ran under TCG, where QEMU emulates every guest instruction in software: these are TCG times, "+
			"not KVM times, and the split between phases (decompression in particular) may differ under KVM. "+
			"Run `make bench` on a host with working KVM to measure that.")
	}
	return out
}

// significance is the sign test's threshold for calling one variant faster.
const significance = 0.05

// signTest is the one-sided sign test: the probability of at least wins
// wins in n pairs if neither variant were faster (each pair a coin toss).
// It is 1 when there are no pairs.
func signTest(wins, n int) float64 {
	if n <= 0 {
		return 1
	}
	p, c := 0.0, 1.0 // c = C(n, k)
	for k := 0; k <= n; k++ {
		if k >= wins {
			p += c
		}
		c = c * float64(n-k) / float64(k+1)
	}
	return p / math.Pow(2, float64(n))
}

// twoSided is the two-sided sign test, for reporting a phase whichever way
// it went.
func twoSided(wins, n int) float64 {
	if n <= 0 {
		return 1
	}
	k := wins
	if n-wins > k {
		k = n - wins
	}
	return math.Min(1, 2*signTest(k, n))
}

// pText renders a sign test's p-value.
func pText(p float64) string {
	if p < 0.001 {
		return "sign test p < 0.001"
	}
	return fmt.Sprintf("sign test p = %.3f", p)
}

// pctOf is d as a percentage of of.
func pctOf(d, of time.Duration) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(d) / float64(of)
}

// loadFinding says whether other work on the host disturbed the boots.
func (r *Report) loadFinding() string {
	measured, busy := 0, 0
	peak := 0.0
	for _, b := range r.Boots {
		if !b.HasLoad {
			continue
		}
		measured++
		if b.OtherLoad >= quietThreshold {
			busy++
		}
		if b.OtherLoad > peak {
			peak = b.OtherLoad
		}
	}
	switch {
	case measured == 0:
		return ""
	case busy == 0:
		return fmt.Sprintf("Nothing else on the host used noticeable CPU during the boots (at most %.2f cores of %d).", peak, r.Host.Cores)
	}
	return fmt.Sprintf("%d of %d boots ran while other work on the host used the CPU (up to %.2f cores of %d; column *other CPU*). "+
		"Under TCG, where the guest needs a host core of its own, that slows a boot down, so those boots' times are inflated; "+
		"alternating the variants spreads such disturbance over both, but with few boots it can still tilt the comparison.",
		busy, measured, peak, r.Host.Cores)
}

// driftFinding says how much the host's own speed varied over the run.
func (r *Report) driftFinding() string {
	var all []time.Duration
	per := map[string][]time.Duration{}
	for _, b := range r.Boots {
		if b.Calibration > 0 {
			all = append(all, b.Calibration)
			per[b.System] = append(per[b.System], b.Calibration)
		}
	}
	s := Summarize(all)
	if s.N < 2 || s.Min <= 0 {
		return ""
	}
	spread := float64(s.Max)/float64(s.Min) - 1
	var sides []string
	for _, v := range r.Systems {
		if c := Summarize(per[v.Name]); c.N > 0 {
			sides = append(sides, fmt.Sprintf("%s before %s boots", ms(c.Median), v.Name))
		}
	}
	var text string
	if spread < 0.15 {
		text = fmt.Sprintf("The host's own speed held steady: the fixed workload timed before each boot took %s–%s (column *host calib.*).", ms(s.Min), ms(s.Max))
	} else {
		text = fmt.Sprintf("The host's own speed varied during the run: the fixed workload timed before each boot took %s–%s, %.0f%% apart "+
			"(medians %s; column *host calib.*).", ms(s.Min), ms(s.Max), 100*spread, strings.Join(sides, ", "))
	}
	var xs, ys []float64
	for _, b := range r.Boots {
		if b.OK() && b.Calibration > 0 {
			xs = append(xs, float64(b.Calibration))
			ys = append(ys, float64(b.Wall))
		}
	}
	if rho, ok := pearson(xs, ys); ok && len(xs) >= 4 {
		strength := "weakly"
		switch a := math.Abs(rho); {
		case a >= 0.7:
			strength = "strongly"
		case a >= 0.4:
			strength = "moderately"
		}
		text += fmt.Sprintf(" Its time and the boot times correlate %s (Pearson r = %.2f over %d boots)", strength, rho, len(xs))
		if strength == "strongly" {
			text += "."
		} else {
			text += ": the host's speed for a whole boot drifts in ways a short probe does not catch, and alternating the variants is what keeps that drift from favouring either."
		}
	}
	return text
}

// pearson is the correlation coefficient of xs and ys; false when it is
// undefined (fewer than two points, or no variance).
func pearson(xs, ys []float64) (float64, bool) {
	n := len(xs)
	if n < 2 || len(ys) != n {
		return 0, false
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(n)
	my /= float64(n)
	var sxy, sxx, syy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0, false
	}
	return sxy / math.Sqrt(sxx*syy), true
}

// ms renders a duration in milliseconds.
func ms(d time.Duration) string {
	return num(d) + " ms"
}

// num renders a duration as a number of milliseconds: whole above 100 ms,
// with one decimal below.
func num(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	if f >= 100 || f <= -100 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.1f", f)
}

// size renders a byte count in MiB (KiB below 1 MiB).
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// cell makes s safe inside a markdown table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
