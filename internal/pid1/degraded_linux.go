package pid1

import (
	"fmt"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// A node that cannot use its configuration or its /data used to fail the
// boot, reboot after the fatal delay, fail again: an endless loop with no
// API to ask why (issue 12 item 12). It now boots degraded instead: the
// management API comes up (its credentials are separate files of the
// image), the console repeats the reason, status reports it, and the apps
// that can run do.

// degradedEvery is how often the console repeats the reason: often enough
// that whoever looks at a screen sees it without scrolling back.
const degradedEvery = 30 * time.Second

// bootSteps are the boot's fallible steps, as functions so the decision
// can be tested with fakes.
type bootSteps struct {
	readRuntime func() (*spec.Runtime, error)
	// setupData mounts /data and makes the apps' state dirs.
	setupData func(*spec.Runtime) error
	// dataTmpfs mounts an empty tmpfs on /data.
	dataTmpfs func() error
}

// prepare reads the configuration and sets up /data. It never fails the
// boot; what failed becomes the reason the node is degraded ("" if none):
//
//   - runtime.json unreadable: no app runs (which apps, as which user, with
//     which persist dirs is exactly what is unknown), the data partition
//     is not touched (a tmpfs is /data, so nothing is written under the
//     read-only root), the network is DHCP on the first link, and the API
//     runs from the image's credentials for status, logs and reboot. The
//     fix is a new image.
//   - /data read-only or failing (setupData fails): the apps run on /data
//     as it is. Not on a tmpfs: an app that finds its state gone starts
//     over (a new identity, an empty database) as if nothing were wrong,
//     what it writes would vanish at the next boot, and a tmpfs would hide
//     the deployed versions under /data/apps, silently running the image's
//     older ones. On the read-only /data an app reads its state and its
//     writes fail with an error it reports. Deploys need a writable store
//     and are refused.
func prepare(s bootSteps) (*spec.Runtime, string) {
	rt, err := s.readRuntime()
	if err != nil {
		// err names the file and says what to do (spec.ReadRuntime).
		reason := fmt.Sprintf("no app runs: %v", err)
		if terr := s.dataTmpfs(); terr != nil {
			reason += fmt.Sprintf(" (and /data: %v)", terr)
		}
		return &spec.Runtime{}, reason
	}
	if err := s.setupData(rt); err != nil {
		return rt, fmt.Sprintf("/data: %v: the apps run with /data as it is, and writing to it fails; deploys are refused; check the disk (nodeboot write a new one if it fails)", err)
	}
	return rt, ""
}

var degradedState struct {
	mu     sync.Mutex
	reason string
}

// degradedReason is "" on a healthy node; status reports it.
func degradedReason() string {
	degradedState.mu.Lock()
	defer degradedState.mu.Unlock()
	return degradedState.reason
}

// setDegraded records the reason and repeats it on the console.
func setDegraded(log *boot.Logger, reason string) {
	if reason == "" {
		return
	}
	degradedState.mu.Lock()
	degradedState.reason = reason
	degradedState.mu.Unlock()
	crash.Go("degraded notice", func() {
		for {
			log.Printf("%s%s", contract.Degraded, reason)
			time.Sleep(degradedEvery)
		}
	})
}
