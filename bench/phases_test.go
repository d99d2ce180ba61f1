package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// realConsole is an excerpt of a real boot of examples/hello under QEMU
// (TCG): the kernel's first lines, the initramfs unpack, the init's markers,
// the app's own output and the power-off.
func realConsole(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/console.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func us(n int64) time.Duration { return time.Duration(n) * time.Microsecond }

// synth builds a console from "seconds message" pairs.
func synth(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

const (
	kInit    = "[    0.500000] nodeboot: init started (pid 1)"
	kNet     = "[    0.600000] nodeboot: network configured: eth0 10.0.2.15/24"
	kStarted = "[    0.700000] nodeboot: hello: started (pid 66)"
	kListen  = "[    1.000000] nodeboot: app hello listening on port 8080"
)

func TestParsePhases(t *testing.T) {
	realCon := realConsole(t)
	realMarks := Marks{
		UnpackStart: us(1_790_225), UnpackEnd: us(4_989_197), HasUnpack: true,
		Init: us(5_387_315), Network: us(5_662_255), AppStarted: us(5_799_263), Listening: us(7_400_575),
	}
	simple := Marks{Init: 500 * time.Millisecond, Network: 600 * time.Millisecond, AppStarted: 700 * time.Millisecond, Listening: time.Second}
	tests := []struct {
		name    string
		console string
		app     string
		want    Marks
		wantErr string // substring; "" = no error
	}{
		{name: "real boot", console: realCon, app: "hello", want: realMarks},
		{name: "CRLF line endings", console: strings.ReplaceAll(realCon, "\n", "\r\n"), app: "hello", want: realMarks},
		{name: "no unpack lines", console: synth(kInit, kNet, kStarted, kListen), app: "hello", want: simple},
		{
			name: "older kernel wording",
			console: synth("[    0.100000] Trying to unpack rootfs image as initramfs...",
				"[    0.400000] Freeing initrd memory: 35724K", kInit, kNet, kStarted, kListen),
			app:  "hello",
			want: Marks{UnpackStart: 100 * time.Millisecond, UnpackEnd: 400 * time.Millisecond, HasUnpack: true, Init: simple.Init, Network: simple.Network, AppStarted: simple.AppStarted, Listening: simple.Listening},
		},
		{
			name:    "unpack start without end is left out",
			console: synth("[    0.100000] Unpacking initramfs...", kInit, kNet, kStarted, kListen),
			app:     "hello",
			want:    Marks{UnpackStart: 100 * time.Millisecond, Init: simple.Init, Network: simple.Network, AppStarted: simple.AppStarted, Listening: simple.Listening},
		},
		{
			// The init may start the apps before the DHCP lease is in.
			name:    "network configured after the app started",
			console: synth(kInit, "[    0.550000] nodeboot: hello: started (pid 60)", kNet, kListen),
			app:     "hello",
			want:    Marks{Init: simple.Init, Network: simple.Network, AppStarted: 550 * time.Millisecond, Listening: simple.Listening},
		},
		{
			name: "a restarted app: the first start counts",
			console: synth(kInit, kNet, kStarted, kListen,
				"[    2.000000] nodeboot: hello: exited with status 1 after 1.3s",
				"[    3.000000] nodeboot: hello: started (pid 70)",
				"[    3.500000] nodeboot: app hello listening on port 8080"),
			app:  "hello",
			want: simple,
		},
		{
			name: "app output cannot forge a marker",
			console: synth(kInit, kNet, kStarted,
				"hello: [    0.710000] nodeboot: app hello listening on port 8080",
				" [    0.720000] nodeboot: app hello listening on port 8080",
				kListen),
			app:  "hello",
			want: simple,
		},
		{
			name: "another app with a longer name does not match",
			console: synth(kInit, kNet,
				"[    0.650000] nodeboot: hello2: started (pid 60)", kStarted,
				"[    0.900000] nodeboot: app hello2 listening on port 8081", kListen),
			app:  "hello",
			want: simple,
		},
		{
			name:    "markers of a different app",
			console: synth(kInit, kNet, kStarted, kListen),
			app:     "api",
			wantErr: `no "api: started", "app api listening" marker`,
		},
		{
			name:    "no listening line (a boot cut short)",
			console: synth(kInit, kNet, kStarted),
			app:     "hello",
			wantErr: `no "app hello listening" marker`,
		},
		{
			name:    "kernel panic before the init",
			console: synth("[    0.100000] Unpacking initramfs...", "[    0.900000] Kernel panic - not syncing: VFS: Unable to mount root fs"),
			app:     "hello",
			wantErr: `no "init started", "network configured", "hello: started", "app hello listening" marker`,
		},
		{name: "empty console", console: "", app: "hello", wantErr: "no \"init started\""},
		{
			name:    "markers out of order",
			console: synth(kInit, kNet, "[    0.900000] nodeboot: hello: started (pid 66)", "[    0.800000] nodeboot: app hello listening on port 8080"),
			app:     "hello",
			wantErr: "out of order",
		},
		{
			name:    "unpack ends after the init started",
			console: synth("[    0.100000] Unpacking initramfs...", "[    0.550000] Freeing initrd memory: 1K", kInit, kNet, kStarted, kListen),
			app:     "hello",
			wantErr: "out of order",
		},
		{
			name: "malformed stamps are ignored",
			console: synth("[    x.500000] nodeboot: init started (pid 1)", "[0.400000 nodeboot: init started",
				"[.400000] nodeboot: init started", "[    1.] nodeboot: init started", "[", "]",
				kInit, kNet, kStarted, kListen),
			app:  "hello",
			want: simple,
		},
		{
			name:    "a line cut off mid-stamp",
			console: synth(kInit, kNet, kStarted, "[    1.00"),
			app:     "hello",
			wantErr: "listening",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePhases(tt.console, tt.app)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Marks != tt.want {
				t.Errorf("marks = %+v\nwant    %+v", p.Marks, tt.want)
			}
			m := tt.want
			want := Phases{
				Marks:             m,
				KernelToInit:      m.Init,
				InitToNetwork:     m.Network - m.Init,
				InitToApp:         m.AppStarted - m.Init,
				NetworkToApp:      m.AppStarted - m.Network,
				AppToListening:    m.Listening - m.AppStarted,
				KernelToListening: m.Listening,
			}
			if m.HasUnpack {
				want.Unpack = m.UnpackEnd - m.UnpackStart
			}
			if p != want {
				t.Errorf("phases = %+v\nwant     %+v", p, want)
			}
		})
	}
}

// TestParsePhasesRealNumbers spells out the real boot's phases, as the
// report shows them.
func TestParsePhasesRealNumbers(t *testing.T) {
	p, err := ParsePhases(realConsole(t), "hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"kernel → init started", p.KernelToInit, us(5_387_315)},
		{"initramfs unpack", p.Unpack, us(3_198_972)},
		{"init → network configured", p.InitToNetwork, us(274_940)},
		{"init → hello: started", p.InitToApp, us(411_948)},
		{"network configured → hello: started", p.NetworkToApp, us(137_008)},
		{"hello: started → listening", p.AppToListening, us(1_601_312)},
		{"kernel → listening", p.KernelToListening, us(7_400_575)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseStamp(t *testing.T) {
	tests := []struct {
		line string
		ts   time.Duration
		msg  string
		ok   bool
	}{
		{"[    5.861258] nodeboot: network configured: eth0 10.0.2.15/24", us(5_861_258), "nodeboot: network configured: eth0 10.0.2.15/24", true},
		{"[    0.000000] Linux version 7.1.2", 0, "Linux version 7.1.2", true},
		{"[12345.000001] x", 12345*time.Second + time.Microsecond, "x", true},
		{"[1.5] short fraction", 1500 * time.Millisecond, "short fraction", true},
		{"[1.1234567891] more than nanoseconds", time.Second + 123456789, "more than nanoseconds", true},
		{"[    1.000000]", time.Second, "", true},
		{"[    1.000000]no space", time.Second, "no space", true},
		{"[999999999.999999] largest", 999999999*time.Second + us(999_999), "largest", true},
		{"[1000000000.000000] too large", 0, "", false},
		{"[99999999999999999999999.0] overflow", 0, "", false},
		{" [    1.000000] leading space", 0, "", false},
		{"hello: [    1.000000] app output", 0, "", false},
		{"[    1.] no fraction", 0, "", false},
		{"[    .5] no seconds", 0, "", false},
		{"[    1,5] comma", 0, "", false},
		{"[    1.5 unterminated", 0, "", false},
		{"[    -1.000000] negative", 0, "", false},
		{"", 0, "", false},
		{"[", 0, "", false},
	}
	for _, tt := range tests {
		ts, msg, ok := parseStamp(tt.line)
		if ts != tt.ts || msg != tt.msg || ok != tt.ok {
			t.Errorf("parseStamp(%q) = %v, %q, %v; want %v, %q, %v", tt.line, ts, msg, ok, tt.ts, tt.msg, tt.ok)
		}
	}
}

// FuzzParsePhases feeds the parser arbitrary consoles: the guest's serial
// output is untrusted bytes. It must not panic, and whatever it accepts must
// be consistent: markers in order, durations the differences of the marks.
func FuzzParsePhases(f *testing.F) {
	f.Add([]byte(realConsole(f)), "hello")
	f.Add([]byte(synth(kInit, kNet, kStarted, kListen)), "hello")
	f.Add([]byte(synth("[    0.100000] Unpacking initramfs...", "[    0.400000] Freeing initrd memory: 1K", kInit, kNet, kStarted, kListen)), "hello")
	f.Add([]byte("[999999999.999999] nodeboot: init started\n[1.0] nodeboot: network configured\n"), "hello")
	f.Add([]byte("\x00[\xff\n[  1.000000] nodeboot: : started (pid \n"), "")
	f.Fuzz(func(t *testing.T, console []byte, app string) {
		p, err := ParsePhases(string(console), app)
		for _, line := range strings.Split(string(console), "\n") {
			if ts, _, ok := parseStamp(line); ok && (ts < 0 || ts >= (maxStampSeconds+1)*time.Second) {
				t.Fatalf("parseStamp(%q) = %v, out of range", line, ts)
			}
		}
		if err != nil {
			if p != (Phases{}) {
				t.Fatalf("error %v with non-zero phases %+v", err, p)
			}
			return
		}
		m := p.Marks
		if m.Init < 0 || m.Network < m.Init || m.AppStarted < m.Init || m.Listening < m.AppStarted {
			t.Fatalf("accepted marks out of order: %+v", m)
		}
		if m.HasUnpack && (m.UnpackStart < 0 || m.UnpackEnd < m.UnpackStart || m.Init < m.UnpackEnd) {
			t.Fatalf("accepted unpack marks out of order: %+v", m)
		}
		if !m.HasUnpack && p.Unpack != 0 {
			t.Fatalf("unpack %v without unpack marks", p.Unpack)
		}
		if p.KernelToInit != m.Init || p.InitToNetwork != m.Network-m.Init || p.InitToApp != m.AppStarted-m.Init ||
			p.NetworkToApp != m.AppStarted-m.Network || p.AppToListening != m.Listening-m.AppStarted || p.KernelToListening != m.Listening {
			t.Fatalf("phases %+v do not follow from the marks", p)
		}
		for _, d := range []time.Duration{p.KernelToInit, p.Unpack, p.InitToNetwork, p.InitToApp, p.AppToListening, p.KernelToListening} {
			if d < 0 {
				t.Fatalf("negative phase in %+v", p)
			}
		}
	})
}
