// Package secrets keeps the apps' secrets on the node: one file per
// secret under Dir/<app>/<name>, directories 0700 and files 0600 owned by
// root, so only PID 1 reads them; an app gets its own through its socket
// (internal/appapi), never through the file system, the image, its
// environment, logs or status. The owner sets them with `nodeboot secret`.
package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// Dir is where PID 1 keeps them: on /data, so they survive reboots and OS
// updates (and, like the app's state, not a re-flash).
const Dir = "/data/nodeboot/secrets"

// MaxSize bounds one secret's value.
const MaxSize = contract.MaxSecretBytes

// NamePattern is what a secret's name (and an app's, here) looks like.
var NamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Errors, wrapped with the reason.
var (
	ErrNotFound = errors.New("no such secret")
	ErrInvalid  = errors.New("invalid secret")
	ErrTooLarge = errors.New("secret too large")
)

// Store is the secrets under one directory.
type Store struct{ dir string }

// Open returns the store in dir, creating it (0700).
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	// A directory made earlier with a wider mode is narrowed.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return &Store{dir: dir}, nil
}

func check(app, name string) error {
	if !NamePattern.MatchString(app) {
		return fmt.Errorf("%w: app name %q", ErrInvalid, app)
	}
	if !NamePattern.MatchString(name) {
		return fmt.Errorf("%w: name %q: use letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit", ErrInvalid, name)
	}
	return nil
}

// CheckValue refuses a value the store would not keep: over MaxSize, or
// not text (secrets travel as JSON strings to the app).
func CheckValue(value []byte) error {
	if len(value) > MaxSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(value), MaxSize)
	}
	if !utf8.Valid(value) {
		return fmt.Errorf("%w: the value is not UTF-8 text: encode binary secrets (base64) and decode them in the app", ErrInvalid)
	}
	return nil
}

// Set stores app's secret name, replacing it atomically.
func (s *Store) Set(app, name string, value []byte) error {
	if err := check(app, name); err != nil {
		return err
	}
	if err := CheckValue(value); err != nil {
		return err
	}
	d := filepath.Join(s.dir, app)
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("secrets: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(d, name), value, 0o600); err != nil {
		return fmt.Errorf("secrets: storing %s of %s: %w", name, app, err)
	}
	return nil
}

// Get returns app's secret name.
func (s *Store) Get(app, name string) (string, error) {
	if err := check(app, name); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(s.dir, app, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: app %s has no secret %q", ErrNotFound, app, name)
	}
	if err != nil {
		return "", fmt.Errorf("secrets: reading %s of %s: %w", name, app, err)
	}
	return string(b), nil
}

// List returns the names of app's secrets, sorted (never their values).
func (s *Store) List(app string) ([]string, error) {
	if !NamePattern.MatchString(app) {
		return nil, fmt.Errorf("%w: app name %q", ErrInvalid, app)
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, app))
	if errors.Is(err, os.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	names := []string{}
	for _, e := range ents {
		// renameio's temporary files start with '.'; names never do.
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Remove deletes app's secret name.
func (s *Store) Remove(app, name string) error {
	if err := check(app, name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(s.dir, app, name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: app %s has no secret %q", ErrNotFound, app, name)
	}
	return err
}
