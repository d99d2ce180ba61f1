package follow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Rollout is the part of a signed release that says when each node may
// apply it (Bottlerocket's waves): the fleet is cut into waves by each
// node's own stable random seed, and wave i opens AfterSeconds after Start.
// A release without waves applies everywhere at once; a paused one applies
// nowhere (promote a paused copy of a release to stop its rollout, then an
// unpaused one, or a fixed release, to go on).
//
// Its JSON form, inside the signed release:
//
//	{"start": "2026-12-03T12:00:00Z",
//	 "waves": [{"share": 0.1, "afterSeconds": 0}, {"share": 1, "afterSeconds": 3600}],
//	 "paused": false}
type Rollout struct {
	// Start is when the rollout begins, signed with the release (so a
	// node's clock, set by NTP, is all it needs).
	Start time.Time `json:"start,omitzero"`
	Waves []Wave    `json:"waves,omitempty"`
	// Paused stops the rollout: nodes that have not applied the release
	// hold until the tag moves again.
	Paused bool `json:"paused,omitempty"`
}

// Wave is one step of a rollout. Shares are cumulative: the nodes whose
// seed is below Share (and not below the previous wave's) apply it once
// AfterSeconds have passed since Start.
type Wave struct {
	Share        float64 `json:"share"`
	AfterSeconds int64   `json:"afterSeconds"`
}

const (
	// MaxWaves bounds a rollout: Bottlerocket's default plan has 4.
	MaxWaves = 64
	// maxAfter bounds a wave's delay (a year): a release that opens later
	// than that is a mistake.
	maxAfter = 366 * 24 * 3600
)

// ErrInvalidRollout is wrapped by every error about a rollout's content.
var ErrInvalidRollout = errors.New("invalid rollout")

// Check says what is wrong with r, if anything: shares strictly growing
// within (0, 1], delays not shrinking, a start when there are waves.
func (r *Rollout) Check() error {
	if len(r.Waves) == 0 {
		return nil
	}
	if len(r.Waves) > MaxWaves {
		return fmt.Errorf("%w: %d waves, at most %d", ErrInvalidRollout, len(r.Waves), MaxWaves)
	}
	if r.Start.IsZero() {
		return fmt.Errorf("%w: waves without a start time", ErrInvalidRollout)
	}
	prevShare, prevAfter := 0.0, int64(0)
	for i, w := range r.Waves {
		if math.IsNaN(w.Share) || w.Share <= prevShare || w.Share > 1 {
			return fmt.Errorf("%w: wave %d: share %v must be above the previous wave's (%v) and at most 1", ErrInvalidRollout, i, w.Share, prevShare)
		}
		if w.AfterSeconds < prevAfter || w.AfterSeconds > maxAfter {
			return fmt.Errorf("%w: wave %d: afterSeconds %d must be from the previous wave's (%d) to %d", ErrInvalidRollout, i, w.AfterSeconds, prevAfter, maxAfter)
		}
		prevShare, prevAfter = w.Share, w.AfterSeconds
	}
	return nil
}

// ParseRollout reads a rollout from a release's JSON, strictly: unknown
// keys and trailing data are refused, and the content is checked.
func ParseRollout(b []byte) (Rollout, error) {
	var r Rollout
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Rollout{}, fmt.Errorf("%w: %v", ErrInvalidRollout, err)
	}
	if dec.More() {
		return Rollout{}, fmt.Errorf("%w: data after the JSON object", ErrInvalidRollout)
	}
	if err := r.Check(); err != nil {
		return Rollout{}, err
	}
	return r, nil
}

// OpensAt is when a node with seed (in [0, 1)) may apply the release:
// its wave's time. A seed at or above the last share belongs to the last
// wave: a plan whose shares stop short of 1 still reaches every node.
// Without waves it is the zero time: at once.
func (r *Rollout) OpensAt(seed float64) time.Time {
	if len(r.Waves) == 0 {
		return time.Time{}
	}
	w := r.Waves[len(r.Waves)-1]
	for _, x := range r.Waves {
		if seed < x.Share {
			w = x
			break
		}
	}
	return r.Start.Add(time.Duration(w.AfterSeconds) * time.Second)
}
