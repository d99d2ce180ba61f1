// Package spec reads a Node.js app project (package.json, the optional
// nodeboot.json and the app's files), validates it, and resolves it into the
// Runtime that PID 1 boots with.
package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nodeboot/nodeboot/internal/sandbox"
	"github.com/nodeboot/nodeboot/internal/shell"
)

// Where apps live in the image, and who they run as.
const (
	AppsDir     = "/apps"       // app i's code is AppsDir/<name>
	DataRoot    = "/data/state" // app i's writable state is DataRoot/<name>
	FirstUID    = 1000          // app i runs as uid = gid = FirstUID+i
	DefaultPort = 8080          // the first app without "port"; then 8081, ...
)

// Project is an app directory with its config, validated.
type Project struct {
	Dir        string // the app directory, absolute
	ConfigPath string // the nodeboot.json used, absolute; "" if none
	Config     Config // as written; zero without nodeboot.json
	Hostname   string // resolved: Config.Hostname or the sanitized package name
	Apps       []App  // in config order; one when Config.Apps is empty
}

// App is one service of the node, resolved.
type App struct {
	Name     string // unique, valid as user name and host name label
	SrcDir   string // absolute directory on the build machine
	Entry    string // entry file relative to SrcDir, forward slashes
	NodeArgs []string
	Args     []string
	// Persist are cleaned dirs relative to SrcDir, bind-mounted from the
	// app's state at boot (see AppConfig.Persist).
	Persist []string
	// HealthPath, Health, MaxLockSeconds: see AppConfig.
	HealthPath     string
	Health         string
	MaxLockSeconds int
	// Limits and Sandbox: see AppConfig.
	Limits  sandbox.Limits
	Sandbox SandboxConfig
	// Shell: see AppConfig.Shell.
	Shell   bool
	Env     map[string]string // the app's own env from nodeboot.json
	Port    int
	Engines string // package.json engines.node, for checking the node version
	Package Package
	Files   []File   // what goes into the image, sorted
	Addons  []string // native addons (*.node) among Files
}

// Load reads the project in appDir. configPath names a nodeboot.json to use
// instead of appDir/nodeboot.json (which is optional); app paths in a config
// are relative to the config's directory. appDir may be "" when configPath is
// given: the config's directory is used.
func Load(appDir, configPath string) (*Project, error) {
	if appDir == "" {
		appDir = "."
		if configPath != "" {
			appDir = filepath.Dir(configPath)
		}
	}
	dir, err := appDirectory(appDir)
	if err != nil {
		return nil, err
	}
	p := &Project{Dir: dir}

	cfgFile := configPath
	if cfgFile == "" {
		cand := filepath.Join(appDir, ConfigFile)
		if _, err := os.Stat(cand); err == nil {
			cfgFile = cand
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("looking for %s: %w", ConfigFile, err)
		}
	}
	configDir := dir
	if cfgFile != "" {
		cfg, err := ReadConfig(cfgFile)
		if err != nil {
			return nil, err
		}
		p.Config = *cfg
		if p.ConfigPath, err = filepath.Abs(cfgFile); err != nil {
			return nil, err
		}
		configDir = filepath.Dir(p.ConfigPath)
	}

	// Without "apps" the app directory is the one app, and its problems are
	// reported without a config location.
	single := len(p.Config.Apps) == 0
	specs := p.Config.Apps
	if single {
		specs = []AppConfig{{Path: dir}}
	}
	where := func(i int) string {
		return fmt.Sprintf("%s: apps[%d]", cfgFile, i)
	}
	for i, ac := range specs {
		src := ac.Path
		if !filepath.IsAbs(src) {
			src = filepath.Join(configDir, src)
		}
		app, err := loadApp(src, ac)
		if err == nil {
			err = CheckInspector(app, p.Config.Env, ac.AllowRemoteInspector)
		}
		if err != nil {
			if single {
				return nil, err
			}
			return nil, fmt.Errorf("%s (%q): %w", where(i), ac.Path, err)
		}
		p.Apps = append(p.Apps, *app)
	}

	// Names: defaults come from package.json, so they are checked only now.
	// Explicit names were checked (format, uniqueness) with the config.
	seen := map[string]int{}
	for i, a := range p.Apps {
		if err := checkAppName(a.Name); err != nil {
			msg := fmt.Sprintf("package.json \"name\" %q gives the app name %q, which is not usable: %v", a.Package.Name, a.Name, err)
			if single {
				return nil, fmt.Errorf("%s: %s; set \"name\" in %s: {\"apps\": [{\"path\": \".\", \"name\": \"myapp\"}]}", a.SrcDir, msg, ConfigFile)
			}
			return nil, fmt.Errorf("%s: %s; set \"name\" for it", where(i), msg)
		}
		if j, dup := seen[a.Name]; dup {
			return nil, fmt.Errorf("%s and apps[%d] are both named %q (a missing \"name\" defaults to the package.json name); give them distinct \"name\"s", where(i), j, a.Name)
		}
		seen[a.Name] = i
	}

	// Ports: explicit ones are unique (checked with the config); the others
	// get the lowest free ports from DefaultPort up, in app order.
	used := map[int]bool{}
	for _, a := range p.Apps {
		used[a.Port] = true
	}
	next := DefaultPort
	for i := range p.Apps {
		if p.Apps[i].Port != 0 {
			continue
		}
		for used[next] {
			next++
		}
		p.Apps[i].Port = next
		used[next] = true
	}

	p.Hostname = p.Config.Hostname
	if p.Hostname == "" {
		p.Hostname = p.Apps[0].Name
		if !single {
			// A multi-app project usually has a root package.json naming
			// the whole (a workspace); that name suits the node better
			// than the first app's.
			if pkg, _, err := readPackage(configDir); err == nil && pkg.Name != "" {
				p.Hostname = SanitizeName(pkg.Name)
			}
		}
	}
	return p, nil
}

