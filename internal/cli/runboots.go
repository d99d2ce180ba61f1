package cli

import (
	"fmt"
	"io"

	"github.com/nodeboot/nodeboot/internal/bootwatch"
)

// runLoopBoots is how many failed boots in a row make run stop the guest
// (internal/bootwatch): one failure can be a fluke, a panic=10 reboot
// takes a few seconds, and three are a loop the user must see.
const runLoopBoots = 3

// bootFollower follows the guest's console across its reboots for run: it
// says on stderr each time the guest boots again and how the boot before
// ended, and when the guest fails boot after boot, why to stop.
type bootFollower struct {
	stderr io.Writer
	ended  []bootwatch.Boot
	start  int // console offset of the running boot
}

// check reads the console (all of it so far) and returns why run must
// stop the guest, or "".
func (f *bootFollower) check(console string) string {
	if f.start > len(console) {
		return ""
	}
	boots := bootwatch.Split(console[f.start:])
	if len(boots) < 2 {
		return ""
	}
	for _, b := range boots[:len(boots)-1] {
		f.ended = append(f.ended, b)
		how := "it rebooted as asked"
		if b.End == bootwatch.Failed {
			how = "it failed: " + b.Reason
		}
		fmt.Fprintf(f.stderr, "nodeboot run: the guest boots again (boot %d); %s\n", len(f.ended)+1, how)
	}
	f.start += boots[len(boots)-1].Start
	return bootwatch.Loop(f.ended, runLoopBoots)
}
