package disk

import (
	"io"
	"os"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

func TestProbeFat(t *testing.T) {
	out := os.Getenv("PROBE")
	if out == "" {
		t.Skip()
	}
	f, _ := os.Create(out)
	f.Truncate(128 << 20)
	b := file.New(f, false)
	fs, err := fat32.Create(b, 128<<20, 0, 512, "ESP", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/EFI/BOOT", "/loader/entries", "/nodeboot/a"} {
		if err := fs.Mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	put := func(p string, r io.Reader) {
		w, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	src, _ := os.Open("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	put("/EFI/BOOT/BOOTX64.EFI", src)
	k, _ := os.Open("/usr/bin/node")
	put("/nodeboot/a/vmlinuz", io.LimitReader(k, 12<<20))
	put("/loader/loader.conf", io.LimitReader(k, 100))
	put("/loader/entries/nodeboot-a+3.conf", io.LimitReader(k, 300))
	f.Close()
}
