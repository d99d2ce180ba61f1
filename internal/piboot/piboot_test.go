package piboot

import (
	"errors"
	"strings"
	"testing"
)

func TestAutobootRoundTrip(t *testing.T) {
	for _, a := range []Autoboot{
		{TrybootAB: true, Boot: PartBootA, Try: PartBootB},
		{TrybootAB: true, Boot: PartBootB, Try: PartBootA},
		{Boot: 1},
	} {
		b := a.Format()
		if len(b) != AutobootSize {
			t.Errorf("%+v formats to %d bytes, want always %d (rewritten in place)", a, len(b), AutobootSize)
		}
		got, err := ParseAutoboot(b)
		if err != nil || got != a {
			t.Errorf("ParseAutoboot(Format(%+v)) = %+v, %v", a, got, err)
		}
	}
}

func TestParseAutoboot(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Autoboot
		err  string
	}{
		// The Raspberry Pi documentation's example.
		{in: "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n", want: Autoboot{true, 2, 3}},
		// Settings before any section apply to all; other filters are skipped.
		{in: "boot_partition=3\n[pi4]\nboot_partition=9\n", want: Autoboot{Boot: 3}},
		{in: "# comment\r\n[all]\r\nboot_partition = 2\r\n", want: Autoboot{Boot: 2}},
		{in: "[tryboot]\nboot_partition=3\n", err: "no boot_partition in [all]"},
		{in: "boot_partition=two\n", err: `boot_partition="two"`},
		{in: "boot_partition=0\n", err: "not a partition number"},
		{in: "[all\nboot_partition=2\n", err: "has no ]"},
		{in: "boot_partition\n", err: "not key=value"},
		{in: strings.Repeat("#", 513), err: "more than the firmware reads"},
	} {
		got, err := ParseAutoboot([]byte(c.in))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrAutoboot) {
				t.Errorf("ParseAutoboot(%q) = %+v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseAutoboot(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestCmdline(t *testing.T) {
	got := Cmdline("panic=10", 0xa97847d0, "b", true)
	for _, want := range []string{"console=serial0,115200", "root=PARTUUID=a97847d0-06 ", "nodeboot.data=PARTUUID=a97847d0-07", "init=/init\n", "rootwait"} {
		if !strings.Contains(got, want) {
			t.Errorf("Cmdline = %q, lacks %q", got, want)
		}
	}
	if strings.Count(got, "\n") != 1 {
		t.Errorf("Cmdline = %q: the firmware reads one line", got)
	}
}

func FuzzParseAutoboot(f *testing.F) {
	f.Add(Autoboot{TrybootAB: true, Boot: 2, Try: 3}.Format())
	f.Add([]byte("[all]\nboot_partition=2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAutoboot(b)
		if err != nil {
			return
		}
		if a.Boot < 1 || a.Boot > 63 || a.Try < 0 || a.Try > 63 {
			t.Fatalf("accepted partitions %+v", a)
		}
		// What nodeboot would write back reads the same.
		if again, err := ParseAutoboot(a.Format()); err != nil || again != a {
			t.Fatalf("Format of %+v reads back as %+v, %v", a, again, err)
		}
	})
}