// appDirectory makes dir absolute and checks it is a directory.
func appDirectory(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("app directory %s does not exist: %w", dir, err)
	}
	if err != nil {
		return "", fmt.Errorf("app directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory: pass the app directory, the one with package.json", dir)
	}
	return abs, nil
}

// loadApp reads one app directory.
func loadApp(dir string, ac AppConfig) (*App, error) {
	dir, err := appDirectory(dir)
	if err != nil {
		return nil, err
	}
	pkg, pkgFile, err := readPackage(dir)
	if err != nil {
		return nil, err
	}
	ep, err := findEntry(dir, pkgFile, pkg)
	if err != nil {
		return nil, err
	}
	files, addons, err := ListFiles(dir)
	if err != nil {
		return nil, err
	}
	// The entry exists on disk, but it must also survive the ignore rules,
	// or the image would boot into "Cannot find module".
	if _, ok := slices.BinarySearchFunc(files, ep.Entry, func(f File, rel string) int {
		switch {
		case f.Rel < rel:
			return -1
		case f.Rel > rel:
			return 1
		}
		return 0
	}); !ok {
		return nil, kindErr(ErrNoEntry, fmt.Errorf("the entry file %s of %s is left out of the image by %s (or is inside .git or .nodeboot); remove the pattern that matches it", ep.Entry, dir, IgnoreFile))
	}
	args := ep.Args
	if ac.Args != nil { // the config's args replace those of scripts.start
		args = ac.Args
	}
	name := ac.Name
	if name == "" {
		name = SanitizeName(pkg.Name)
	}
	return &App{
		Name:       name,
		SrcDir:     dir,
		Entry:      ep.Entry,
		NodeArgs:   ep.NodeArgs,
		Args:       args,
		Env:        ac.Env,
		Port:       ac.Port,
		Engines:    pkg.Engines.Node,
		Package:    *pkg,
		Files:      files,
		Addons:     addons,
		Persist:    persistPaths(ac.Persist),
		HealthPath: ac.HealthPath,
		Health:     ac.Health,
		// The config's value; 0 reads as the default on the node.
		MaxLockSeconds: ac.MaxLockSeconds,
		Limits:         ac.Limits,
		Sandbox:        ac.Sandbox,
		Shell:          ac.Shell,
	}, nil
}

// Runtime resolves the project into what PID 1 reads, for an image whose node
// binary is at nodePath. App i runs as uid = gid = FirstUID+i, a user named
// like the app, in AppsDir/<name>, with DataRoot/<name> as its writable
// HOME and NODEBOOT_DATA_DIR.
//
// The environment of an app is, later entries winning: NODE_ENV=production,
// the config's node-wide "env", the app's "env", then PORT, HOME and
// NODEBOOT_DATA_DIR, which the config cannot set (the validator refuses
// them) because nodeboot relies on their values.
func (p *Project) Runtime(nodePath string) *Runtime {
	rt := &Runtime{
		Hostname: p.Hostname,
		Network:  p.Config.Network,
		NodePath: nodePath,
		Apps:     make([]RuntimeApp, 0, len(p.Apps)),
		// An OS update's trial boot reads it (internal/pid1).
		HealthySeconds: p.Config.Update.HealthySeconds,
	}
	if f := p.Config.Follow; f != nil {
		cp := *f
		rt.Follow = &cp
	}
	rt.Logs = runtimeLogs(p.Config.Logs)
	rt.Network.DNS = slices.Clone(rt.Network.DNS)
	rt.Network.NTP = slices.Clone(rt.Network.NTP)
	if rt.Network.Mode == "" {
		rt.Network.Mode = "dhcp"
	}
	for i, a := range p.Apps {
		dataDir := DataRoot + "/" + a.Name
		env := map[string]string{"NODE_ENV": "production"}
		maps.Copy(env, p.Config.Env)
		maps.Copy(env, a.Env)
		env["PORT"] = strconv.Itoa(a.Port)
		env["HOME"] = dataDir
		env["NODEBOOT_DATA_DIR"] = dataDir
		if !a.Shell {
			// Says why exec() fails, once (internal/shell, noshell.js);
			// the app's own options follow, so they still win.
			env["NODE_OPTIONS"] = strings.TrimSpace(shell.PreloadOption + " " + env["NODE_OPTIONS"])
		}
		rt.Apps = append(rt.Apps, RuntimeApp{
			Name:           a.Name,
			Dir:            AppsDir + "/" + a.Name,
			Entry:          a.Entry,
			NodeArgs:       slices.Clone(a.NodeArgs),
			Args:           slices.Clone(a.Args),
			Env:            env,
			Port:           a.Port,
			UID:            FirstUID + i,
			GID:            FirstUID + i,
			DataDir:        dataDir,
			Persist:        slices.Clone(a.Persist),
			HealthPath:     a.HealthPath,
			Health:         a.Health,
			MaxLockSeconds: a.MaxLockSeconds,
			Limits:         a.Limits,
			Sandbox:        runtimeSandbox(a.Sandbox),
			Shell:          a.Shell,
		})
	}
	return rt
}

// persistPaths cleans the config's persist entries (validated already).
func persistPaths(in []string) []string {
	var out []string
	for _, p := range in {
		if c, err := PersistPath(p); err == nil {
			out = append(out, c)
		}
	}
	return out
}
