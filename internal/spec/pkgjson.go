package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Package is what nodeboot reads from package.json.
type Package struct {
	Name    string
	Version string
	Main    string
	Scripts map[string]string
	Engines struct{ Node string }
}

var (
	// ErrNoPackageJSON: the directory is not a Node.js project.
	ErrNoPackageJSON = errors.New("no package.json")
	// ErrBadPackageJSON: package.json is not JSON, or a field nodeboot uses
	// has the wrong type.
	ErrBadPackageJSON = errors.New("invalid package.json")
	// ErrUnsupportedStart: scripts.start is more than "node <file> [args]".
	ErrUnsupportedStart = errors.New("unsupported scripts.start")
	// ErrNoEntry: no entry file could be determined or it does not exist.
	ErrNoEntry = errors.New("no entry file")
)

// kindError gives an error a kind that errors.Is recognises without putting
// the kind's text into the message, which already says it better.
type kindError struct {
	kind error
	err  error
}

func kindErr(kind, err error) error { return &kindError{kind: kind, err: err} }

func (e *kindError) Error() string        { return e.err.Error() }
func (e *kindError) Unwrap() error        { return e.err }
func (e *kindError) Is(target error) bool { return target == e.kind }

// entryHint is the sentence every "cannot tell what to run" error ends with:
// the two ways to tell nodeboot, spelled out to be copied.
func entryHint(file string) string {
	return fmt.Sprintf(`set "main": %q in package.json, or make scripts.start "node %s"`, file, file)
}

