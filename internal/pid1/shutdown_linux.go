package pid1

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/boot"
)

// At a clean power-off /data must be unmounted, so that its journal is
// clean on the next boot: a file open for writing on it makes both the
// unmount and the read-only remount fail with EBUSY. What PID 1 itself
// holds open there for the whole boot is listed here and closed once the
// apps stopped; what could open new files there (the management API, the
// follower) stops before the apps do.

// dataFiles are the files PID 1 keeps open on /data for the whole boot:
// each app's log file, written by the supervisor's console writer.
var dataFiles struct {
	sync.Mutex
	list []io.Closer
}

// keepDataFile records f, to be closed by closeDataFiles.
func keepDataFile(f io.Closer) {
	dataFiles.Lock()
	defer dataFiles.Unlock()
	dataFiles.list = append(dataFiles.list, f)
}

// closeDataFiles closes the files keepDataFile recorded. It runs after
// supervise.StopAll, which returns once the apps' output is drained, so no
// line is lost; a line written later fails (os.ErrClosed) and still
// reaches the console, the first of the app's writers.
func closeDataFiles(log *boot.Logger) {
	dataFiles.Lock()
	list := dataFiles.list
	dataFiles.list = nil
	dataFiles.Unlock()
	for _, f := range list {
		if err := f.Close(); err != nil {
			log.Printf("closing a log file on /data: %v", err)
		}
	}
}

// stopServing stops what changes the node from outside before the apps
// stop: the management API (no deploy, restart or secret write starts
// while the node goes down; requests in flight get until timeout) and the
// follower (its downloads go to /data). Neither starts after this, even if
// their start was still waiting for the apps to listen.
func (n *node) stopServing(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n.mu.Lock()
	n.down = true
	srv := n.apiSrv
	n.mu.Unlock()
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			n.log.Printf("management API: requests still running at shutdown: %v", err)
		}
	}
	stopFollowing(ctx)
}
