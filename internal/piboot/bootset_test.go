package piboot

import (
	"archive/tar"
	"bytes"
	"errors"
	"testing"
)

func TestBootSet(t *testing.T) {
	files := []BootFile{
		{Name: KernelFile, Data: []byte("kernel")},
		{Name: "config.txt", Data: ConfigTxt()},
		{Name: "overlays/uart0.dtbo", Data: []byte("dtbo")},
		{Name: "bcm2711-rpi-4-b.dtb", Data: nil},
	}
	var a, b bytes.Buffer
	if err := WriteBootSet(&a, files); err != nil {
		t.Fatal(err)
	}
	// Order does not matter: the same files give the same bytes.
	if err := WriteBootSet(&b, []BootFile{files[3], files[2], files[1], files[0]}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same files gave different archives")
	}
	got, err := ReadBootSet(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Name != "bcm2711-rpi-4-b.dtb" || got[2].Name != "overlays/uart0.dtbo" || string(got[2].Data) != "dtbo" {
		t.Errorf("read back %+v", got)
	}
	for name, bad := range map[string][]BootFile{
		"cmdline.txt":       append(files[:2:2], BootFile{Name: "cmdline.txt"}),
		"no kernel":         files[1:2],
		"dot-dot":           append(files[:2:2], BootFile{Name: "../x"}),
		"deep":              append(files[:2:2], BootFile{Name: "a/b/c"}),
		"case duplicate":    append(files[:2:2], BootFile{Name: "CONFIG.TXT"}),
		"file and dir":      append(files[:2:2], BootFile{Name: "overlays"}, BootFile{Name: "overlays/x"}),
		"space in the name": append(files[:2:2], BootFile{Name: "a b"}),
	} {
		if err := WriteBootSet(&bytes.Buffer{}, bad); !errors.Is(err, ErrBootSet) {
			t.Errorf("%s: WriteBootSet = %v", name, err)
		}
	}
	// A symlink is refused on reading.
	var s bytes.Buffer
	tw := tar.NewWriter(&s)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "config.txt", Linkname: "/etc/passwd"})
	tw.Close()
	if _, err := ReadBootSet(s.Bytes()); !errors.Is(err, ErrBootSet) {
		t.Errorf("a symlink: %v", err)
	}
}

func TestBaseCmdline(t *testing.T) {
	full := Cmdline("panic=10 quiet init=/init", 0x1234abcd, "b", false)
	if got := BaseCmdline(full); got != "panic=10 quiet init=/init" {
		t.Errorf("BaseCmdline(%q) = %q", full, got)
	}
	if again := Cmdline(BaseCmdline(full), 0x1234abcd, "b", false); again != full {
		t.Errorf("round trip: %q, want %q", again, full)
	}
}

func FuzzReadBootSet(f *testing.F) {
	var b bytes.Buffer
	WriteBootSet(&b, []BootFile{{Name: KernelFile, Data: []byte("k")}, {Name: "config.txt", Data: []byte("c")}, {Name: "overlays/a.dtbo"}})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := ReadBootSet(data)
		if err != nil {
			if !errors.Is(err, ErrBootSet) {
				t.Fatalf("error does not wrap ErrBootSet: %v", err)
			}
			return
		}
		// What was accepted writes and reads back the same.
		var out bytes.Buffer
		if err := WriteBootSet(&out, files); err != nil {
			t.Fatalf("accepted, then refused to write: %v", err)
		}
		again, err := ReadBootSet(out.Bytes())
		if err != nil || len(again) != len(files) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
