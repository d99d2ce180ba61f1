package cli

import (
	"fmt"
	"io"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// explainApps prints, for `nodeboot build --explain`, what each app of the
// project may do on the node: its user, paths, namespaces, syscalls and
// limits, as the sandbox will enforce them. Nothing is built.
func explainApps(w io.Writer, appDir, configPath string) error {
	p, err := spec.Load(appDir, configPath)
	if err != nil {
		return err
	}
	rt := p.Runtime("/usr/bin/node")
	for i, a := range rt.Apps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "app %s: node %s in %s, port %d\n", a.Name, a.Entry, a.Dir, a.Port)
		sb := a.SandboxSpec()
		if sb == nil {
			fmt.Fprintf(w, "  sandbox off (\"sandbox\": {\"enabled\": false}): runs as uid %d gid %d in its own process group, with the node's view of files, processes and network, and no limits\n", a.UID, a.GID)
			continue
		}
		if _, err := io.WriteString(w, sb.Explain()); err != nil {
			return err
		}
		if a.Shell {
			fmt.Fprintf(w, "  shell:      /bin/sh and busybox's utilities in /usr/bin (\"shell\": true): exec, execSync and spawn with shell: true work; what it runs keeps the app's uid, sandbox and limits, and can run any file it can read, not only node\n")
		} else {
			fmt.Fprintf(w, "  shell:      none: exec, execSync and spawn with shell: true fail with ENOENT (the app's log says why once); \"shell\": true gives it busybox\n")
		}
	}
	return nil
}
