package spec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"unicode/utf16"
)

func rels(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Rel)
	}
	return out
}

func TestListFilesIgnoreRules(t *testing.T) {
	tests := []struct {
		name   string
		ignore string // .nodebootignore; "" for none
		files  map[string]string
		want   []string
	}{
		{
			name: "always left out: .git anywhere, .nodeboot at the top",
			files: map[string]string{
				"server.js": "", ".git/HEAD": "", ".git/objects/ab": "",
				"node_modules/dep/.git": "gitdir: x", "node_modules/dep/index.js": "",
				".nodeboot/cache/x": "", "sub/.nodeboot/kept": "",
				"nodeboot.json": "{}", ".gitignore": "",
			},
			want: []string{".gitignore", "node_modules", "node_modules/dep", "node_modules/dep/index.js",
				"nodeboot.json", "server.js", "sub", "sub/.nodeboot", "sub/.nodeboot/kept"},
		},
		{
			name:   "globs and negation",
			ignore: "# logs\n*.log\n!keep.log\n\n*.md\n",
			files:  map[string]string{"a.log": "", "keep.log": "", "x/b.log": "", "x/keep.log": "", "README.md": "", "server.js": ""},
			want:   []string{".nodebootignore", "keep.log", "server.js", "x", "x/keep.log"},
		},
		{
			name:   "directory patterns match directories only, at any depth",
			ignore: "build/\ncoverage\n",
			files: map[string]string{"build/out.js": "", "src/build/x.js": "", "lib/build": "a file",
				"coverage/lcov.info": "", "server.js": ""},
			want: []string{".nodebootignore", "lib", "lib/build", "server.js", "src"},
		},
		{
			name:   "a slash anchors the pattern to the app dir",
			ignore: "/tmp\nsrc/test\ndocs/*.txt\n",
			files: map[string]string{"tmp/a": "", "lib/tmp/b": "", "src/test/t.js": "", "lib/src/test/t.js": "",
				"docs/a.txt": "", "docs/deep/b.txt": "", "server.js": ""},
			want: []string{".nodebootignore", "docs", "docs/deep", "docs/deep/b.txt", "lib", "lib/src", "lib/src/test",
				"lib/src/test/t.js", "lib/tmp", "lib/tmp/b", "server.js", "src"},
		},
		{
			name:   "a file under an ignored directory cannot be re-included (as in git)",
			ignore: "test/\n!test/keep.js\n",
			files:  map[string]string{"test/keep.js": "", "test/other.js": "", "server.js": ""},
			want:   []string{".nodebootignore", "server.js"},
		},
		{
			name:   "double star",
			ignore: "**/fixtures\nnode_modules/**/*.ts\n",
			files: map[string]string{"a/fixtures/x": "", "fixtures/y": "", "node_modules/p/i.ts": "",
				"node_modules/p/i.js": "", "server.js": ""},
			want: []string{".nodebootignore", "a", "node_modules", "node_modules/p", "node_modules/p/i.js", "server.js"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range tc.files {
				files[k] = v
			}
			if tc.ignore != "" {
				files[IgnoreFile] = tc.ignore
			}
			dir := project(t, files)
			got, _, err := ListFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rels(got), tc.want) {
				t.Errorf("got  %q\nwant %q", rels(got), tc.want)
			}
		})
	}
}

func TestListFilesEntries(t *testing.T) {
	dir := project(t, map[string]string{
		"server.js":                            "console.log(1)",
		"bin/":                                 "",
		"node_modules/.bin/tool":               "-> ../tool/cli.js",
		"node_modules/tool/cli.js":             "#!/usr/bin/env node",
		"node_modules/sharp/build/sharp.node":  "ELF",
		"node_modules/bcrypt/lib/binding.node": "ELF",
		"node_modules/dangling":                "-> missing-but-inside",
		"a-b":                                  "",
		"a/x":                                  "",
	})
	if err := os.Chmod(filepath.Join(dir, "node_modules/tool/cli.js"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, addons, err := ListFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	byRel := map[string]File{}
	for i, f := range files {
		byRel[f.Rel] = f
		if i > 0 && files[i-1].Rel >= f.Rel {
			t.Errorf("not sorted: %q before %q", files[i-1].Rel, f.Rel)
		}
	}
	if f := byRel["server.js"]; !f.Mode.IsRegular() || f.Size != 14 || f.Link != "" {
		t.Errorf("server.js: %+v", f)
	}
	if f := byRel["bin"]; !f.Mode.IsDir() {
		t.Errorf("empty dir bin: %+v", f)
	}
	if f := byRel["node_modules/.bin/tool"]; f.Mode&fs.ModeSymlink == 0 || f.Link != "../tool/cli.js" {
		t.Errorf("symlink kept as symlink: %+v", f)
	}
	if f := byRel["node_modules/tool/cli.js"]; f.Mode.Perm() != 0o755 {
		t.Errorf("mode not kept: %v", f.Mode)
	}
	if _, ok := byRel["fifo"]; ok {
		t.Errorf("fifo listed")
	}
	if _, ok := byRel["node_modules/dangling"]; !ok {
		t.Errorf("symlink to a missing path inside the app dropped")
	}
	wantAddons := []string{"node_modules/bcrypt/lib/binding.node", "node_modules/sharp/build/sharp.node"}
	if !reflect.DeepEqual(addons, wantAddons) {
		t.Errorf("addons = %q, want %q", addons, wantAddons)
	}
}

func TestListFilesEscapingSymlinks(t *testing.T) {
	tests := []struct {
		name, target, want string
	}{
		{"absolute", "/etc/passwd", "link -> /etc/passwd: absolute target"},
		{"parent", "../outside", "link -> ../outside: leaves the app directory"},
		{"deep parent", "a/../../x", "link -> a/../../x: leaves the app directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, map[string]string{"server.js": "", "link": "-> " + tc.target})
			_, _, err := ListFiles(dir)
			if !errors.Is(err, ErrSymlinkEscapes) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrSymlinkEscapes saying %q", err, tc.want)
			}
		})
	}

	// Inside a subdirectory, ".." may still stay within the app.
	dir := project(t, map[string]string{"lib/x.js": "", "sub/link": "-> ../lib/x.js", "sub/bad": "-> ../../x"})
	_, _, err := ListFiles(dir)
	if err == nil || strings.Contains(err.Error(), "sub/link") || !strings.Contains(err.Error(), "sub/bad") {
		t.Errorf("got %v, want only sub/bad reported", err)
	}

	// An escaping link that .nodebootignore leaves out is no problem.
	dir = project(t, map[string]string{"server.js": "", "link": "-> /etc", IgnoreFile: "link\n"})
	if _, _, err := ListFiles(dir); err != nil {
		t.Errorf("ignored escaping link: %v", err)
	}
}

