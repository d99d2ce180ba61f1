// Package kernelbuild builds nodeboot's own Linux kernel from Debian's
// linux-source package: allnoconfig plus the commented fragments in config/,
// one per need, everything built in. The result is cached in the user cache
// dir by (source version, config hash).
package kernelbuild

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

//go:embed config/*.config
var configFS embed.FS

// ErrUnknownProfile is returned for a profile name that is not in Profiles.
var ErrUnknownProfile = errors.New("unknown kernel profile")

// Profiles are the kernels nodeboot builds, each a list of fragments applied
// in order on top of allnoconfig.
var Profiles = map[string][]string{
	// QEMU/KVM guests: what `nodeboot run` boots.
	"vm": {"base", "node", "sandbox", "fs", "vm"},
	// Installed on PCs: the vm devices plus real hardware.
	"pc": {"base", "node", "sandbox", "fs", "vm", "pc"},
}

// ProfileNames lists the profiles, sorted, for messages.
func ProfileNames() []string {
	var n []string
	for p := range Profiles {
		n = append(n, p)
	}
	sort.Strings(n)
	return n
}

// Option is one line of a fragment: CONFIG_NAME and its value as .config
// writes it ("y", "123", "\"text\""), or "n" for "# CONFIG_NAME is not set".
type Option struct {
	Name, Value string
	Fragment    string // where it was asked for
	Line        int
}

// ParseConfig reads .config syntax: CONFIG_X=value lines, "# CONFIG_X is not
// set" lines, other comments and blank lines. It reads both our fragments and
// the kernel's final .config.
func ParseConfig(name string, b []byte) ([]Option, error) {
	var opts []Option
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			rest := strings.TrimSpace(strings.TrimPrefix(line, "#"))
			if sym, ok := strings.CutSuffix(rest, " is not set"); ok && strings.HasPrefix(sym, "CONFIG_") && validSymbol(sym) {
				opts = append(opts, Option{Name: sym, Value: "n", Fragment: name, Line: n})
			}
			continue
		}
		sym, val, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(sym, "CONFIG_") || !validSymbol(sym) || val == "" {
			return nil, fmt.Errorf("%s:%d: %q is not a kernel option (want CONFIG_NAME=value or \"# CONFIG_NAME is not set\")", name, n, line)
		}
		if val == "n" {
			return nil, fmt.Errorf("%s:%d: write \"# %s is not set\", not %s=n (kconfig ignores that form)", name, n, sym, sym)
		}
		opts = append(opts, Option{Name: sym, Value: val, Fragment: name, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return opts, nil
}

func validSymbol(s string) bool {
	if len(s) <= len("CONFIG_") {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// Config is a profile's requested options, merged from its fragments.
type Config struct {
	Profile string
	Options []Option // in fragment order; a later fragment overrides
	Text    []byte   // the KCONFIG_ALLCONFIG file given to allnoconfig
}

// SHA256 identifies the configuration in the cache and the manifest.
func (c *Config) SHA256() string {
	s := sha256.Sum256(c.Text)
	return hex.EncodeToString(s[:])
}

// ProfileConfig merges the fragments of profile. The kernel's release
// string carries the profile (uname -r: 6.1.0-nodeboot-vm).
func ProfileConfig(profile string) (*Config, error) {
	frags, ok := Profiles[profile]
	if !ok {
		return nil, fmt.Errorf("%w %q: use one of %s", ErrUnknownProfile, profile, strings.Join(ProfileNames(), ", "))
	}
	var sources []Fragment
	for _, f := range frags {
		b, err := configFS.ReadFile("config/" + f + ".config")
		if err != nil {
			return nil, fmt.Errorf("kernel config fragment %s: %w", f, err)
		}
		sources = append(sources, Fragment{Name: f + ".config", Text: b})
	}
	sources = append(sources, Fragment{Name: "profile", Text: []byte(fmt.Sprintf("# the release names the profile\nCONFIG_LOCALVERSION=\"-nodeboot-%s\"\n", profile))})
	c, err := Merge(sources)
	if err != nil {
		return nil, err
	}
	c.Profile = profile
	return c, nil
}

// Fragment is one named piece of configuration.
type Fragment struct {
	Name string
	Text []byte
}

// Merge concatenates fragments into one allconfig file and the list of what
// it asks for; an option set twice to different values is an error, since
// one fragment would silently undo another's need.
func Merge(frags []Fragment) (*Config, error) {
	c := &Config{}
	seen := map[string]Option{}
	var text bytes.Buffer
	for _, f := range frags {
		opts, err := ParseConfig(f.Name, f.Text)
		if err != nil {
			return nil, err
		}
		for _, o := range opts {
			if prev, ok := seen[o.Name]; ok {
				if prev.Value != o.Value {
					return nil, fmt.Errorf("%s:%d sets %s=%s but %s:%d set it to %s: keep one", o.Fragment, o.Line, o.Name, o.Value, prev.Fragment, prev.Line, prev.Value)
				}
				continue
			}
			seen[o.Name] = o
			c.Options = append(c.Options, o)
			if o.Value == "n" {
				fmt.Fprintf(&text, "# %s is not set\n", o.Name)
			} else {
				fmt.Fprintf(&text, "%s=%s\n", o.Name, o.Value)
			}
		}
	}
	c.Text = text.Bytes()
	return c, nil
}

// Dropped compares the requested options with the final .config the kernel
// wrote (after olddefconfig) and describes every one that is not as asked:
// kconfig silently drops an option whose dependencies are off.
func (c *Config) Dropped(final []byte) ([]string, error) {
	got, err := ParseConfig(".config", final)
	if err != nil {
		return nil, err
	}
	have := map[string]string{}
	for _, o := range got {
		have[o.Name] = o.Value
	}
	var out []string
	for _, o := range c.Options {
		v, ok := have[o.Name]
		if !ok {
			v = "n"
		}
		if v == o.Value {
			continue
		}
		show := func(v string) string {
			if v == "n" {
				return "not set"
			}
			return v
		}
		out = append(out, fmt.Sprintf("%s=%s (%s:%d) is %s in the final .config", o.Name, show(o.Value), o.Fragment, o.Line, show(v)))
	}
	return out, nil
}
