package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/testregistry"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestDeployFromRelease boots a disk image once and deploys to it from
// releases, as an owner without a direct path from the source would: from
// an oci: directory (a USB stick), from the real registry, and refuses a
// release signed by another project's key, leaving the node as it was;
// last, `update NODE REF` sends it an OS update from the registry, which
// the node verifies and arms.
func TestDeployFromRelease(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "versioned"), proj)
	img := filepath.Join(t.TempDir(), "versioned.img")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	var log strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig("", ""))
	m := bootManaged(t, ctx, img)
	if got := m.serving(t); got != "v1" {
		t.Fatalf("the image's version answers %q, want v1", got)
	}

	usb := filepath.Join(t.TempDir(), "usb", "fleet")
	setVersion(t, proj, "v2")
	if out, err := runCLI(ctx, "push", proj, "oci:"+usb+":stable"); err != nil {
		t.Fatalf("push to the stick: %v\n%s", err, out)
	}
	setVersion(t, proj, "v9") // what is on disk now must not matter
	out, err := nodeboot(ctx, proj, "deploy", m.node(), "oci:"+usb+":stable")
	if err != nil {
		t.Fatalf("deploy from oci:: %v\n%s", err, out)
	}
	if got := m.serving(t); got != "v2" {
		t.Fatalf("after the deploy from the stick the app answers %q, want v2\n%s", got, out)
	}

	setVersion(t, proj, "v3")
	ref := reg.Host + "/fleet/versioned:stable"
	if out, err := runCLI(ctx, "push", proj, ref); err != nil {
		t.Fatalf("push to the registry: %v\n%s", err, out)
	}
	if out, err := nodeboot(ctx, proj, "deploy", m.node(), ref); err != nil {
		t.Fatalf("deploy from the registry: %v\n%s", err, out)
	}
	if got := m.serving(t); got != "v3" {
		t.Fatalf("after the deploy from the registry the app answers %q, want v3", got)
	}

	// Another project's release (its own update key) on the same stick:
	// refused before anything reaches the node.
	other := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "versioned"), other)
	if _, _, err := creds.Ensure(other); err != nil {
		t.Fatal(err)
	}
	setVersion(t, other, "v666")
	if out, err := runCLI(ctx, "push", other, "oci:"+usb+":evil"); err != nil {
		t.Fatalf("push of the other project: %v\n%s", err, out)
	}
	out, err = nodeboot(ctx, proj, "deploy", m.node(), "oci:"+usb+":evil")
	if err == nil || !strings.Contains(out+err.Error(), "not signed by a key") {
		t.Fatalf("a release of another project's key was deployed or refused unclearly: %v\n%s", err, out)
	}
	if got := m.serving(t); got != "v3" {
		t.Fatalf("after the refused release the app answers %q, want v3", got)
	}

	// The OS update of a release: `update NODE REF` pulls it from the
	// registry, checks it, and the node verifies and arms it. The trial
	// and commit after that are TestUpdate's (a trial boot under TCG
	// costs minutes this test does not need to spend again). It is the
	// image the node runs (no second build): the node refuses that
	// without --allow-downgrade, which says the stream reached it.
	osRef := reg.Host + "/fleet/versioned:os"
	if out, err := runCLI(ctx, "push", proj, osRef, "--os", "--image", img); err != nil {
		t.Fatalf("push --os: %v\n%s", err, out)
	}
	out, err = nodeboot(ctx, proj, "update", m.node(), osRef, "--no-wait")
	if err == nil || !strings.Contains(err.Error(), "not newer than the running image") {
		t.Fatalf("the running image again, from the registry: %v\n%s", err, out)
	}
	out, err = nodeboot(ctx, proj, "update", m.node(), osRef, "--no-wait", "--allow-downgrade")
	if err != nil || !strings.Contains(out, "accepted image") || !strings.Contains(out, "into slot B") {
		t.Fatalf("update from the registry: %v\n%s", err, out)
	}
}

// runCLI runs the CLI in-process with these exact arguments.
func runCLI(ctx context.Context, args ...string) (string, error) {
	var out strings.Builder
	err := cli.Run(ctx, args, &out, &out)
	return out.String(), err
}
