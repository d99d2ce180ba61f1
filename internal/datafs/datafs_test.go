package datafs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestProbe(t *testing.T) {
	zeros := make([]byte, 2<<20)
	ext := make([]byte, 2<<20)
	ext[1024+0x38], ext[1024+0x39] = 0x53, 0xef
	scribbled := make([]byte, 2<<20)
	copy(scribbled[1024:], bytes.Repeat([]byte("garbage!"), 64))
	for _, c := range []struct {
		name string
		b    []byte
		want State
	}{
		{"zeros", zeros, Empty},
		{"ext4 magic", ext, Ext4},
		{"scribbled", scribbled, Unknown},
		{"short zeros", make([]byte, 4096), Empty},
		{"empty device", nil, Unknown},
	} {
		got, err := Probe(bytes.NewReader(c.b))
		if err != nil || got != c.want {
			t.Errorf("%s: Probe = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestFormatThenProbe(t *testing.T) {
	p := filepath.Join(t.TempDir(), "data.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if s, _ := Probe(f); s != Empty {
		t.Fatalf("new file probes as %v", s)
	}
	if err := Format(f, 64<<20); err != nil {
		t.Fatal(err)
	}
	if s, _ := Probe(f); s != Ext4 {
		t.Fatalf("formatted file probes as %v", s)
	}
}

func TestFindByLabel(t *testing.T) {
	sys := t.TempDir()
	for dev, uevent := range map[string]string{
		"vda":  "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda2": "MAJOR=253\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=nodeboot-root-a\n",
		"vda4": "MAJOR=253\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=nodeboot-data\n",
	} {
		d := filepath.Join(sys, "class", "block", dev)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "uevent"), []byte(uevent), 0o644)
	}
	got, err := FindByLabel(sys, "/dev", Label)
	if err != nil || got != "/dev/vda4" {
		t.Errorf("FindByLabel = %q, %v", got, err)
	}
	if _, err := FindByLabel(sys, "/dev", "nope"); err == nil {
		t.Error("found a partition that does not exist")
	}
}

func FuzzProbe(f *testing.F) {
	f.Add(make([]byte, 2048))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Probe(bytes.NewReader(b))
	})
}