func TestListFilesThroughSymlinkedRoot(t *testing.T) {
	real := project(t, map[string]string{"server.js": ""})
	link := filepath.Join(t.TempDir(), "app")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	files, _, err := ListFiles(link)
	if err != nil || !reflect.DeepEqual(rels(files), []string{"server.js"}) {
		t.Errorf("got %q, %v", rels(files), err)
	}
}

// fakeDiskImage writes a sparse file of size bytes with a GPT whose first
// partition is named name, as internal/disk lays it out.
func fakeDiskImage(t *testing.T, p, name string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 92)
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint64(hdr[72:], 2)
	ent := make([]byte, 128)
	for i, u := range utf16.Encode([]rune(name)) {
		binary.LittleEndian.PutUint16(ent[56+2*i:], u)
	}
	if _, err := f.WriteAt(hdr, 512); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(ent, 1024); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// TestListFilesLeavesOutArtefacts: nodeboot's own output inside the app dir,
// whatever its name, never goes into the image (a build run in the app dir
// with the default -o out packed the previous image into the next one).
func TestListFilesLeavesOutArtefacts(t *testing.T) {
	manifest := `{"nodeboot":"dev","imageVersion":"0123456789abcdef","kernel":{"name":"vmlinuz"}}`
	dir := project(t, map[string]string{
		"server.js":                 "",
		"out/manifest.json":         manifest,
		"out/vmlinuz":               "kernel",
		"out/initramfs.cpio":        "cpio",
		"images/v1/manifest.json":   manifest,
		"images/v1/initramfs.cpio":  "cpio",
		"dist/app.manifest.json":    manifest,
		".nodeboot-tmp-123/vmlinuz": "half written",
		"sub/.nodeboot-tmp-9.img":   "half written",
		// Not ours: kept.
		"ext/manifest.json":    `{"name":"a browser extension","version":"1"}`,
		"broken/manifest.json": "{",
		"other.manifest.json":  `{"name":"x"}`,
	})
	fakeDiskImage(t, filepath.Join(dir, "dist", "app.img"), DiskESPLabel, 256<<20)
	// A dir holding only a disk image and its manifest (-o out/disk.img).
	os.MkdirAll(filepath.Join(dir, "out2"), 0o755)
	fakeDiskImage(t, filepath.Join(dir, "out2", "disk.img"), DiskESPLabel, 256<<20)
	os.WriteFile(filepath.Join(dir, "out2", "disk.manifest.json"), []byte(manifest), 0o644)
	os.MkdirAll(filepath.Join(dir, "emptydir"), 0o755)
	fakeDiskImage(t, filepath.Join(dir, "data.img"), "someone-else", 256<<20)
	got, _, err := ListFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	// dist/ and sub/ hold nothing but artefacts, so they go too.
	want := []string{"broken", "broken/manifest.json", "data.img", "emptydir", "ext", "ext/manifest.json", "images",
		"other.manifest.json", "server.js"}
	if !reflect.DeepEqual(rels(got), want) {
		t.Errorf("got  %q\nwant %q", rels(got), want)
	}
}

// FuzzFirstPartitionName: the GPT probe reads any big file of an app dir.
func FuzzFirstPartitionName(f *testing.F) {
	img := make([]byte, 2048)
	copy(img[512:], "EFI PART")
	binary.LittleEndian.PutUint64(img[512+72:], 2)
	for i, u := range utf16.Encode([]rune(DiskESPLabel)) {
		binary.LittleEndian.PutUint16(img[1024+56+2*i:], u)
	}
	f.Add(img)
	f.Add([]byte("EFI PART"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name := firstPartitionName(bytes.NewReader(b))
		if len(name) > 36*3 {
			t.Errorf("name of %d bytes from a 36-unit field", len(name))
		}
	})
}
