package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The peer is what users pick today to run a Node service on a VM: a
// Debian stable minbase with systemd, node installed beside it, the app as a
// systemd service, networking by systemd-networkd with DHCP (what Debian's
// documentation and a user's first unit file would do; QEMU's user network
// hands out 10.0.2.15). It boots the same kernel as the others (-kernel,
// root=/dev/vda on a virtio disk, no initramfs: the kernel has virtio and
// ext4 built in).
const (
	peerSuite = "stable"
	// peerInclude: minbase has no init system, and without udev systemd
	// never sees /dev/vda or the NIC as ready (networkd waits for udev).
	peerInclude = "systemd,systemd-sysv,udev"
	// peerVersion changes when the image recipe below changes, so the cached
	// image is rebuilt.
	peerVersion = "1"
)

// Files the peer image gets on top of the debootstrapped root.
const (
	peerUnit = `[Unit]
Description=hello, the benchmark's Node app
After=network.target

[Service]
User=hello
ExecStart=/usr/local/bin/node /opt/hello/server.js
Environment=PORT=8080 NODE_ENV=production
Restart=on-failure

[Install]
WantedBy=multi-user.target
`
	peerNetwork = `[Match]
Name=en* eth*

[Network]
DHCP=ipv4
`
	peerFstab = "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"
)

// preparePeer debootstraps the root once (cached), and builds the ext4
// image with node and the app (cached per node binary and app).
func (s *System) preparePeer(ctx context.Context, e *env) error {
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the Debian peer needs %s: apt-get install debootstrap e2fsprogs (or leave debian out of -systems)", tool)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("the Debian peer is built with debootstrap and chroot, which need root: run the benchmark as root, or leave debian out of -systems")
	}
	if err := os.MkdirAll(e.cacheDir, 0o755); err != nil {
		return err
	}
	root, err := peerRoot(ctx, e.cacheDir)
	if err != nil {
		return err
	}
	key, err := peerKey(e.node.SHA256, e.appDir)
	if err != nil {
		return err
	}
	img := filepath.Join(e.cacheDir, "debian-"+key[:16]+".ext4")
	if _, err := os.Stat(img); err != nil {
		fmt.Fprintf(os.Stderr, "  building the Debian image %s\n", img)
		if err := buildPeerImage(ctx, root, img, e); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(os.Stderr, "  Debian image cached: %s\n", img)
	}
	s.Kernel = e.kernel
	s.RootDisk = img
	// The same console and panic settings as the others; the root as a
	// distribution's boot loader would pass it.
	s.Cmdline = "console=ttyS0,115200 panic=10 oops=panic root=/dev/vda rw"
	if b, err := os.ReadFile(filepath.Join(root, "etc", "debian_version")); err == nil {
		s.Notes = append(s.Notes, "Debian "+strings.TrimSpace(string(b)))
	}
	s.Size, err = measureSize(s.Kernel, img)
	return err
}

// peerRoot returns the debootstrapped root in the cache, creating it when
// missing. It is complete only once the stamp file exists.
func peerRoot(ctx context.Context, cacheDir string) (string, error) {
	sum := sha256.Sum256([]byte(peerSuite + " " + peerInclude))
	root := filepath.Join(cacheDir, "debian-"+peerSuite+"-minbase-"+hex.EncodeToString(sum[:4]))
	stamp := root + ".complete"
	if _, err := os.Stat(stamp); err == nil {
		return root, nil
	}
	mirror, err := debianMirror()
	if err != nil {
		return "", err
	}
	os.RemoveAll(root)
	fmt.Fprintf(os.Stderr, "  debootstrap --variant=minbase --include=%s %s %s %s (a few minutes)\n", peerInclude, peerSuite, root, mirror)
	cmd := exec.CommandContext(ctx, "nice", "debootstrap", "--variant=minbase", "--include="+peerInclude, peerSuite, root, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debootstrap %s from %s: %w\n%s", peerSuite, mirror, err, tailLines(string(out), 20))
	}
	// Downloaded packages are not part of a system a user runs.
	os.RemoveAll(filepath.Join(root, "var", "cache", "apt", "archives"))
	if err := os.WriteFile(stamp, []byte(mirror+"\n"), 0o644); err != nil {
		return "", err
	}
	return root, nil
}

