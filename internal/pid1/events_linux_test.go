package pid1

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/update"
)

// events captures what PID 1 publishes to the apps (events()) while a
// test runs.
func events(t *testing.T) *[]string {
	t.Helper()
	var got []string
	old := publishEvent
	publishEvent = func(typ, app, msg string) { got = append(got, typ+" "+app+" "+msg) }
	t.Cleanup(func() { publishEvent = old })
	return &got
}

// fakeUpdater is the updater as the API and the trial gate call it.
type fakeUpdater struct {
	installErr error
	commitErr  error
}

func (f fakeUpdater) Install(ctx context.Context, r io.Reader, o update.InstallOptions) (*update.Armed, error) {
	if f.installErr != nil {
		return nil, f.installErr
	}
	return &update.Armed{Slot: "b", Image: update.Image{ID: "img-2", Version: 2}, From: update.Image{ID: "img-1", Version: 1}}, nil
}
func (fakeUpdater) Offset(h *ospayload.Header) int64 { return 0 }
func (fakeUpdater) RebootIntoTrial() error           { return nil }
func (fakeUpdater) Note(line string) error           { return nil }
func (f fakeUpdater) Commit() (*update.Outcome, error) {
	if f.commitErr != nil {
		return nil, f.commitErr
	}
	return &update.Outcome{Image: update.Image{ID: "img-2", Version: 2}, From: update.Image{ID: "img-1", Version: 1}, OK: true}, nil
}
func (fakeUpdater) Fail(reason string) error { return nil }

// TestUpdateEvents: an OS update staged through the API, committed by the
// trial gate, or failed by it is an "update" event; a refused upload or a
// commit that could not be written is none.
func TestUpdateEvents(t *testing.T) {
	got := events(t)
	u := eventUpdater{fakeUpdater{}}
	if _, err := u.Install(context.Background(), strings.NewReader(""), update.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := eventUpdater{fakeUpdater{installErr: errors.New("bad signature")}}
	if _, err := bad.Install(context.Background(), strings.NewReader(""), update.InstallOptions{}); err == nil {
		t.Fatal("a refused install succeeded")
	}
	log := boot.NewLogger(io.Discard)
	if _, err := (gateTrial{log: log, u: fakeUpdater{commitErr: errors.New("ESP read-only")}}).Commit(); err == nil {
		t.Fatal("a failed commit succeeded")
	}
	if _, err := (gateTrial{log: log, u: fakeUpdater{}}).Commit(); err != nil {
		t.Fatal(err)
	}
	if err := (gateTrial{log: log, u: fakeUpdater{}}).Fail("app web never became healthy"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"update  OS update staged: img-2 (version 2) in slot B (was img-1 (version 1)); the node reboots into it",
		"update  OS update committed: img-2 (version 2) (was img-1 (version 1))",
		"update  OS update failed, the node reboots into the previous image: app web never became healthy",
	}
	if len(*got) != len(want) {
		t.Fatalf("events: %q, want %d", *got, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix((*got)[i], w) {
			t.Errorf("event %d: %q, want it to start with %q", i, (*got)[i], w)
		}
	}
}

// TestUpdateRebootCause: the updater's reboot goes through the power path
// with the apps' onShutdown cause set to "update" first.
func TestUpdateRebootCause(t *testing.T) {
	var causes []string
	old := nodeStopping
	nodeStopping = func(cause string) { causes = append(causes, cause) }
	t.Cleanup(func() { nodeStopping = old })
	power := make(chan boot.Action, 1)
	if err := (powerRebooter{boot.NewLogger(io.Discard), power, boot.Reboot}).Reboot("into the trial of img-2"); err != nil {
		t.Fatal(err)
	}
	if a := <-power; a != boot.Reboot {
		t.Errorf("power action %v, want a reboot", a)
	}
	// A Pi's trial reboot carries the tryboot flag.
	if err := (powerRebooter{boot.NewLogger(io.Discard), power, boot.RebootTryboot}).Reboot("into the trial of img-3"); err != nil {
		t.Fatal(err)
	}
	if a := <-power; a != boot.RebootTryboot || !a.IsReboot() {
		t.Errorf("power action %v, want a tryboot reboot", a)
	}
	if len(causes) != 2 || causes[0] != "update" || causes[1] != "update" {
		t.Errorf("causes recorded: %q, want update for each", causes)
	}
}

// TestNetworkEvent: the network coming up is a "network" event with the
// interface and its addresses.
func TestNetworkEvent(t *testing.T) {
	got := events(t)
	networkUp("eth0", []string{"10.0.2.15/24", "fec0::5054:ff:fe12:3456/64"})
	if len(*got) != 1 || (*got)[0] != "network  network up: eth0 10.0.2.15/24 fec0::5054:ff:fe12:3456/64" {
		t.Errorf("events: %q", *got)
	}
}
