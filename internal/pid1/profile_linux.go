package pid1

import (
	"bytes"
	"encoding/base64"
	"os"
	"runtime/pprof"
	"strings"
	"sync"

	"github.com/nodeboot/nodeboot/internal/boot"
)

// The boot profile: with nodeboot.cpuprofile on the kernel command line,
// PID 1 records a Go CPU profile of itself from its start until its first
// app listens and prints it on the console, base64 between two marker
// lines, for `go tool pprof`. It answers "what does the init spend the
// CPU on while node starts", which on a one-CPU VM is time node waits.
const (
	profileArg   = "nodeboot.cpuprofile"
	ProfileBegin = "nodeboot: cpu profile begin"
	ProfileEnd   = "nodeboot: cpu profile end"
)

var bootProfile struct {
	once sync.Once
	buf  *bytes.Buffer
}

// startBootProfile starts the profile if the command line asks for it.
func startBootProfile() {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil || !hasArg(string(b), profileArg) {
		return
	}
	buf := &bytes.Buffer{}
	if pprof.StartCPUProfile(buf) == nil {
		bootProfile.buf = buf
	}
}

func hasArg(cmdline, arg string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == arg {
			return true
		}
	}
	return false
}

// stopBootProfile prints the profile once, if one runs.
func stopBootProfile(log *boot.Logger) {
	if bootProfile.buf == nil {
		return
	}
	bootProfile.once.Do(func() {
		pprof.StopCPUProfile()
		w := log.Writer()
		w.Write([]byte(ProfileBegin + "\n"))
		enc := base64.StdEncoding.EncodeToString(bootProfile.buf.Bytes())
		for len(enc) > 0 {
			n := min(len(enc), 76)
			w.Write([]byte(enc[:n] + "\n"))
			enc = enc[n:]
		}
		w.Write([]byte(ProfileEnd + "\n"))
	})
}
