package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/client"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// A cut is a point of an OS update at which the power goes (QEMU is
// killed).
type cut struct {
	// what: "upload" (after frac of the body was sent), "sent" (the whole
	// body sent, the answer not yet read), "accepted" (the 202 read: the
	// entry is written, the reboot 0.5 s away), "console" (marker on the
	// console of a boot after the update was accepted, plus delay), or
	// "reboot" (send it all, let the node reboot itself, then the marker).
	what   string
	frac   float64
	marker string
	delay  time.Duration
	// next starts a new update (the other image, a new version) first.
	next bool
}

func (c cut) String() string {
	switch c.what {
	case "upload":
		return fmt.Sprintf("upload, %.0f%% of the body sent", c.frac*100)
	case "sent":
		return "the whole body sent, before the node's answer"
	case "accepted":
		return "the node's 202 (slot armed, entry written, before its reboot)"
	}
	s := fmt.Sprintf("%q on the console", strings.TrimSpace(c.marker))
	if c.delay > 0 {
		s += fmt.Sprintf(" + %v", c.delay)
	}
	return s
}

// cutsShort run in `make test`, cutsLong under NODEBOOT_LONG: points spread
// over the upload, the slot write, the entry switch, the trial boot and the
// commit (docs/reliability.md).
var (
	trialHealthy = "trial: app counter healthy"
	cutsShort    = []cut{
		{what: "upload", frac: 0.5},
		{what: "accepted"},
		{what: "console", marker: trialHealthy, delay: 4 * time.Second},
	}
	cutsLong = []cut{
		{what: "upload", frac: 0.1},
		{what: "upload", frac: 0.4},
		{what: "upload", frac: 0.7},
		{what: "sent"},
		{what: "accepted"},
		{what: "console", marker: trialHealthy, delay: 5 * time.Second},
		{what: "console", marker: contract.UpdateCommitted},
		{what: "reboot", marker: "Linux version", next: true},
		{what: "reboot", marker: contract.UpdateTrial, next: true},
		{what: "reboot", marker: "trial: apps started", next: true},
		{what: "upload", frac: 0.25, next: true},
		{what: "upload", frac: 0.55},
		{what: "upload", frac: 0.85},
		{what: "upload", frac: 0.99},
		{what: "accepted"},
		{what: "console", marker: trialHealthy},
		{what: "console", marker: trialHealthy, delay: 8 * time.Second},
		{what: "console", marker: contract.UpdateCommitted},
		{what: "reboot", marker: "armed in slot", next: true},
		{what: "reboot", marker: "rebooting: trial boot", next: true},
	}
)

