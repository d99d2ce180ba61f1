package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggrandom "github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/testregistry"
)

// pushProject is an app with its .nodeboot/ (as a build leaves it).
func pushProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"package.json":                  `{"name":"shop","main":"index.js"}`,
		"index.js":                      helloJS,
		"node_modules/dep/package.json": `{"name":"dep"}`,
		"node_modules/dep/index.js":     strings.Repeat("module.exports = 1;\n", 5000),
	})
	if _, _, err := creds.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPushPromote publishes through the CLI to an oci: directory and to
// the real registry, promotes with waves, then pauses.
func TestPushPromote(t *testing.T) {
	dir := pushProject(t)
	cr, err := creds.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	trusted := []ed25519.PublicKey{cr.UpdateKey.Public().(ed25519.PublicKey)}
	layout := "oci:" + filepath.Join(t.TempDir(), "usb") + ":stable"
	out, err := nodeboot(t, "push", dir, layout)
	if err != nil || !strings.Contains(out, "pushed") || !strings.Contains(out, "deps") {
		t.Fatalf("push to a layout: %v\n%s", err, out)
	}

	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig("", ""))
	ref := reg.Host + "/fleet/shop:canary"
	out, err = nodeboot(t, "push", dir, ref, "--json")
	if err != nil {
		t.Fatalf("push to the registry: %v\n%s", err, out)
	}
	var pr pushResult
	if err := json.Unmarshal([]byte(out), &pr); err != nil || pr.Digest == "" || len(pr.Record.Apps) != 1 {
		t.Fatalf("push --json: %v\n%s", err, out)
	}
	// Run in the project, so promote finds its update key.
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	os.Chdir(dir)
	out, err = nodeboot(t, "promote", ref, "stable", "--wave", "10%@+0", "--wave", "100%@+1h")
	if err != nil || !strings.Contains(out, "10% from") {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	stable, _ := oci.ParseRef(reg.Host+"/fleet/shop:stable", false)
	o := oci.Options{Auth: nil}
	rel, err := oci.Open(stable, o).Release(context.Background(), "", trusted)
	if err != nil {
		t.Fatal(err)
	}
	if ro := rel.Record.Rollout; ro == nil || len(ro.Waves) != 2 || ro.Waves[1].NotBefore.Sub(ro.Waves[0].NotBefore) != time.Hour {
		t.Fatalf("promoted rollout: %+v", rel.Record.Rollout)
	}
	if out, err = nodeboot(t, "promote", reg.Host+"/fleet/shop:stable", "stable", "--pause"); err != nil || !strings.Contains(out, "paused") {
		t.Fatalf("promote --pause: %v\n%s", err, out)
	}
}

