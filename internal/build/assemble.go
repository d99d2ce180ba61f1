package build

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/js"
)

// assemble lays out the root tree:
//
//	/init                    PID 1
//	/usr/bin/node            node, plus its libraries at their loader paths
//	/etc/...                 generated: passwd, group, hosts, nsswitch.conf, ...
//	/apps/<name>/...         each app's code
//	/node_modules/nodeboot   the nodeboot JS module (js/nodeboot)
//	/dev /proc /sys /run /tmp /data   mount points
func assemble(t *image.Tree, proj *spec.Project, rt *spec.Runtime, node *noderuntime.Runtime, closure *elfdeps.Closure, initPath string) error {
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/data", "/usr/bin", "/apps"} {
		if err := t.AddDir(d, 0o755, 0, 0); err != nil {
			return err
		}
	}
	if err := t.AddDir("/tmp", 0o1777, 0, 0); err != nil {
		return err
	}
	if err := t.AddFile("/init", initPath, 0o755, fileSize(initPath)); err != nil {
		return err
	}
	if err := t.AddFile(NodePath, node.Path, 0o755, fileSize(node.Path)); err != nil {
		return err
	}
	for _, f := range closure.Files {
		if err := t.AddFile(f.Target, f.Path, 0o755, fileSize(f.Path)); err != nil {
			return fmt.Errorf("adding library %s: %w", f.Target, err)
		}
	}
	for name, data := range etcFiles(rt) {
		if err := t.AddData(name, []byte(data), 0o644); err != nil {
			return err
		}
	}
	// require('nodeboot') and import 'nodeboot' from any app without
	// installing it: node's resolution (CommonJS and ESM alike) walks up
	// from the app's dir to /node_modules.
	if err := addJSModule(t); err != nil {
		return err
	}
	// resolv.conf is written at run time (DHCP) to the writable /run.
	if err := t.AddSymlink("/etc/resolv.conf", "../run/resolv.conf"); err != nil {
		return err
	}
	for _, a := range proj.Apps {
		root := "/apps/" + a.Name
		if err := t.AddDir(root, 0o755, 0, 0); err != nil {
			return err
		}
		for _, f := range a.Files {
			p := path.Join(root, f.Rel)
			src := filepath.Join(a.SrcDir, filepath.FromSlash(f.Rel))
			var err error
			switch {
			case f.Mode.IsDir():
				err = t.AddDir(p, 0o755, 0, 0)
			case f.Mode&fs.ModeSymlink != 0:
				err = t.AddSymlink(p, f.Link)
			case f.Mode.IsRegular():
				// Code is read-only for the app; keep only the executable bit.
				mode := fs.FileMode(0o644)
				if f.Mode&0o111 != 0 {
					mode = 0o755
				}
				err = t.AddFile(p, src, mode, f.Size)
			default:
				// Sockets, fifos and devices in an app dir cannot be part of
				// an image; spec already refuses them, this is a backstop.
				err = fmt.Errorf("%s: unsupported file type %v", src, f.Mode.Type())
			}
			if err != nil {
				return fmt.Errorf("adding app %s: %w", a.Name, err)
			}
		}
		// Mount points for the persistent dirs: the root is read-only
		// at run time, so they must exist in the image.
		for _, p := range a.Persist {
			full := path.Join(root, p)
			if e, ok := t.Get(full); ok && e.Kind != image.KindDir {
				return fmt.Errorf("app %s: persist %q is a file in the app, not a directory", a.Name, p)
			}
			if err := t.AddDir(full, 0o755, 0, 0); err != nil {
				return fmt.Errorf("app %s: persist %q: %w", a.Name, p, err)
			}
		}
	}
	return nil
}

func fileSize(p string) int64 {
	if st, err := os.Stat(p); err == nil {
		return st.Size()
	}
	return 0
}

// etcFiles renders the generated /etc. Users: root, and one unprivileged
// user per app, named after it, whose home is its data dir.
func etcFiles(rt *spec.Runtime) map[string]string {
	var passwd, group strings.Builder
	passwd.WriteString("root:x:0:0:root:/root:/nonexistent\n")
	group.WriteString("root:x:0:\ntty:x:5:\n")
	apps := append([]spec.RuntimeApp(nil), rt.Apps...)
	sort.Slice(apps, func(i, j int) bool { return apps[i].UID < apps[j].UID })
	seen := map[int]bool{}
	for _, a := range apps {
		if seen[a.UID] {
			continue
		}
		seen[a.UID] = true
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:/nonexistent\n", a.Name, a.UID, a.GID, a.Name, a.DataDir)
		fmt.Fprintf(&group, "%s:x:%d:\n", a.Name, a.GID)
	}
	passwd.WriteString("nobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n")
	group.WriteString("nogroup:x:65534:\n")
	return map[string]string{
		"/etc/passwd": passwd.String(),
		"/etc/group":  group.String(),
		"/etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"127.0.1.1\t" + rt.Hostname + "\n",
		"/etc/hostname":      rt.Hostname + "\n",
		"/etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
		"/etc/os-release":    "NAME=nodeboot\nID=nodeboot\nPRETTY_NAME=\"nodeboot (" + rt.Hostname + ")\"\nHOME_URL=\"https://github.com/nodeboot/nodeboot\"\n",
	}
}

// JSModuleDir is where the image keeps the nodeboot JS module.
const JSModuleDir = "/node_modules/nodeboot"

func addJSModule(t *image.Tree) error {
	ents, err := fs.ReadDir(js.Module, "nodeboot")
	if err != nil {
		return fmt.Errorf("the nodeboot JS module: %w", err)
	}
	for _, e := range ents {
		b, err := js.Module.ReadFile("nodeboot/" + e.Name())
		if err != nil {
			return fmt.Errorf("the nodeboot JS module: %w", err)
		}
		if err := t.AddData(JSModuleDir+"/"+e.Name(), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