// ParsePackage decodes package.json. It is lenient about everything nodeboot
// does not use (package.json files in the wild carry all sorts of keys) and
// strict about the types of the fields it does use, since a "main" that is
// not a string is a mistake worth reporting rather than ignoring.
func ParsePackage(data []byte, file string) (*Package, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // Node strips a BOM too
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, kindErr(ErrBadPackageJSON, fmt.Errorf("%s: not valid JSON: %w", file, err))
	}
	if raw == nil { // the file was "null"
		return nil, kindErr(ErrBadPackageJSON, fmt.Errorf("%s: expected a JSON object", file))
	}
	p := &Package{}
	str := func(key string, dst *string, m map[string]json.RawMessage, prefix string) error {
		v, ok := m[key]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return kindErr(ErrBadPackageJSON, fmt.Errorf("%s: %s%s: expected string, got %s", file, prefix, key, jsonTypeOf(v)))
		}
		return nil
	}
	for _, k := range []string{"name", "version", "main"} {
		dst := map[string]*string{"name": &p.Name, "version": &p.Version, "main": &p.Main}[k]
		if err := str(k, dst, raw, ""); err != nil {
			return nil, err
		}
	}
	if v, ok := raw["scripts"]; ok && string(v) != "null" {
		var scripts map[string]json.RawMessage
		if err := json.Unmarshal(v, &scripts); err != nil {
			return nil, kindErr(ErrBadPackageJSON, fmt.Errorf("%s: scripts: expected object, got %s", file, jsonTypeOf(v)))
		}
		p.Scripts = map[string]string{}
		for k, sv := range scripts {
			var s string
			if err := json.Unmarshal(sv, &s); err != nil {
				if k == "start" { // the only script nodeboot runs
					return nil, kindErr(ErrBadPackageJSON, fmt.Errorf("%s: scripts.start: expected string, got %s", file, jsonTypeOf(sv)))
				}
				continue // npm ignores it too
			}
			p.Scripts[k] = s
		}
	}
	if v, ok := raw["engines"]; ok {
		// Old packages have "engines": ["node >= 0.8"]; npm ignores that form,
		// and so do we.
		var engines map[string]json.RawMessage
		if json.Unmarshal(v, &engines) == nil && engines != nil {
			if err := str("node", &p.Engines.Node, engines, "engines."); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func jsonTypeOf(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number " + string(t)
	}
}

// StartCommand is scripts.start taken apart.
type StartCommand struct {
	NodeArgs []string // node's own options, before the file
	File     string   // the script, as written
	Args     []string // the script's arguments
}

// nodeValueFlags are node options that take their value as the next word
// when not written --opt=value; without this table "node -r dotenv/config
// server.js" would run dotenv/config.
var nodeValueFlags = map[string]bool{
	"-r": true, "--require": true, "--import": true,
	"--loader": true, "--experimental-loader": true,
	"-C": true, "--conditions": true,
	"--env-file": true, "--env-file-if-exists": true,
	"--inspect-port": true, "--debug-port": true, "--title": true,
	"--input-type": true, "--stack-size": true,
	"--max-old-space-size": true, "--max-semi-space-size": true,
	"--unhandled-rejections": true, "--dns-result-order": true,
	"--disable-warning": true, "--experimental-policy": true,
	"--redirect-warnings": true, "--diagnostic-dir": true,
}

// nodeNoFileFlags make node do something other than run a file.
var nodeNoFileFlags = map[string]bool{
	"-e": true, "--eval": true, "-p": true, "--print": true,
	"-c": true, "--check": true, "-i": true, "--interactive": true,
	"-v": true, "--version": true, "-h": true, "--help": true,
	"--test": true, "--run": true, "--v8-options": true,
}

// ParseStart accepts scripts.start of the form
//
//	node [node-options...] <file> [args...]
//
// in simple shell syntax: words separated by blanks, '...' and "..." quoting,
// and backslash escapes. The image has no shell and no npm, and PID 1 runs
// node directly, so anything needing a shell (operators, variables, command
// substitution, globs, env assignments) or another program (nodemon, npm,
// ts-node) cannot be honoured and is refused with the reason.
func ParseStart(script string) (*StartCommand, error) {
	words, err := shellWords(script)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errors.New("is empty")
	}
	if i := strings.IndexByte(words[0], '='); i > 0 && !strings.ContainsRune(words[0][:i], '/') {
		return nil, fmt.Errorf("sets the environment variable %s; put variables in nodeboot.json \"env\" instead", words[0][:i])
	}
	if words[0] != "node" {
		return nil, fmt.Errorf("runs %s, not node", words[0])
	}
	cmd := &StartCommand{}
	i := 1
	for ; i < len(words) && strings.HasPrefix(words[i], "-"); i++ {
		w := words[i]
		if w == "--" {
			i++
			break
		}
		if w == "-" {
			return nil, errors.New("runs node on standard input")
		}
		name, _, hasValue := strings.Cut(w, "=")
		if nodeNoFileFlags[name] {
			return nil, fmt.Errorf("runs node %s, which does not run a file", name)
		}
		cmd.NodeArgs = append(cmd.NodeArgs, w)
		if nodeValueFlags[name] && !hasValue {
			if i+1 >= len(words) {
				return nil, fmt.Errorf("gives node %s without its value", name)
			}
			i++
			cmd.NodeArgs = append(cmd.NodeArgs, words[i])
		}
	}
	if i >= len(words) {
		return nil, errors.New("runs node without a file")
	}
	cmd.File = words[i]
	if len(words) > i+1 {
		cmd.Args = words[i+1:]
	}
	return cmd, nil
}

// shellWords splits s into words with the quoting rules of sh, refusing every
// construct that would make the shell do more than split words.
func shellWords(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			case '$', '`':
				return nil, fmt.Errorf("uses %q, which needs a shell", r)
			default:
				cur.WriteRune(r)
			}
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '\'' || r == '"':
			quote = r
			inWord = true
		case r == '\\':
			escaped = true
			inWord = true
		case strings.ContainsRune("&|;<>$`()*?[]{}~#!\n\r", r):
			return nil, fmt.Errorf("uses %q, which needs a shell", r)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("has an unterminated %c quote", quote)
	}
	if escaped {
		return nil, errors.New("ends with a backslash")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// readPackage reads dir/package.json.
func readPackage(dir string) (*Package, string, error) {
	file := filepath.Join(dir, "package.json")
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, file, fmt.Errorf("%w in %s: nodeboot builds Node.js projects; run `npm init -y` there, or pass the app directory", ErrNoPackageJSON, dir)
	}
	if err != nil {
		return nil, file, fmt.Errorf("reading %s: %w", file, err)
	}
	p, err := ParsePackage(data, file)
	return p, file, err
}

