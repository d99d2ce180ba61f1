package follow

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// StateFile holds the follower's record across reboots.
type StateFile interface {
	// Load returns the record, or an error wrapping fs.ErrNotExist when
	// there is none yet.
	Load() ([]byte, error)
	// Save replaces the record atomically.
	Save(b []byte) error
}

// persisted is the record: the node's seed (drawn once, so it keeps its
// place in every rollout), the digest it refused, and what it applied.
type persisted struct {
	Seed         float64 `json:"seed"`
	Failed       string  `json:"failed,omitempty"`
	FailedReason string  `json:"failedReason,omitempty"`
	Applied      string  `json:"applied,omitempty"`
	Version      string  `json:"version,omitempty"`
}

// load reads the record; a missing or damaged one starts over with a new
// seed (said on the console), which costs at worst one retry of a refused
// digest and a new place in rollouts.
func (f *Follower) load() persisted {
	var p persisted
	if f.cfg.State != nil {
		b, err := f.cfg.State.Load()
		switch {
		case err == nil:
			if json.Unmarshal(b, &p) == nil && p.Seed >= 0 && p.Seed < 1 && !math.IsNaN(p.Seed) {
				return p
			}
			f.cfg.Log("follow: the follower's record is damaged; starting over with a new seed")
			p = persisted{}
		case !errors.Is(err, fs.ErrNotExist):
			f.cfg.Log("follow: reading the follower's record: %v; starting over with a new seed", err)
		}
	}
	p.Seed = f.cfg.Rand.Float64()
	f.saved = p
	f.save()
	return p
}

func (f *Follower) save() {
	if f.cfg.State == nil {
		return
	}
	b, _ := json.Marshal(&f.saved)
	if err := f.cfg.State.Save(b); err != nil {
		// The follower goes on; a reboot may retry a refused digest once.
		f.cfg.Log("follow: saving the follower's record: %v", err)
	}
}

// File is a StateFile at a path (on /data), written atomically and
// readable by root only.
type File string

func (p File) Load() ([]byte, error) { return os.ReadFile(string(p)) }

func (p File) Save(b []byte) error {
	if err := os.MkdirAll(filepath.Dir(string(p)), 0o700); err != nil {
		return err
	}
	return renameio.WriteFile(string(p), b, 0o600)
}