// peerKey identifies the peer image's inputs.
func peerKey(nodeSHA, appDir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n%s\n%s\n", peerVersion, nodeSHA, peerUnit, peerNetwork, peerFstab, peerSuite, peerInclude)
	for _, f := range []string{"server.js", "package.json"} {
		b, err := os.ReadFile(filepath.Join(appDir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildPeerImage copies the root, installs node, the app and their
// configuration the way a user would (useradd, systemctl enable), and makes
// the ext4 image with mkfs.ext4 -d.
func buildPeerImage(ctx context.Context, root, img string, e *env) error {
	stage, err := os.MkdirTemp(e.tmp, "debian-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	steps := [][]string{
		{"cp", "-a", root + "/.", stage},
		{"install", "-m", "0755", e.node.Path, filepath.Join(stage, "usr/local/bin/node")},
		{"mkdir", "-p", filepath.Join(stage, "opt/hello")},
		{"cp", filepath.Join(e.appDir, "server.js"), filepath.Join(e.appDir, "package.json"), filepath.Join(stage, "opt/hello")},
	}
	for _, st := range steps {
		if out, err := exec.CommandContext(ctx, st[0], st[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(st, " "), err, out)
		}
	}
	for p, data := range map[string]string{
		"etc/systemd/system/hello.service":     peerUnit,
		"etc/systemd/network/20-wired.network": peerNetwork,
		"etc/fstab":                            peerFstab,
		"etc/hostname":                         "debian\n",
	} {
		if err := os.WriteFile(filepath.Join(stage, p), []byte(data), 0o644); err != nil {
			return err
		}
	}
	for _, st := range [][]string{
		{"useradd", "--system", "--no-create-home", "hello"},
		{"systemctl", "enable", "systemd-networkd", "hello"},
		// Proves node runs against Debian's own libraries.
		{"/usr/local/bin/node", "-e", "process.exit(0)"},
	} {
		args := append([]string{stage}, st...)
		if out, err := exec.CommandContext(ctx, "chroot", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("chroot %s: %w: %s", strings.Join(st, " "), err, out)
		}
	}
	used, err := dirBytes(stage)
	if err != nil {
		return err
	}
	// Room to run: a quarter more than the files and 64 MiB, as a user
	// sizing a VM disk would leave.
	mib := (used*5/4)>>20 + 64
	tmpImg := img + ".tmp"
	os.Remove(tmpImg)
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", stage, tmpImg, fmt.Sprintf("%dM", mib))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmpImg)
		return fmt.Errorf("mkfs.ext4 -d: %w: %s", err, out)
	}
	return os.Rename(tmpImg, img)
}

// dirBytes sums the sizes of the regular files below dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// aptSources are where apt's configuration lists the host's mirrors.
var aptSources = []string{"/etc/apt/sources.list", "/etc/apt/sources.list.d"}

// debianMirror reads the host's Debian mirror from its apt sources, so the
// harness uses whatever mirror (or proxy) the host is set up with.
func debianMirror() (string, error) {
	var files []string
	for _, p := range aptSources {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".list") || strings.HasSuffix(e.Name(), ".sources") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var m string
		if strings.HasSuffix(f, ".sources") {
			m = mirrorFromDeb822(string(b))
		} else {
			m = mirrorFromList(string(b))
		}
		if m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("no Debian mirror in %s: add a `deb <mirror> <suite> main` line for the Debian archive", strings.Join(aptSources, ", "))
}

// isDebianArchive tells whether a source is the main Debian archive for
// suite: not the security archive, not updates or backports, not a third
// party's repository (whose suite names are not Debian's).
func isDebianArchive(uri, suite string) bool {
	if !strings.HasPrefix(uri, "http://") && !strings.HasPrefix(uri, "https://") {
		return false
	}
	if strings.Contains(uri, "security") || strings.Contains(suite, "-") {
		return false
	}
	for _, s := range []string{"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "stable", "oldstable", "testing", "unstable", "sid"} {
		if suite == s {
			return true
		}
	}
	return false
}

// mirrorFromList reads one-line-style sources ("deb [opts] URI SUITE COMP...").
func mirrorFromList(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options run to the field that ends with "]".
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) >= 2 && isDebianArchive(f[0], f[1]) {
			return strings.TrimSuffix(f[0], "/")
		}
	}
	return ""
}

// mirrorFromDeb822 reads deb822-style sources (stanzas of "Key: value").
func mirrorFromDeb822(s string) string {
	for _, stanza := range strings.Split(strings.ReplaceAll(s, "\r", ""), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") {
				continue
			}
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		if types := strings.Fields(fields["types"]); !contains(types, "deb") {
			continue
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			for _, suite := range strings.Fields(fields["suites"]) {
				if isDebianArchive(uri, suite) {
					return strings.TrimSuffix(uri, "/")
				}
			}
		}
	}
	return ""
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// goBuildStatic compiles pkg of nodeboot's source tree as a static linux
// binary for the guest.
func goBuildStatic(ctx context.Context, src, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return nil
}

// timeZero is the mtime of the floor's files (reproducible, like nodeboot's).
var timeZero = time.Unix(0, 0)

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
