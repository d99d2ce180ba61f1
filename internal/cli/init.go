package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// schemaURL is where editors fetch nodeboot.json's schema when the project
// has no npm-installed copy (the npm package ships it).
const (
	schemaURL       = "https://raw.githubusercontent.com/nodeboot/nodeboot/main/docs/nodeboot.schema.json"
	schemaInPackage = "node_modules/nodeboot/nodeboot.schema.json"
)

func newInit(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "init [APP_DIR]",
		Short: "Write a commented nodeboot.json, a .nodebootignore, and .nodeboot/ into .gitignore",
		Long: `Prepares APP_DIR (default: the current directory) for nodeboot: a
nodeboot.json with "$schema" (editor completion) and comments on its keys, a
.nodebootignore (git's rules) for files the image does not need, and
.nodeboot/ (the node's credentials) in .gitignore. Files that exist are never
overwritten, so running it again changes nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			return initProject(dir, stdout)
		},
	}
}

func initProject(dir string, stdout io.Writer) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("init: %s is not a directory: give the app's directory", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		fmt.Fprintf(stdout, "note: %s has no package.json yet: nodeboot needs one (npm init -y)\n", dir)
	}
	schema := schemaURL
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(schemaInPackage))); err == nil {
		schema = "./" + schemaInPackage
	}
	if err := writeNew(filepath.Join(dir, spec.ConfigFile), nodebootJSON(schema), stdout); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, spec.IgnoreFile), []byte(nodebootIgnore), stdout); err != nil {
		return err
	}
	if err := gitignoreAdd(filepath.Join(dir, ".gitignore"), ".nodeboot/", stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, `next: npx nodeboot run . (or add "image": "nodeboot build . -o out" to package.json's scripts)`)
	return nil
}

// nodebootJSON is a valid, minimal nodeboot.json whose "$comment" says what
// each key is for (JSON has no comments; the loader ignores "$comment").
func nodebootJSON(schema string) []byte {
	v := map[string]any{
		"$schema": schema,
		"$comment": []string{
			"nodeboot.json is optional: package.json alone makes one app on port 8080 with DHCP.",
			"Your editor completes and checks every key from $schema. The main ones:",
			"hostname: the node's name (default: package.json's name).",
			"node: the Node.js version in the image, e.g. \"22\" (default: engines.node, else the host's).",
			"env: variables for every app, e.g. {\"LOG_LEVEL\": \"info\"}.",
			"apps: several apps on one node, each with path, port, env, limits, persist, healthPath.",
			"network: {\"mode\": \"static\", \"address\": ..., \"gateway\": ..., \"dns\": [...]} instead of DHCP.",
			"update.healthySeconds: how long an OS update must stay healthy before it is kept.",
		},
		"env": map[string]string{},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return b.Bytes()
}

const nodebootIgnore = `# Files of this directory left out of the image, with .gitignore's rules.
# .git, .nodeboot/ and nodeboot's own output are always left out.
*.log
coverage/
.nyc_output/
test/
tests/
.github/
.vscode/
.idea/
out/
# Secrets for local development stay on this machine:
.env
.env.*
`

// writeNew creates path with b unless it exists.
func writeNew(path string, b []byte, stdout io.Writer) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		fmt.Fprintf(stdout, "kept %s (it exists)\n", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("init: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("init: writing %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	return nil
}

// gitignoreAdd appends line to a .gitignore unless a line already ignores
// the same directory.
func gitignoreAdd(path, line string, stdout io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("init: %w", err)
	}
	want := strings.Trim(line, "/")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if strings.Trim(strings.TrimSpace(sc.Text()), "/") == want {
			fmt.Fprintf(stdout, "kept %s (it lists %s)\n", path, line)
			return nil
		}
	}
	add := line + "\n"
	if len(b) > 0 && b[len(b)-1] != '\n' {
		add = "\n" + add
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := f.WriteString(add); err != nil {
		f.Close()
		return fmt.Errorf("init: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("init: %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "added %s to %s\n", line, path)
	return nil
}
