package build

import (
	"fmt"
	"strings"

	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/shell"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// shellFor returns the build host's busybox-static when an app has
// "shell": true, nil otherwise: an image without such an app carries no
// shell at all.
func shellFor(proj *spec.Project, arch string, logf func(string, ...any)) (*shell.Box, error) {
	var apps []string
	for _, a := range proj.Apps {
		if a.Shell {
			apps = append(apps, a.Name)
		}
	}
	if len(apps) == 0 {
		return nil, nil
	}
	box, err := shell.Find(arch)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", apps[0], err)
	}
	logf("shell for %s: %s %s (%d utilities)", strings.Join(apps, ", "), shell.Package, box.Version, len(box.Applets))
	return box, nil
}

// addShell puts the preload every image carries (internal/shell) and, with
// box, busybox and its applets into the tree: /usr/bin/<applet> links to
// it, and /bin links to usr/bin as on Debian, so that /bin/sh exists. An
// applet never replaces a file of the image (node).
func addShell(t *image.Tree, box *shell.Box) error {
	if err := t.AddData(shell.Preload, shell.PreloadJS, 0o644); err != nil {
		return err
	}
	if box == nil {
		return nil
	}
	if err := t.AddFile(shell.Busybox, box.Path, 0o755, fileSize(box.Path)); err != nil {
		return fmt.Errorf("adding busybox: %w", err)
	}
	for _, a := range box.Applets {
		if _, ok := t.Get(a); ok {
			continue
		}
		if err := t.AddSymlink(a, shell.LinkTarget); err != nil {
			return fmt.Errorf("adding the shell's %s: %w", a, err)
		}
	}
	if _, ok := t.Get("/bin"); !ok {
		if err := t.AddSymlink("/bin", "usr/bin"); err != nil {
			return err
		}
	}
	return nil
}