// TestPushBadInput: what a user can get wrong, and what they are told.
func TestPushBadInput(t *testing.T) {
	dir := pushProject(t)
	noKey := t.TempDir()
	write(t, noKey, map[string]string{"package.json": `{"name":"shop","main":"index.js"}`, "index.js": helloJS})
	layout := "oci:" + t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"push", dir, "shop:stable"}, "name the registry"},
		{[]string{"push", dir, "oci:"}, "needs a directory"},
		{[]string{"push", dir, layout, "--wave", "10%"}, "SHARE@WHEN"},
		{[]string{"push", dir, layout, "--wave", "10%@+0"}, "must be 1"},
		{[]string{"push", dir, layout, "--wave", "ten@+0"}, "not a number"},
		{[]string{"push", dir, layout, "--image", "x.img"}, "--image goes with --os"},
		{[]string{"push", noKey, layout}, "nodeboot build"},
		{[]string{"push", dir, "registry.nodeboot-test.invalid/fleet/shop:stable"}, "cannot reach the registry"},
		{[]string{"promote", layout + ":nope", "stable", "--project", dir}, "not an OCI image layout"},
		{[]string{"promote", layout, "stable", "--pause", "--resume", "--project", dir}, "choose one"},
	} {
		out, err := nodeboot(t, c.args...)
		if err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("nodeboot %s: %v\n%s\nwant an error saying %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
}

func TestIsReleaseRef(t *testing.T) {
	dir := t.TempDir()
	for arg, want := range map[string]bool{
		"oci:/media/usb":               true,
		"registry.example.com/shop:v1": true,
		"localhost:5000/shop:v1":       true,
		"127.0.0.1:5000/shop":          true,
		dir:                            false,
		"./app":                        false,
		"app":                          false,
		"../x.y/app":                   false,
	} {
		if got := isReleaseRef(arg); got != want {
			t.Errorf("isReleaseRef(%q) = %v, want %v", arg, got, want)
		}
	}
}

// TestPushOS publishes the OS update of a real disk image with the app
// and reads both back from the oci: directory.
func TestPushOS(t *testing.T) {
	dir := pushProject(t)
	tmp := t.TempDir()
	kp, efi := filepath.Join(tmp, "bzImage"), filepath.Join(tmp, "systemd-bootx64.efi")
	write(t, tmp, map[string]string{"bzImage": strings.Repeat("kernel", 200000), "systemd-bootx64.efi": strings.Repeat("efi", 1000), "node": strings.Repeat("node", 300000)})
	tr := image.NewTree()
	if err := tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFile("/usr/bin/node", filepath.Join(tmp, "node"), 0o755, 1200000); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "disk.img")
	if _, err := disk.Write(disk.Options{Path: img, Size: 768 * disk.MiB, Root: tr, Kernel: kp,
		Cmdline: "console=ttyS0 panic=5", SystemdBoot: efi, Seed: "push-test", Title: "shop"}); err != nil {
		t.Fatal(err)
	}
	layout := "oci:" + filepath.Join(t.TempDir(), "usb")
	if out, err := nodeboot(t, "push", dir, layout, "--os", "--image", img); err != nil || !strings.Contains(out, "OS update") {
		t.Fatalf("push --os: %v\n%s", err, out)
	}
	cr, _ := creds.Load(dir)
	ref, _ := oci.ParseRef(layout, false)
	rel, err := oci.Open(ref, oci.Options{}).Release(context.Background(), "", []ed25519.PublicKey{cr.UpdateKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rel.FetchOS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := ospayload.Verify(r, []ed25519.PublicKey{cr.UpdateKey.Public().(ed25519.PublicKey)}); err != nil {
		t.Fatalf("the OS update read back from the directory: %v", err)
	}
	if len(rel.Record.Apps) != 1 || rel.Record.OS == nil || rel.Record.OS.Kernel.Size != 1200000 {
		t.Fatalf("record: %d apps, OS %+v", len(rel.Record.Apps), rel.Record.OS)
	}
}

// TestReleaseBadInput: `deploy NODE REF` and `update NODE REF` with a REF
// that cannot be used (a bad one, an unknown registry, wrong credentials, a
// plain container image under the tag) end in an error that says what is
// wrong, and nothing reaches the node.
func TestReleaseBadInput(t *testing.T) {
	dir, n := project(t, `{"name":"shop","main":"app.js"}`)
	n.status.Apps[0].Name = "shop"
	n.status.OS = &contract.OSStatus{Slots: []contract.SlotStatus{{Name: "a", State: "good", Booted: true}, {Name: "b", State: "empty"}}}
	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	// A plain container image where a release is expected.
	img, err := ggrandom.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	imgRef, _ := name.ParseReference(reg.Host + "/fleet/web:stable")
	if err := remote.Write(imgRef, img, remote.WithAuth(&authn.Basic{Username: reg.User, Password: reg.Password})); err != nil {
		t.Fatal(err)
	}
	good := reg.DockerConfig("", "")
	wrong := reg.DockerConfig(reg.User, "wrong")
	// A release of the apps alone, which `update` cannot use.
	t.Setenv("DOCKER_CONFIG", good)
	if out, err := nodeboot(t, "push", dir, reg.Host+"/fleet/shop:apps"); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	n.mu.Lock()
	n.changes = nil
	n.mu.Unlock()
	for _, verb := range []string{"deploy", "update"} {
		for _, c := range []struct {
			what, ref, dockerConfig string
			want                    []string
		}{
			{"bad REF", reg.Host + "/fleet/shop:-x", good, []string{"bad reference", `tag "-x"`}},
			{"unknown registry", "registry.nodeboot-test.invalid/fleet/shop:stable", good, []string{"cannot reach the registry", "registry.nodeboot-test.invalid"}},
			{"wrong credentials", reg.Host + "/fleet/web:stable", wrong, []string{"refused the credentials", "docker login " + reg.Host}},
			{"no credentials", reg.Host + "/fleet/web:stable", t.TempDir(), []string{"refused the credentials", "docker login " + reg.Host}},
			{"container image", reg.Host + "/fleet/web:stable", good, []string{"container image", "nodeboot push"}},
			{"a release without an OS update", reg.Host + "/fleet/shop:apps", good, []string{"no OS update", "push --os"}},
		} {
			if verb == "deploy" && c.what == "a release without an OS update" {
				continue
			}
			t.Setenv("DOCKER_CONFIG", c.dockerConfig)
			out, err := nodeboot(t, verb, "pi", c.ref, "--project", dir)
			if err == nil {
				t.Errorf("%s %s: no error\n%s", verb, c.what, out)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s with %s: %v\nwant it to say %q", verb, c.what, err, w)
				}
			}
			n.mu.Lock()
			if len(n.changes) > 0 {
				t.Errorf("%s with %s reached the node: %v", verb, c.what, n.changes)
			}
			n.mu.Unlock()
		}
	}
}

// TestPushOSArm64 publishes the OS update of an arm64 disk image to the
// real registry with `push --os --arch arm64` and reads it back: the
// signed payload says arm64, so an amd64 node refuses it and an arm64 one
// takes it.
func TestPushOSArm64(t *testing.T) {
	dir := pushProject(t)
	tmp := t.TempDir()
	kernel := make([]byte, 300000)
	binary.LittleEndian.PutUint32(kernel[0x38:], 0x644d5241) // an arm64 Image's magic
	write(t, tmp, map[string]string{"Image": string(kernel), "systemd-bootaa64.efi": strings.Repeat("efi", 1000)})
	tr := image.NewTree()
	if err := tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "disk.img")
	if _, err := disk.Write(disk.Options{Path: img, Size: 768 * disk.MiB, Root: tr, Kernel: filepath.Join(tmp, "Image"), Arch: "arm64",
		Cmdline: "console=ttyAMA0 panic=5", SystemdBoot: filepath.Join(tmp, "systemd-bootaa64.efi"), Seed: "push-arm64", Title: "shop"}); err != nil {
		t.Fatal(err)
	}
	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig("", ""))
	ref := reg.Host + "/fleet/shop:arm"
	if out, err := nodeboot(t, "push", dir, ref, "--os", "--arch", "arm64", "--image", img); err != nil || !strings.Contains(out, "OS update") {
		t.Fatalf("push --os --arch arm64: %v\n%s", err, out)
	}
	cr, _ := creds.Load(dir)
	key := cr.UpdateKey.Public().(ed25519.PublicKey)
	r, _ := oci.ParseRef(ref, false)
	rel, err := oci.Open(r, oci.Options{CacheDir: t.TempDir()}).Release(context.Background(), "", []ed25519.PublicKey{key})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rel.FetchOS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := p.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h, err := ospayload.Verify(rc, []ed25519.PublicKey{key})
	if err != nil {
		t.Fatalf("the OS update read back from the registry: %v", err)
	}
	if m := h.Manifest; m.Arch != "arm64" || m.Target != "uefi" || !strings.Contains(m.Cmdline, "console=ttyAMA0") || m.Kernel.Size != int64(len(kernel)) {
		t.Errorf("manifest: arch %s target %s cmdline %q kernel %d bytes", m.Arch, m.Target, m.Cmdline, m.Kernel.Size)
	}

	// Without --arch the update is the image's arch, not the host's; an
	// --arch the image's kernel contradicts is refused before any push.
	ref2 := reg.Host + "/fleet/shop:arm-noflag"
	if out, err := nodeboot(t, "push", dir, ref2, "--os", "--image", img); err != nil {
		t.Fatalf("push --os of an arm64 image without --arch: %v\n%s", err, out)
	}
	r2, _ := oci.ParseRef(ref2, false)
	rel2, err := oci.Open(r2, oci.Options{CacheDir: t.TempDir()}).Release(context.Background(), "", []ed25519.PublicKey{key})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := rel2.FetchOS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rc2, err := p2.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()
	if h2, err := ospayload.Verify(rc2, []ed25519.PublicKey{key}); err != nil || h2.Manifest.Arch != "arm64" {
		t.Errorf("push --os without --arch of an arm64 image: %v, arch %v", err, h2)
	}
	out, err := nodeboot(t, "push", dir, reg.Host+"/fleet/shop:wrong", "--os", "--arch", "amd64", "--image", img)
	if err == nil || !strings.Contains(err.Error()+out, "holds an arm64 kernel, not amd64") {
		t.Errorf("push --os --arch amd64 of an arm64 image: %v\n%s", err, out)
	}
}
