package pid1

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/watchdog"
)

// watchdogTimeout is what PID 1 asks of the hardware watchdog: long enough
// that a loaded TCG guest never misses it, short enough that a hung trial
// boot gives up within a minute or so.
const watchdogTimeout = 60 * time.Second

// armWatchdog arms the hardware watchdog, when the machine has one, and
// feeds it for the node's life. A node without one says so: it still runs,
// but a hung kernel or PID 1 then needs a hand on the power switch.
func armWatchdog(log *boot.Logger) {
	dev, timeout, err := watchdog.Open(watchdog.Path, watchdogTimeout)
	if errors.Is(err, fs.ErrNotExist) {
		log.Printf("watchdog: none (no %s): a hung node is not reset by itself", watchdog.Path)
		return
	}
	if err != nil {
		log.Printf("watchdog: %v: a hung node is not reset by itself", err)
		return
	}
	log.Printf("watchdog armed: the node resets after %v without PID 1", timeout)
	goSafe("watchdog", func() { watchdog.Feed(context.Background(), dev, watchdog.Interval(timeout), log.Printf) })
}
