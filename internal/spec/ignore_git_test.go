package spec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// ignoreTree is the app dir every pattern set of TestIgnoreMatchesGit is
// tried on: names at several depths, files and directories of the same
// name, and names that need escaping in a pattern.
var ignoreTree = map[string]string{
	"server.js": "", "package.json": "{}",
	"a.log": "", "keep.log": "", "x/b.log": "", "x/keep.log": "", "x/y/keep.log": "",
	"build/out.js": "", "build/keep.js": "", "build/sub/deep.js": "", "src/build/x.js": "", "lib/build": "a file",
	"src/a.js": "", "src/test/t.js": "", "src/test/keep.js": "", "lib/src/test/t.js": "",
	"docs/a.md": "", "docs/a.txt": "", "docs/deep/b.md": "", "docs/deep/b.txt": "",
	"tmp/k": "", "tmp/keep": "", "lib/tmp/k": "", "lib/tmp/keep": "",
	"node_modules/p/i.ts": "", "node_modules/p/i.js": "", "node_modules/p/sub/j.ts": "", "node_modules/.bin/x": "",
	"!important": "", "#hash": "", "trail ": "", "a.o": "", "b.a": "", "c.c": "",
	"a/b": "", "a/x/b": "", "a/x/y/b": "", "fixtures/f": "", "t/fixtures/f": "",
	"empty/": "",
}

// ignoreCases are .nodebootignore texts; the first eight are the common
// negation patterns (re-including a file, a directory's contents, everything
// but one thing).
var ignoreCases = []string{
	"*.log\n!keep.log\n",
	"build/\n!build/keep.js\n",
	"build/*\n!build/keep.js\n",
	"/*\n!/src\n!package.json\n",
	"*\n!*/\n!*.js\n",
	"docs/**\n!docs/**/*.md\n",
	"tmp\n!lib/tmp/keep\n",
	"**/tmp/*\n!**/tmp/keep\n",
	"node_modules/**/*.ts\n!node_modules/p/i.ts\n",
	"*.log\n!/x/keep.log\n",
	"docs/\n!docs/a.md\n",
	"src/*\n!src/test\nsrc/test/*\n!src/test/keep.js\n",
	"*.log\n!x/\n!keep.log\nx/y/\n",
	"!server.js\nserver.js\n",
	"*/\n!src/\n",
	"**\n!**/\n!*.md\n",
	"\\!important\n\\#hash\n# a comment\n",
	"trail\\ \n",
	"trail \n",
	"*.[oa]\n!b.a\n",
	"/tmp\nsrc/test\ndocs/*.txt\n",
	"**/fixtures\nbuild/\ncoverage\n",
	"a/**/b\n",
	"a/**\n!a/x/\n",
	"node_modules/\n",
	"**/keep*\n!/tmp/**\n",
	"x/**/keep.log\n",
	"lib/build/\n",
	"*.js\r\n!src/*.js\r\n",
	"[!a-c].c\nb?a\n",
	"docs/deep\n!docs/deep/b.md\n",
	"*\n!.nodebootignore\n!server.js\n",
	"**/\n!x/\n",
	"a/**/\n",
	"*/*.js\n",
	"[[:punct:]]*\n",
	"\\*\n*.[[:alpha:]]\n",
	"/\n!\n",
	"x/**/y/**\n",
	"*.[!o]\n",
	"[]a]*\n",
	"src/**/*.js\n!src/test/**\n",
}

// TestIgnoreMatchesGit runs every pattern set through ListFiles and through
// `git check-ignore` on the same tree: a path is in the image exactly when
// git does not ignore it. It fails as soon as the two ever disagree.
func TestIgnoreMatchesGit(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is needed to check .nodebootignore against git's own rules: apt-get install git")
	}
	for _, patterns := range ignoreCases {
		t.Run(strings.ReplaceAll(strings.TrimSpace(patterns), "\n", "|"), func(t *testing.T) {
			files := map[string]string{IgnoreFile: patterns}
			for k, v := range ignoreTree {
				files[k] = v
			}
			dir := project(t, files)
			all := walkAll(t, dir)

			// git reads the same rules from the repository's exclude
			// file, so the tree itself is the same for both.
			git := func(stdin []byte, args ...string) []byte {
				cmd := exec.Command(gitBin, args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_CONFIG_GLOBAL=/dev/null")
				cmd.Stdin = bytes.NewReader(stdin)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && len(args) > 0 && args[0] == "check-ignore" {
					return out // 1: nothing is ignored
				}
				if err != nil {
					t.Fatalf("git %v: %v: %s", args, err, stderr.String())
				}
				return out
			}
			git(nil, "init", "-q")
			if err := os.WriteFile(filepath.Join(dir, ".git", "info", "exclude"), []byte(patterns), 0o644); err != nil {
				t.Fatal(err)
			}
			out := git([]byte(strings.Join(all, "\x00")+"\x00"), "check-ignore", "--no-index", "--stdin", "-z")
			gitIgnored := map[string]bool{}
			for _, p := range strings.Split(string(out), "\x00") {
				if p != "" {
					gitIgnored[p] = true
				}
			}

			listed, _, err := ListFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			inImage := map[string]bool{}
			for _, f := range listed {
				inImage[f.Rel] = true
			}
			for _, p := range all {
				if inImage[p] == gitIgnored[p] {
					t.Errorf("%q: in the image = %v, ignored by git = %v", p, inImage[p], gitIgnored[p])
				}
			}
		})
	}
}

// walkAll lists every path under dir (files and directories, .git left
// out), relative, with forward slashes.
func walkAll(t *testing.T, dir string) []string {
	t.Helper()
	var all []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if info.Name() == ".git" {
			return filepath.SkipDir
		}
		r, _ := filepath.Rel(dir, p)
		all = append(all, filepath.ToSlash(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(all)
	return all
}