// TestUpdatePowerCuts cuts the power at points spread over OS updates of a
// disk image under OVMF and systemd-boot, then powers the node on again:
// after each cut the next boots serve one complete version (the app of an
// image and the status of that same image), no boot is lost to a kernel or
// PID 1 that cannot start, and the update, sent again (resumed), finishes.
// Three cuts in `make test`, twenty under NODEBOOT_LONG.
func TestUpdatePowerCuts(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	cuts := cutsShort
	if os.Getenv("NODEBOOT_LONG") != "" {
		cuts = cutsLong
	}
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "counter"), proj)
	// The default health gate (30 s): the cuts inside it land before the
	// commit even on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// Two images, "one" (flashed) and "two"; updates alternate between
	// them, each with a newer version.
	ids := map[string]string{}
	imgs := map[string]string{}
	for _, marker := range []string{"one", "two"} {
		if err := os.WriteFile(filepath.Join(proj, "server.js"), []byte(counterJS(t, root, marker, true)), 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, marker+".img")
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", p}, &log, &log); err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		m, err := build.ReadManifestFile(build.DiskManifestPath(p))
		if err != nil {
			t.Fatal(err)
		}
		ids[marker], imgs[marker] = m.ImageVersion, p
	}
	owner, err := creds.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "node.img")
	run(t, "cp", "--sparse=always", imgs["one"], disk)

	var n *cutNode
	boot := func() {
		t.Helper()
		apiPort, err := vm.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		b := bootDisk(t, ctx, disk, "512M", false, vm.Forward{Host: apiPort, Guest: contract.APIPort})
		n = &cutNode{t: t, b: b, owner: owner, apiPort: apiPort,
			c: client.New(fmt.Sprintf("127.0.0.1:%d", apiPort), owner.ClientTLS(), owner.Token)}
	}
	boot()
	running := n.serving(ids)
	if running != "one" {
		t.Fatalf("the flashed disk serves %s", running)
	}

	version := uint64(time.Now().Unix())
	target := ""
	var p *ospayload.Payload
	newUpdate := func() {
		t.Helper()
		target = map[string]string{"one": "two", "two": "one"}[running]
		version++
		var err error
		p, err = ospayload.FromImage(imgs[target], ospayload.BuildOptions{Key: owner.UpdateKey, Version: version, Image: ids[target], Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
	}
	newUpdate()
	var rows []string
	start := time.Now()
	for i, c := range cuts {
		if c.next {
			// The update before is finished: committed after its trial.
			if running != target {
				t.Fatalf("cut %d: the node serves %s, want the last update's %s committed", i+1, running, target)
			}
			// A cut during the trial boot leaves the trial to the boot
			// after it: the node refuses a new update (409) until it
			// commits.
			n.settled(ctx, ids, target)
			newUpdate()
		}
		from := len(n.b.v.Console())
		switch c.what {
		case "upload", "sent", "accepted", "reboot":
			if running == target {
				t.Fatalf("cut %d (%v): the update to %s is done already; the list of cuts is wrong", i+1, c, target)
			}
			acc, err := n.send(ctx, p, c)
			switch {
			case c.what == "accepted" && err != nil:
				t.Fatalf("cut %d: the update was refused: %v", i+1, err)
			case c.what == "reboot":
				if err != nil {
					t.Fatalf("cut %d: the update was refused: %v", i+1, err)
				}
				t.Logf("cut %d: slot %s armed", i+1, acc.Slot)
				if _, err := n.b.v.WaitFor(ctx, c.marker, from); err != nil {
					t.Fatal(err)
				}
			}
		case "console":
			wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
			// The boot that serves now is the trial, or the
			// update must first be sent.
			if _, err := n.b.v.WaitFor(wctx, c.marker, 0); err != nil {
				wcancel()
				t.Fatalf("cut %d: %v", i+1, err)
			}
			wcancel()
			time.Sleep(c.delay)
		}
		n.b.v.Kill()
		t.Logf("cut %d (%v) after %v", i+1, c, time.Since(start).Round(time.Second))
		boot()
		running = n.serving(ids)
		st := n.status()
		bs := st.OS.Booted()
		state := bs.State
		if bs.State == "trial" {
			state = fmt.Sprintf("trial, %d tries left", bs.TriesLeft)
			if bs.TriesLeft == 1 {
				state = "trial, 1 try left"
			}
		}
		rows = append(rows, fmt.Sprintf("| %d | %v | %s (slot %s, %s) |", i+1, c, running, strings.ToUpper(bs.Name), state))
		t.Logf("cut %d: the next boot serves %s from slot %s (%s)", i+1, running, bs.Name, state)
	}
	// The last update finishes: sent again (resumed) unless it is armed
	// or on trial already, and committed.
	if running != target {
		st := n.status()
		if bs := st.OS.Booted(); bs.State != "trial" {
			if _, err := n.send(ctx, p, cut{}); err != nil {
				t.Fatalf("sending the last update again: %v", err)
			}
		}
	}
	n.settled(ctx, ids, target)
	t.Logf("%d cuts in %v:\n| cut | point | the next boot serves |\n|---|---|---|\n%s", len(cuts), time.Since(start).Round(time.Second), strings.Join(rows, "\n"))
}

type cutNode struct {
	t       *testing.T
	b       *diskBoot
	owner   *creds.Creds
	apiPort int
	c       *client.Client
}

// serving waits until the app answers, and returns which image serves: the
// app's marker, checked against the image id the node's status reports, so
// the app and the system are one complete version.
func (n *cutNode) serving(ids map[string]string) string {
	t := n.t
	t.Helper()
	waitServing(t, n.b)
	var c struct{ Image string }
	if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", n.b.port))), &c); err != nil {
		t.Fatal(err)
	}
	st := n.status()
	bs := st.OS.Booted()
	if ids[c.Image] == "" || st.Node.ImageVersion != ids[c.Image] || bs == nil || bs.Image == nil || bs.Image.ID != ids[c.Image] {
		t.Fatalf("the app of image %q serves on a node running image %s (slot %+v): not one complete version", c.Image, st.Node.ImageVersion, bs)
	}
	for _, bad := range []string{"Kernel panic - not syncing", contract.Degraded} {
		con := n.b.v.Console()
		if i := strings.Index(con, bad); i >= 0 {
			// Keep the whole console: the test's temporary files go.
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("nodeboot-updatecut-%d.log", time.Now().UnixNano()))
			os.WriteFile(keep, []byte(con), 0o644)
			t.Fatalf("%q on the console after a power cut (whole console in %s):\n%s", bad, keep, con[max(0, i-3000):min(len(con), i+1500)])
		}
	}
	return c.Image
}