// entryPoint is how an app is started, as decided from package.json.
type entryPoint struct {
	Entry    string // relative to the app dir, forward slashes, resolved to a file
	NodeArgs []string
	Args     []string
}

// findEntry decides what node runs, in the order Node.js and npm would:
//
//  1. "main", when it names a file that exists;
//  2. scripts.start, when it is a plain node command;
//  3. index.js, which is what `node .` falls back to.
//
// A "main" that does not exist falls through to scripts.start before it is
// reported: `npm init -y` writes "main": "index.js" into every new project,
// and many apps are really started with "node server.js". Only when start
// cannot be used either is the missing main an error.
func findEntry(dir, pkgFile string, p *Package) (*entryPoint, error) {
	var mainErr error
	if p.Main != "" {
		rel, err := resolveEntry(dir, p.Main)
		if err == nil {
			return &entryPoint{Entry: rel}, nil
		}
		mainErr = kindErr(ErrNoEntry, fmt.Errorf("%s: \"main\" is %q, but %w; %s", pkgFile, p.Main, err, entryHint(guessFile(dir, p.Main))))
	}
	if start, ok := p.Scripts["start"]; ok {
		cmd, err := ParseStart(start)
		if err != nil {
			bin, ok, berr := binStart(dir, start)
			if berr != nil {
				return nil, kindErr(ErrUnsupportedStart, fmt.Errorf("%s: scripts.start %q %w; nodeboot runs node only, directly, without a shell or npm: %s",
					pkgFile, start, berr, entryHint(guessFile(dir, ""))))
			}
			if ok {
				cmd, err = bin, nil
			}
		}
		if err != nil {
			if mainErr != nil {
				return nil, mainErr
			}
			return nil, kindErr(ErrUnsupportedStart, fmt.Errorf("%s: scripts.start %q %w; nodeboot runs the entry file with node directly, without a shell or npm: %s",
				pkgFile, start, err, entryHint(guessFile(dir, startGuess(start)))))
		}
		rel, err := resolveEntry(dir, cmd.File)
		if err != nil {
			if mainErr != nil {
				return nil, mainErr
			}
			return nil, kindErr(ErrNoEntry, fmt.Errorf("%s: scripts.start runs %q, but %w", pkgFile, cmd.File, err))
		}
		return &entryPoint{Entry: rel, NodeArgs: cmd.NodeArgs, Args: cmd.Args}, nil
	}
	if mainErr != nil {
		return nil, mainErr
	}
	if rel, err := resolveEntry(dir, "index.js"); err == nil {
		return &entryPoint{Entry: rel}, nil
	}
	return nil, kindErr(ErrNoEntry, fmt.Errorf("%s has neither \"main\" nor scripts.start, and there is no index.js in %s: %s",
		pkgFile, dir, entryHint(guessFile(dir, ""))))
}

