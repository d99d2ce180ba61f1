package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set("web", "db", []byte("pw1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("web", "db", []byte("pw2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("web", "db"); err != nil || v != "pw2" {
		t.Fatalf("Get: %q %v", v, err)
	}
	if _, err := s.Get("other", "db"); !errors.Is(err, ErrNotFound) {
		t.Errorf("another app's: %v", err)
	}
	if names, err := s.List("web"); err != nil || strings.Join(names, ",") != "db" {
		t.Errorf("List: %q %v", names, err)
	}
	if names, err := s.List("nobody"); err != nil || len(names) != 0 {
		t.Errorf("List of none: %q %v", names, err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "web"), filepath.Join(dir, "web", "db")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want nothing for group and others", p, st.Mode())
		}
	}
	if err := s.Remove("web", "db"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("web", "db"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRefused(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		app, name string
		value     []byte
		want      error
		msg       string
	}{
		{"web", "../x", []byte("v"), ErrInvalid, "letters, digits"},
		{"web", ".hidden", []byte("v"), ErrInvalid, "letters, digits"},
		{"../etc", "x", []byte("v"), ErrInvalid, "app name"},
		{"web", "big", make([]byte, MaxSize+1), ErrTooLarge, "at most 65536"},
		{"web", "bin", []byte{0xff, 0xfe}, ErrInvalid, "base64"},
	} {
		err := s.Set(tc.app, tc.name, tc.value)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Set(%q, %q): %v, want %v with %q", tc.app, tc.name, err, tc.want, tc.msg)
		}
	}
	if err := s.Set("web", "max", make([]byte, MaxSize)); err != nil {
		t.Errorf("a value of exactly MaxSize: %v", err)
	}
}