// send streams the update from where the node holds it, cutting the power
// where c says (upload, sent) or right after the answer (accepted).
func (n *cutNode) send(ctx context.Context, p *ospayload.Payload, c cut) (*contract.UpdateAccepted, error) {
	var hdr bytes.Buffer
	if _, err := p.Header.WriteTo(&hdr); err != nil {
		return nil, err
	}
	var from int64
	if o, err := n.c.UpdateOffset(ctx, hdr.Bytes()); err == nil {
		from = o.Offset
	}
	r, err := p.Open(from)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	body := p.Header.Manifest.BodySize()
	cr := &cuttingReader{r: r, kill: n.b.v.Kill, sent: from - int64(hdr.Len())}
	switch c.what {
	case "upload":
		cr.at = int64(c.frac * float64(body))
	case "sent":
		cr.atEOF = true
	}
	acc, err := n.c.Update(ctx, cr, p.Size()-from, from, false, nil)
	if c.what == "upload" || c.what == "sent" {
		if !cr.killed {
			n.t.Fatalf("the cut at %v did not happen (the upload started at %d of %d body bytes)", c, from, body)
		}
		return nil, nil
	}
	return acc, err
}

// cuttingReader kills the VM once sent (body bytes, the header counted
// negative) reaches at, or at the end of the stream.
type cuttingReader struct {
	r      io.Reader
	kill   func()
	sent   int64
	at     int64
	atEOF  bool
	killed bool
}

func (c *cuttingReader) Read(p []byte) (int, error) {
	if c.killed {
		return 0, errors.New("the power is off")
	}
	if !c.atEOF && c.at > 0 && c.sent+int64(len(p)) > c.at {
		p = p[:max(c.at-c.sent, 0)]
	}
	k, err := c.r.Read(p)
	c.sent += int64(k)
	if (!c.atEOF && c.at > 0 && c.sent >= c.at) || (c.atEOF && err == io.EOF) {
		c.kill()
		c.killed = true
		return k, errors.New("the power is off")
	}
	return k, err
}

// settled waits until the node has no trial pending and serves target,
// the last update committed.
func (n *cutNode) settled(ctx context.Context, ids map[string]string, target string) {
	t := n.t
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st := n.status()
		if bs := st.OS.Booted(); bs != nil && bs.State == "good" && st.OS.Last != nil && st.OS.Last.OK && st.OS.Last.Image.ID == ids[target] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last update was not committed within 10 min: %+v\n%s", st.OS, n.b.v.Tail(30))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-n.b.v.Done():
			t.Fatalf("QEMU exited: %v", n.b.v.Err())
		case <-time.After(3 * time.Second):
		}
	}
	if got := n.serving(ids); got != target {
		t.Fatalf("after the last update %s serves, want %s", got, target)
	}
}

// status asks the node's API for its status, retrying while the API starts
// (it comes up after the apps listen).
func (n *cutNode) status() contract.Status {
	t := n.t
	t.Helper()
	deadline := time.Now().Add(8 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := n.c.Status(ctx)
		cancel()
		if err == nil {
			return *s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's status: %v\n%s", err, n.b.v.Tail(30))
		}
		select {
		case <-n.b.v.Done():
			t.Fatalf("QEMU exited: %v\n%s", n.b.v.Err(), n.b.v.Tail(30))
		case <-time.After(2 * time.Second):
		}
	}
}
