package kmsg

import (
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	for _, c := range []struct {
		rec  string
		want Trap
		ok   bool
	}{
		// Linux 6.x, as printed on this project's build host.
		{"6,375,11377454956,-;traps: ill[30875] trap invalid opcode ip:5608390e512d sp:7ffd3b4f6ef0 error:0 in ill[112d,5608390e5000+1000]",
			Trap{Comm: "ill", PID: 30875, Kind: "invalid opcode", File: "ill", At: 11377454956 * time.Microsecond}, true},
		// Older kernels: no offset inside the brackets; a continuation line.
		{"6,12,5000000,-;traps: node[312] trap invalid opcode ip:7f00 sp:7ffc error:0 in libvips-cpp.so.42[7f0000000000+200000]\n SUBSYSTEM=x",
			Trap{Comm: "node", PID: 312, Kind: "invalid opcode", File: "libvips-cpp.so.42", At: 5 * time.Second}, true},
		// A thread name with brackets and spaces, no file (anonymous code).
		{"6,1,1,-;traps: a [b] c[7] trap invalid opcode ip:1 sp:2 error:0",
			Trap{Comm: "a [b] c", PID: 7, Kind: "invalid opcode", At: time.Microsecond}, true},
		// The general protection report has no "trap": not parsed.
		{"4,2,3,-;traps: node[9] general protection fault ip:1 sp:2 error:0 in libc.so.6[1+2]", Trap{}, false},
		{"6,1,1,-;random message", Trap{}, false},
		{"6,1,x,-;traps: n[1] trap invalid opcode ip:1", Trap{}, false},
		{"traps: n[1] trap invalid opcode ip:1", Trap{}, false},
		{"6,1,1,-;traps: n[x] trap invalid opcode ip:1", Trap{}, false},
		{"6,1,1,-;traps: n[1] trap invalid opcode", Trap{}, false},
	} {
		got, ok := ParseRecord(c.rec)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseRecord(%q) = %+v, %v; want %+v, %v", c.rec, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("6,375,11377454956,-;traps: ill[30875] trap invalid opcode ip:5608390e512d sp:7ffd3b4f6ef0 error:0 in ill[112d,5608390e5000+1000]")
	f.Fuzz(func(t *testing.T, rec string) {
		tr, ok := ParseRecord(rec)
		if !ok {
			return
		}
		if tr.PID <= 0 || tr.Kind == "" || tr.At < 0 {
			t.Errorf("ParseRecord(%q) = %+v", rec, tr)
		}
	})
}
