package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/testregistry"
)

// updateOS is the node's PUT /v1/update: it verifies the whole stream with
// its image's key as a node does, then "reboots" into the trial, whose
// outcome the next status reports (failTrial: the trial failed and the
// old slot runs again).
func (n *testNode) updateOS(w http.ResponseWriter, r *http.Request) {
	h, err := ospayload.Verify(r.Body, []ed25519.PublicKey{n.updateKey})
	if err != nil {
		apiError(w, http.StatusForbidden, err.Error())
		return
	}
	img := contract.UpdateImage{ID: h.Manifest.Image, Version: h.Manifest.Version}
	out := contract.UpdateOutcome{Image: img, OK: n.failTrial == "", Reason: n.failTrial, At: time.Now()}
	if n.failTrial != "" {
		out.Notes = []string{"app hello: " + n.failTrial}
	}
	n.status.Node.BootID += "+1"
	st := *n.status.OS
	st.Last = &out
	n.status.OS = &st
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(contract.UpdateAccepted{Slot: "b", Image: img, Entry: "nodeboot-b"})
}

// TestFleetUpdateStopsAtTheFirstFailure rolls a real signed OS update
// (from a disk image made by disk.Write) over three nodes whose second
// one fails its trial: the first runs it, the rollout stops at the second
// and says why, the third never hears of it.
func TestFleetUpdateStopsAtTheFirstFailure(t *testing.T) {
	dir, pi := project(t, helloPkg)
	cr, err := creds.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	pi.updateKey = cr.UpdateKey.Public().(ed25519.PublicKey)
	pi.status.Node.BootID = "boot"
	pi.status.OS = &contract.OSStatus{Slots: []contract.SlotStatus{{Name: "a", State: "good", Booted: true}, {Name: "b", State: "empty"}}}
	bad, _ := addTestNode(t, dir, "bad", pi)
	bad.updateKey, bad.failTrial = pi.updateKey, "app hello did not become healthy within 30s"
	zed, _ := addTestNode(t, dir, "zed", pi)
	zed.updateKey = pi.updateKey
	img := testDiskImage(t)

	out, err := nodeboot(t, "fleet", "update", "--image", img, "--nodes", "pi,bad,zed", "--project", dir)
	if err == nil {
		t.Fatalf("a fleet update with a failing node succeeded:\n%s", out)
	}
	for _, want := range []string{"node bad failed", "did not become healthy", "runs its previous image again", "changed: pi", "not touched (they keep what they run): zed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v\n%s", want, err, out)
		}
	}
	for _, c := range []struct {
		name    string
		n       *testNode
		updated bool
	}{{"pi", pi, true}, {"bad", bad, true}, {"zed", zed, false}} {
		got := fmt.Sprint(c.n.changes)
		if strings.Contains(got, "PUT "+contract.PathUpdate) != c.updated {
			t.Errorf("node %s: requests %s, want an OS update sent: %v", c.name, got, c.updated)
		}
	}
	if l := pi.status.OS.Last; l == nil || !l.OK {
		t.Errorf("pi's outcome: %+v", l)
	}
	if zed.status.OS.Last != nil {
		t.Errorf("zed was updated: %+v", zed.status.OS.Last)
	}

	// Without the failing node the rest goes through, two at a time.
	zed.changes = nil
	out, err = nodeboot(t, "fleet", "update", "--image", img, "--nodes", "pi,zed", "--max-unavailable", "2", "--project", dir)
	if err != nil || zed.status.OS.Last == nil || !zed.status.OS.Last.OK {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := nodeboot(t, "fleet", "update", "--image", img, "127.0.0.1:5000/shop:stable", "--project", dir); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Errorf("--image with a REF: %v\n%s", err, out)
	}
}

// testDiskImage is a small real disk image (GPT, ESP, a root slot with a
// squashfs) of a made-up kernel and node, enough for an OS update payload.
func testDiskImage(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	write(t, tmp, map[string]string{"bzImage": strings.Repeat("kernel", 20000), "systemd-bootx64.efi": strings.Repeat("efi", 1000), "node": strings.Repeat("node", 30000)})
	tr := image.NewTree()
	if err := tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFile("/usr/bin/node", filepath.Join(tmp, "node"), 0o755, 120000); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "disk.img")
	if _, err := disk.Write(disk.Options{Path: img, Size: 768 * disk.MiB, Root: tr, Kernel: filepath.Join(tmp, "bzImage"),
		Cmdline: "console=ttyS0 panic=5", SystemdBoot: filepath.Join(tmp, "systemd-bootx64.efi"), Seed: "fleet-update-test", Title: "shop"}); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestUpdateFromRegistry: an OS update published with `push --os` to the
// real registry reaches a node through `update NODE REF` and a fleet
// through `fleet update REF`, verified end to end with the project's key
// (the fake nodes check the whole stream as a node does).
func TestUpdateFromRegistry(t *testing.T) {
	dir, pi := project(t, helloPkg)
	cr, err := creds.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	pi.updateKey = cr.UpdateKey.Public().(ed25519.PublicKey)
	pi.status.Node.BootID = "boot"
	pi.status.OS = &contract.OSStatus{Slots: []contract.SlotStatus{{Name: "a", State: "good", Booted: true}, {Name: "b", State: "empty"}}}
	zed, _ := addTestNode(t, dir, "zed", pi)
	zed.updateKey = pi.updateKey
	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig("", ""))
	ref := reg.Host + "/fleet/shop:stable"
	if out, err := nodeboot(t, "push", dir, ref, "--os", "--image", testDiskImage(t)); err != nil {
		t.Fatalf("push --os: %v\n%s", err, out)
	}
	out, err := nodeboot(t, "update", "pi", ref, "--project", dir)
	if err != nil || pi.status.OS.Last == nil || !pi.status.OS.Last.OK {
		t.Fatalf("update pi %s: %v\n%s", ref, err, out)
	}
	out, err = nodeboot(t, "fleet", "update", ref, "--nodes", "zed", "--project", dir)
	if err != nil || zed.status.OS.Last == nil || zed.status.OS.Last.Image != pi.status.OS.Last.Image {
		t.Fatalf("fleet update %s: %v\n%s", ref, err, out)
	}
}