// binStart reads scripts.start as `npm start` does when its first word is
// a command of a dependency: npm puts node_modules/.bin on PATH, and a
// package's command there is usually a node script ("#!/usr/bin/env node",
// Node-RED's "node-red"), which runs the same when node runs its file
// directly. ok is false when the first word is no such command (the caller
// reports the start script as it is); err says why a command that is there
// cannot be run (a shell script, a binary, a link out of the app).
func binStart(dir, start string) (cmd *StartCommand, ok bool, err error) {
	words, werr := shellWords(start)
	if werr != nil || len(words) == 0 || words[0] == "node" || strings.ContainsAny(words[0], "/=") {
		return nil, false, nil
	}
	rel := path.Join("node_modules", ".bin", words[0])
	bin := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Lstat(bin); err != nil {
		return nil, false, nil
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, false, fmt.Errorf("runs %s: %w", rel, err)
	}
	target, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return nil, false, fmt.Errorf("runs %s, which is a dangling link: %w", rel, err)
	}
	inApp, err := filepath.Rel(root, target)
	if err != nil || !filepath.IsLocal(inApp) {
		return nil, false, fmt.Errorf("runs %s, which leads out of the app directory (%s)", rel, target)
	}
	f, err := os.Open(target)
	if err != nil {
		return nil, false, fmt.Errorf("runs %s: %w", rel, err)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	first, _, _ := strings.Cut(string(head[:n]), "\n")
	first = strings.TrimSuffix(first, "\r")
	nodeArgs, isNode := nodeShebang(first)
	if !isNode {
		if len(first) > 60 || !utf8.ValidString(first) {
			first = "binary data"
		}
		return nil, false, fmt.Errorf("runs %s, which is not a node script (it starts %q)", rel, first)
	}
	cmd = &StartCommand{NodeArgs: nodeArgs, File: filepath.ToSlash(inApp)}
	if len(words) > 1 {
		cmd.Args = words[1:]
	}
	return cmd, true, nil
}

// nodeShebang tells whether line is a "#!" line that runs node, and the
// node options it gives: "#!/usr/bin/env node", "#!/usr/bin/env -S node
// --flag", "#!/usr/bin/node".
func nodeShebang(line string) (nodeArgs []string, ok bool) {
	rest, found := strings.CutPrefix(line, "#!")
	if !found {
		return nil, false
	}
	f := strings.Fields(rest)
	if len(f) > 0 && path.Base(f[0]) == "env" {
		f = f[1:]
		if len(f) > 0 && (f[0] == "-S" || f[0] == "--split-string") {
			f = f[1:]
		}
	}
	if len(f) == 0 || path.Base(f[0]) != "node" {
		return nil, false
	}
	if len(f) == 1 {
		return nil, true
	}
	return f[1:], true
}

// resolveEntry finds the file node would load for spec, relative to dir:
// the file itself, spec+".js", or spec/index.js. (Node also tries .json,
// .node and package.json "main" of a directory; an app's entry is never
// those.) The result is relative to dir with forward slashes; spec may not
// leave dir, because only dir is copied into the image.
func resolveEntry(dir, spec string) (string, error) {
	clean := path.Clean(filepath.ToSlash(spec))
	if filepath.IsAbs(spec) || path.IsAbs(clean) || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", fmt.Errorf("%s is outside the app directory, and only the app directory goes into the image", spec)
	}
	for _, cand := range []string{clean, clean + ".js", path.Join(clean, "index.js")} {
		if cand == "." {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(cand)))
		if err == nil && fi.Mode().IsRegular() {
			return cand, nil
		}
	}
	switch path.Ext(clean) {
	case ".js", ".mjs", ".cjs":
		return "", fmt.Errorf("there is no file %s in %s", clean, dir)
	}
	return "", fmt.Errorf("there is no file %s in %s (tried %s, %s.js and %s/index.js)", clean, dir, clean, clean, clean)
}

// startGuess picks the word of an unusable start script that is most likely
// the app's file, for the suggestion in the error.
func startGuess(start string) string {
	fields := strings.Fields(start)
	for i := len(fields) - 1; i >= 0; i-- {
		f := strings.Trim(fields[i], `'"`)
		for _, ext := range []string{".js", ".mjs", ".cjs"} {
			if strings.HasSuffix(f, ext) {
				return f
			}
		}
	}
	return ""
}

// guessFile returns want when it is an existing file of dir, else the first
// of the usual entry names that exists in dir, else "server.js": the
// suggestion should work when copied.
func guessFile(dir, want string) string {
	for _, f := range []string{want, "server.js", "app.js", "main.js", "index.js", "server.mjs", "app.mjs", "index.mjs"} {
		if f == "" || !filepath.IsLocal(f) {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, f)); err == nil && fi.Mode().IsRegular() {
			return f
		}
	}
	return "server.js"
}
