package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/update"
)

// OSUpdater is the node's OS updater (internal/update's Updater).
type OSUpdater interface {
	Install(ctx context.Context, r io.Reader, o update.InstallOptions) (*update.Armed, error)
	Offset(h *ospayload.Header) int64
	RebootIntoTrial() error
}

// UpdateNode is a Node that can update its OS; OSUpdater returns nil while
// it has none.
type UpdateNode interface {
	OSUpdater() OSUpdater
}

// trialRebootDelay leaves the 202 answer time to reach the client before
// the node reboots into the trial.
const trialRebootDelay = 500 * time.Millisecond

// maxUpdateHeader bounds the body of POST /v1/update/offset: the magic,
// the manifest (at most 2 MiB) and the signature.
const maxUpdateHeader = 3 << 20

func (s *Server) osUpdater(w http.ResponseWriter) OSUpdater {
	if un, ok := s.node.(UpdateNode); ok {
		if u := un.OSUpdater(); u != nil {
			return u
		}
	}
	writeError(w, http.StatusConflict, update.ErrNoSlots.Error()+": this node cannot take OS updates; flash a disk image (`nodeboot build --format disk`, then `nodeboot write`)")
	return nil
}

// updateStatus maps the updater's errors to statuses (docs/updates.md,
// "Refusals").
func updateStatus(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ospayload.ErrUntrusted):
		return http.StatusForbidden
	case errors.Is(err, update.ErrTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, update.ErrResume):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(err, update.ErrBusy), errors.Is(err, update.ErrTrial), errors.Is(err, update.ErrNoSlots), errors.Is(err, update.ErrDowngrade):
		return http.StatusConflict
	case errors.Is(err, ospayload.ErrBadSignature), errors.Is(err, ospayload.ErrCorrupt), errors.Is(err, ospayload.ErrInvalid),
		errors.Is(err, update.ErrArch):
		return http.StatusUnprocessableEntity
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// updateOS is PUT /v1/update: the payload streams into the inactive slot,
// each chunk verified before it is written; once the slot is armed the
// node answers 202 and reboots into the trial.
func (s *Server) updateOS(w http.ResponseWriter, r *http.Request) {
	u := s.osUpdater(w)
	if u == nil {
		return
	}
	var o update.InstallOptions
	if v := r.URL.Query().Get(contract.UpdateFromParam); v != "" {
		from, err := strconv.ParseInt(v, 10, 64)
		if err != nil || from < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s=%q is not a byte offset: ask POST %s for it", contract.UpdateFromParam, v, contract.PathUpdateOffset))
			return
		}
		o.From = from
	}
	o.AllowDowngrade = r.URL.Query().Get(contract.UpdateDowngradeParam) == "1"
	// The upload takes as long as it takes; only stalls are bounded.
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	body := &idleReader{r: r.Body, rc: rc}
	armed, err := u.Install(r.Context(), body, o)
	if err != nil {
		s.log("management API: OS update refused: %v", err)
		writeError(w, updateStatus(err), err.Error())
		return
	}
	s.log("management API: OS update %s armed in slot %s; rebooting into its trial", armed.Image, armed.Slot)
	writeJSON(w, http.StatusAccepted, contract.UpdateAccepted{
		Slot: armed.Slot, Image: wireImage(armed.Image), From: wireImage(armed.From), Entry: armed.Entry,
	})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	crash.Go("trial reboot", func() {
		time.Sleep(trialRebootDelay)
		if err := u.RebootIntoTrial(); err != nil {
			s.log("management API: rebooting into the trial: %v", err)
		}
	})
}

// updateOffset is POST /v1/update/offset: how much of the payload whose
// header is the body the node holds, so an interrupted upload resumes.
func (s *Server) updateOffset(w http.ResponseWriter, r *http.Request) {
	u := s.osUpdater(w)
	if u == nil {
		return
	}
	h, err := ospayload.ReadHeader(http.MaxBytesReader(w, r.Body, maxUpdateHeader))
	if err != nil {
		writeError(w, updateStatus(err), fmt.Sprintf("the body is not an OS update payload's header: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, contract.UpdateOffset{Offset: u.Offset(h), Total: h.Manifest.BodySize()})
}

func wireImage(i update.Image) contract.UpdateImage {
	return contract.UpdateImage{ID: i.ID, Version: i.Version, Built: i.Built}
}

var (
	descSlot = prometheus.NewDesc("nodeboot_os_slot", "1 for each root slot's state (good, trial, failed, receiving, empty); booted says which slot runs.",
		[]string{"slot", "state", "booted", "image"}, nil)
	descUpdateOK = prometheus.NewDesc("nodeboot_os_update_last_ok", "1 if the last OS update was committed, 0 if it failed; absent before the first.", []string{"image"}, nil)
)

// collectOS adds the root slots and the last update's outcome.
func collectOS(ch chan<- prometheus.Metric, os *contract.OSStatus) {
	if os == nil {
		return
	}
	for _, sl := range os.Slots {
		img := ""
		if sl.Image != nil {
			img = sl.Image.ID
		}
		ch <- prometheus.MustNewConstMetric(descSlot, prometheus.GaugeValue, 1, sl.Name, sl.State, strconv.FormatBool(sl.Booted), img)
	}
	if l := os.Last; l != nil {
		v := 0.0
		if l.OK {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descUpdateOK, prometheus.GaugeValue, v, l.Image.ID)
	}
}
