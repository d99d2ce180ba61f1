package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	report := func(extra string) string {
		return `Running 10s test @ http://127.0.0.1:4000/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.07ms    3.12ms  40.12ms   80.00%
    Req/Sec   665.12     50.00   700.00     70.00%
  6651 requests in 10.00s, 1.20MB read
` + extra + `Requests/sec:    665.08
Transfer/sec:    122.89KB
`
	}
	for _, tc := range []struct {
		name string
		in   string
		want float64
		ok   bool
	}{
		{"clean", report(""), 665.08, true},
		{"connect errors only", report("  Socket errors: connect 3, read 0, write 0, timeout 0\n"), 665.08, true},
		{"read errors", report("  Socket errors: connect 0, read 5, write 0, timeout 0\n"), 0, false},
		{"timeouts", report("  Socket errors: connect 0, read 0, write 0, timeout 2\n"), 0, false},
		{"non-2xx", report("  Non-2xx or 3xx responses: 12\n"), 0, false},
		{"no figure", "unable to connect to 127.0.0.1:4000 Connection refused\n", 0, false},
		{"garbage figure", "Requests/sec: lots\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if got != tc.want {
				t.Errorf("rps = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add("Requests/sec: 12.5\n")
	f.Add("  Socket errors: connect 0, read 1\nRequests/sec: 1\n")
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := parseWrk(s); err == nil && (v < 0 || v > 1e12) {
			t.Fatalf("accepted %v", v)
		}
	})
}

func TestMirror(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		deb822   bool
		want     string
	}{
		{"list", "# comment\ndeb http://mirror.example/debian/ bookworm main\n", false, "http://mirror.example/debian"},
		{"list with options, security first", "deb http://sec.example/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] https://m.example/debian trixie main\n", false, "https://m.example/debian"},
		{"list third party only", "deb https://deb.example.com/node_20.x nodistro main\n", false, ""},
		{"list deb-src only", "deb-src http://m.example/debian bookworm main\n", false, ""},
		{"list unterminated options", "deb [arch=amd64 http://m.example/debian bookworm\n", false, ""},
		{"deb822", "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\n", true, "http://m.example/debian"},
		{"deb822 disabled", "Types: deb\nEnabled: no\nURIs: http://m.example/debian\nSuites: bookworm\n", true, ""},
		{"deb822 updates only", "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm-updates\n", true, ""},
		{"deb822 source only", "Types: deb-src\nURIs: http://m.example/debian\nSuites: bookworm\n", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if tc.deb822 {
				got = mirrorFromDeb822(tc.in)
			} else {
				got = mirrorFromList(tc.in)
			}
			if got != tc.want {
				t.Errorf("mirror = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzMirror(f *testing.F) {
	f.Add("deb [a=b] http://m/debian bookworm main\n")
	f.Add("Types: deb\nURIs: http://m/debian\nSuites: stable\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range []string{mirrorFromList(s), mirrorFromDeb822(s)} {
			if m != "" && !strings.HasPrefix(m, "http") {
				t.Fatalf("mirror %q is not a URL", m)
			}
		}
	})
}

func TestBisectMiB(t *testing.T) {
	for _, tc := range []struct {
		name               string
		lo, hi, need, max  int
		pass, fail, maxTry int
	}{
		{"initramfs-like", 64, 512, 320, 10, 320, 304, 6},
		{"peer-like", 64, 512, 120, 10, 128, 112, 6},
		{"lo already answers", 64, 512, 10, 10, 64, 0, 1},
		{"needs all", 64, 512, 512, 10, 512, 496, 6},
		{"bounded", 64, 512, 320, 3, 400, 288, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tried := map[int]bool{}
			pass, fail, tries := bisectMiB(tc.lo, tc.hi, 16, tc.max, func(mib int) bool {
				if tried[mib] {
					t.Errorf("%d MiB tried twice", mib)
				}
				if (mib-tc.lo)%16 != 0 {
					t.Errorf("%d MiB is off the 16 MiB grid from %d", mib, tc.lo)
				}
				tried[mib] = true
				return mib >= tc.need
			})
			if pass != tc.pass || fail != tc.fail {
				t.Errorf("bisect = pass %d, fail %d; want %d, %d", pass, fail, tc.pass, tc.fail)
			}
			if tries > tc.maxTry || tries != len(tried) {
				t.Errorf("tries = %d (distinct %d), want at most %d", tries, len(tried), tc.maxTry)
			}
		})
	}
}

