// Package filedigest gives the SHA-256 of a file without reading it again
// when it has not changed since it was last hashed. Every build describes
// node (~100 MB), PID 1, the libraries and the kernel by their digests
// (the image id covers them), and hashing them all again took a third of a
// warm rebuild (issue 15).
//
// A digest is remembered under the file's identity: its path, device,
// inode, size, modification and status-change times. Any write to the file
// changes its ctime, which no unprivileged program can set back, and
// replacing it changes its inode, so a remembered digest is never one of
// other bytes. A file changed within the last few seconds is hashed but not
// remembered: a write in the same clock tick as the hash would otherwise
// leave the identity unchanged (git's "racily clean" entries).
package filedigest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
)

// Dir is where digests are remembered; "" = <user cache>/nodeboot/digests.
// Tests point it elsewhere.
var Dir = ""

// Settle is how long after its last change a file's digest may be
// remembered; tests set it to 0.
var Settle = 3 * time.Second

// Sum returns the hex SHA-256 and the size of the file at p.
func Sum(p string) (sum string, size int64, err error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", 0, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", 0, err
	}
	key, ok := identity(abs, fi)
	dir := dirPath()
	if ok && dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, key)); err == nil && validHex(b) {
			return string(b), fi.Size(), nil
		}
	}
	sum, size, err = hashFile(abs)
	if err != nil {
		return "", 0, err
	}
	// Stat again: a file written while it was read is not remembered.
	after, err := os.Stat(abs)
	if err != nil || after.Size() != size || !after.ModTime().Equal(fi.ModTime()) {
		return sum, size, nil
	}
	if ok && dir != "" && time.Since(changed(fi)) > Settle {
		// A digest that cannot be remembered only costs a hash next time.
		if os.MkdirAll(dir, 0o755) == nil {
			_ = renameio.WriteFile(filepath.Join(dir, key), []byte(sum), 0o644)
		}
	}
	return sum, size, nil
}

// Recall returns what Remember stored about the file at p under kind, if
// the file is unchanged since: a fact that depends on its bytes alone (the
// version a node binary prints).
func Recall(p, kind string) (string, bool) {
	_, _, key, ok := lookup(p, kind)
	if !ok {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(dirPath(), key))
	if err != nil || len(b) == 0 || len(b) > 4096 {
		return "", false
	}
	return string(b), true
}

// Remember stores value about the file at p under kind, unless the file
// changed a moment ago (see Settle).
func Remember(p, kind, value string) {
	_, fi, key, ok := lookup(p, kind)
	if !ok || value == "" || len(value) > 4096 || time.Since(changed(fi)) <= Settle {
		return
	}
	if dir := dirPath(); os.MkdirAll(dir, 0o755) == nil {
		_ = renameio.WriteFile(filepath.Join(dir, key), []byte(value), 0o644)
	}
}

func lookup(p, kind string) (string, fs.FileInfo, string, bool) {
	abs, err := filepath.Abs(p)
	if err != nil || dirPath() == "" {
		return "", nil, "", false
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", nil, "", false
	}
	key, ok := identity(abs+"\x00"+kind, fi)
	return abs, fi, key, ok
}

func dirPath() string {
	if Dir != "" {
		return Dir
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(c, "nodeboot", "digests")
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// keyOf turns the identity's fields into a file name.
func keyOf(abs string, fields ...int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", abs)
	for _, f := range fields {
		fmt.Fprintf(h, "%d\x00", f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func validHex(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	_, err := hex.DecodeString(string(b))
	return err == nil
}

// changed is the later of the file's modification and status-change times.
func changed(fi fs.FileInfo) time.Time {
	c := ctime(fi)
	if c.After(fi.ModTime()) {
		return c
	}
	return fi.ModTime()
}
