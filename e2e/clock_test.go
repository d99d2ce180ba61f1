package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// chronyd runs Debian's chrony on the host as an NTP server on a free UDP
// port of 127.0.0.1, serving the host's clock (local stratum 8) and never
// setting it (-x). The guest reaches it as 10.0.2.2:port through QEMU's
// user networking, which forwards UDP to the host's loopback.
type chronyd struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func newChronyd(t *testing.T) *chronyd {
	t.Helper()
	bin, err := exec.LookPath("chronyd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/chronyd", "/sbin/chronyd"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		msg := "chronyd is missing: `make deps` installs it (apt-get install chrony)"
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	c := &chronyd{port: port, dir: t.TempDir()}
	conf := fmt.Sprintf("port %d\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile %s\n",
		port, filepath.Join(c.dir, "chronyd.pid"))
	if err := os.WriteFile(filepath.Join(c.dir, "chrony.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "-d", "-x", "-u", "root", "-f", filepath.Join(c.dir, "chrony.conf"))
	t.Cleanup(c.stop)
	return c
}

func (c *chronyd) start(t *testing.T) {
	t.Helper()
	log, err := os.Create(filepath.Join(c.dir, "chronyd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = log, log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting chronyd: %v", err)
	}
}

func (c *chronyd) stop() {
	if c.cmd != nil && c.cmd.Process != nil && c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// clockApp is what the test app answers.
type clockApp struct {
	Now       time.Time `json:"now"`
	Listening bool      `json:"listening"`
	Events    []struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"events"`
	// Clock is info().clock.
	Clock *struct {
		Synced   bool   `json:"synced"`
		Source   string `json:"source"`
		LastSync string `json:"lastSync"`
	} `json:"clock"`
}

// TestClock boots a disk image (directly, without firmware) whose real-time clock starts in 2001 (QEMU
// -rtc base=2001-01-01, like a board without a battery): the node sets its
// clock forward to the image's build time (SOURCE_DATE_EPOCH) before the
// apps start; its NTP server (chrony on the host) is down at first, then
// comes up, and the node syncs, reports it in status and /metrics and
// sends the apps a "clock" event. With chrony stopped again, a reboot
// restores the time saved on /data at shutdown, not the older build time.
func TestClock(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ntpd := newChronyd(t)
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "timeapp"), proj)
	server := fmt.Sprintf("10.0.2.2:%d", ntpd.port)
	cfg := fmt.Sprintf(`{"hostname": "timeapp", "network": {"ntp": [%q]}, "apps": [{"path": "."}]}`, server)
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The floor: an hour ago, so the NTP answer is a visible step forward.
	floor := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	t.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(floor.Unix(), 10))
	img := filepath.Join(t.TempDir(), "timeapp.img")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var log strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	owner, err := creds.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	appPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	apiPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// A direct kernel boot (as `nodeboot run --boot direct`): the clock
	// does not care about the firmware, and it saves two UEFI boots.
	b, err := disk.ReadBoot(img)
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := b.WriteKernel(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Start(ctx, vm.Config{
		Disk: img, Persist: true, Memory: "512M", RTCBase: "2001-01-01",
		Kernel: kernel, Cmdline: b.Entry.Options,
		Forwards: []vm.Forward{{Host: appPort, Guest: 8080}, {Host: apiPort, Guest: cli.APIPort}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	m := &managed{v: v, appPort: appPort, apiPort: apiPort}
	m.waitFor(t, "app timeapp listening on port 8080", 0)
	m.waitFor(t, "management API on https port", 0) // it starts after the apps listen
	app := func() clockApp {
		t.Helper()
		var a clockApp
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort))), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	status := func() *contract.Status {
		t.Helper()
		// A TLS handshake with the node can outlast the client's 10 s
		// when the host is loaded (TCG on shared cores): a timeout is
		// retried, anything else fails at once. A dead guest fails too.
		var out string
		var err error
		for try := 1; ; try++ {
			out, err = nodeboot(ctx, proj, "status", m.node(), "--json")
			if err == nil {
				break
			}
			if v.Err() != nil || try == 4 || !strings.Contains(err.Error(), "timeout") {
				t.Fatalf("status: %v\n%s\nnode's own lines:\n%s", err, out, initLines(v.Console(), 40))
			}
			t.Logf("status, try %d: %v", try, err)
		}
		var st contract.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if st.Clock == nil {
			t.Fatalf("status has no clock: %s", out)
		}
		return &st
	}

	t.Run("restored to the build time from 2001", func(t *testing.T) {
		want := contract.ClockRestored + "2001-01-01T"
		if !strings.Contains(v.Console(), want) || !strings.Contains(v.Console(), "to the build time "+floor.Format(time.RFC3339)) {
			t.Fatalf("console lacks %q ... %q", want, "to the build time "+floor.Format(time.RFC3339))
		}
		a := app()
		if a.Now.Before(floor) {
			t.Errorf("the app sees %v, before the build time %v", a.Now, floor)
		}
		if c := a.Clock; c == nil || c.Synced || c.Source != "build time" || c.LastSync != "" {
			t.Errorf("info().clock before NTP: %+v", c)
		}
		st := status()
		if st.Clock.Synced || st.Clock.Source != "build time" || st.Clock.Now.Before(floor) {
			t.Errorf("clock status before NTP: %+v", st.Clock)
		}
		if len(st.Clock.NTP) == 0 || st.Clock.NTP[0] != server {
			t.Errorf("NTP servers %v, want %s first", st.Clock.NTP, server)
		}
	})

	t.Run("syncs once the NTP server answers", func(t *testing.T) {
		// The app subscribes to events before the server comes up, so its
		// "clock" event cannot be missed.
		for !app().Listening {
			time.Sleep(200 * time.Millisecond)
		}
		from := len(v.Console())
		ntpd.start(t)
		m.waitFor(t, contract.ClockSynced+server, from)
		st := status()
		c := st.Clock
		if !c.Synced || c.Source != server || c.LastSync.IsZero() || c.Saved.IsZero() {
			t.Errorf("clock status after NTP: %+v", c)
		}
		// The node stepped forward by about the hour between the floor and
		// now; its clock now agrees with the host's (generously: the status
		// call itself takes a while under TCG).
		if c.OffsetSeconds < 30*60 {
			t.Errorf("offset %v s, want the step of about an hour from the build time", c.OffsetSeconds)
		}
		if d := time.Since(c.Now); d < -time.Minute || d > time.Minute {
			t.Errorf("node clock %v, host %v", c.Now, time.Now().UTC())
		}
		human, err := nodeboot(ctx, proj, "status", m.node())
		if err != nil || !strings.Contains(human, "synced with "+server) {
			t.Errorf("status: %v\n%s", err, human)
		}
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/metrics", m.node()), nil)
		req.Header.Set("Authorization", "Bearer "+owner.Token)
		resp, err := apiClient(owner).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if f := fams["nodeboot_clock_synced"]; f == nil || f.Metric[0].GetGauge().GetValue() != 1 {
			t.Errorf("nodeboot_clock_synced = %v, want 1", f)
		}
		if f := fams["nodeboot_clock_offset_seconds"]; f == nil || f.Metric[0].GetGauge().GetValue() < 30*60 {
			t.Errorf("nodeboot_clock_offset_seconds = %v", f)
		}
		if fams["nodeboot_clock_saved_timestamp_seconds"] == nil || fams["nodeboot_clock_last_sync_timestamp_seconds"] == nil {
			t.Error("metrics lack the clock's saved or last sync time")
		}
		a := app()
		if c := a.Clock; c == nil || !c.Synced || c.Source != server || c.LastSync == "" {
			t.Errorf("info().clock after NTP: %+v", c)
		}
		var got []string
		for _, ev := range a.Events {
			got = append(got, ev.Type+": "+ev.Message)
			if ev.Type == "clock" && strings.Contains(ev.Message, "clock synced with "+server) {
				return
			}
		}
		t.Errorf("the app got no clock event: %q", got)
	})

	t.Run("a reboot restores the saved time", func(t *testing.T) {
		ntpd.stop()
		from := len(v.Console())
		before := time.Now().UTC().Truncate(time.Second)
		if out, err := nodeboot(ctx, proj, "reboot", m.node()); err != nil {
			t.Fatalf("reboot: %v\n%s", err, out)
		}
		m.waitFor(t, "init started", from)
		m.waitFor(t, "app timeapp listening on port 8080", from)
		m.waitFor(t, "management API on https port", from) // it starts after the apps listen
		con := v.Console()[from:]
		// The clean shutdown unmounted /data (its journal is clean on
		// the next boot): nothing of PID 1's held it.
		down, _, _ := strings.Cut(con, "init started")
		if !unmountedData.MatchString(down) || strings.Contains(initLines(down, 500), "busy") {
			t.Errorf("the reboot did not unmount /data cleanly:\n%s", initLines(down, 40))
		}
		i := strings.Index(con, contract.ClockRestored)
		if i < 0 {
			t.Fatalf("the second boot did not set its clock forward")
		}
		line, _, _ := strings.Cut(con[i:], "\n")
		_, savedStr, ok := strings.Cut(line, " to the saved time ")
		if !ok {
			t.Fatalf("the second boot restored %q, not the saved time", line)
		}
		saved, err := time.Parse(time.RFC3339, strings.TrimSpace(savedStr))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		// Saved at the clean shutdown (or the sync before it): no earlier
		// than the NTP time the node had before the reboot was asked, give
		// or take the saves' one-second resolution and the node's clock
		// error seen above.
		if saved.Before(before.Add(-time.Minute)) {
			t.Errorf("restored the saved time %v, older than the reboot request at %v", saved, before)
		}
		st := status()
		if st.Clock.Synced || st.Clock.Source != "saved time" || st.Clock.Now.Before(saved) {
			t.Errorf("clock status after the reboot: %+v", st.Clock)
		}
	})
}

// initLines are the last n lines PID 1 wrote ("nodeboot: ..."), for a
// failure message: the console's tail is often the kernel's.
func initLines(console string, n int) string {
	var out []string
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "nodeboot: ") {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// unmountedData is PID 1's line for /data itself (not a bind below it)
// coming off at a clean shutdown.
var unmountedData = regexp.MustCompile(`nodeboot: unmounted /data\r?\n`)