func TestMarkerStamp(t *testing.T) {
	console := "SeaBIOS\n[    0.000000] Linux version 7.1\nhello: [    0.1] Run /sbin/init as init process (fake)\n[    2.500000] Run /sbin/init as init process\n[    3.000000] Run /sbin/init as init process\n"
	if got, ok := markerStamp(console, "Run /sbin/init as init process"); !ok || got != 2500*time.Millisecond {
		t.Errorf("markerStamp = %v, %v; want 2.5s", got, ok)
	}
	if _, ok := markerStamp(console, "floor: init started"); ok {
		t.Error("found a marker that is not there")
	}
	if _, ok := markerStamp(console, ""); ok {
		t.Error("an empty marker matched")
	}
}

func FuzzMarkerStamp(f *testing.F) {
	f.Add("[    1.000000] floor: init started\n")
	f.Fuzz(func(t *testing.T, s string) {
		if d, ok := markerStamp(s, "floor: init started"); ok && d < 0 {
			t.Fatalf("negative stamp %v", d)
		}
	})
}

func TestParseMiB(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"512M", 512, true}, {"1G", 1024, true}, {"256", 256, true}, {"512m", 512, true},
		{"", 0, false}, {"0M", 0, false}, {"-5M", 0, false}, {"1.5G", 0, false}, {"12MB", 0, false},
	} {
		got, err := parseMiB(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMiB(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestSelectSystems(t *testing.T) {
	got, err := selectSystems("debian, initramfs")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "initramfs" || got[1].Name != "debian" {
		t.Errorf("selectSystems keeps the harness's order: got %v", got)
	}
	if _, err := selectSystems(defaultSystems); err != nil {
		t.Errorf("default systems: %v", err)
	}
	if _, err := selectSystems("initramfs,ubuntu"); err == nil || !strings.Contains(err.Error(), "unknown system ubuntu") || !strings.Contains(err.Error(), "floor") {
		t.Errorf("unknown system: err = %v", err)
	}
	if _, err := selectSystems(" , "); err == nil {
		t.Error("an empty list was accepted")
	}
}

// TestFloorFor: a system is held against the floor that boots its own
// kernel, and against the first floor when no such floor ran.
func TestFloorFor(t *testing.T) {
	floor := &System{Name: "floor", Kind: kindFloor}
	vmFloor := &System{Name: "floor-vmkernel", Kind: kindFloor, KernelName: "nodeboot-vm"}
	disk := &System{Name: "disk", Kind: kindNodeboot}
	vmDisk := &System{Name: "disk-vmkernel", Kind: kindNodeboot, KernelName: "nodeboot-vm"}
	pcDisk := &System{Name: "disk-pckernel", Kind: kindNodeboot, KernelName: "nodeboot-pc"}
	r := &Report{Systems: []*System{disk, floor, vmDisk, vmFloor, pcDisk}}
	for _, tc := range []struct {
		b, want *System
	}{{disk, floor}, {vmDisk, vmFloor}, {pcDisk, floor}} {
		if got := r.floorFor(tc.b, r.first(kindFloor)); got != tc.want {
			t.Errorf("floorFor(%s) = %s, want %s", tc.b.Name, got.Name, tc.want.Name)
		}
	}
	r = &Report{Systems: []*System{vmDisk, floor}}
	if got := r.floorFor(vmDisk, floor); got != floor {
		t.Errorf("without a vm floor: floorFor = %s, want floor", got.Name)
	}
}
