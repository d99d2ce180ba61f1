package contract

import "time"

// FollowStatus is the "follow" object of GET /v1/status on a node that
// follows a tag (nodeboot.json "follow"; internal/follow).
type FollowStatus struct {
	Ref string `json:"ref"`
	// State: "starting", "up to date", "waiting for its wave", "rollout
	// paused", "applying", "OS update on trial", "release refused",
	// "registry unreachable", "rebooting into the OS update".
	State string `json:"state"`
	// LastCheck is when the tag was last resolved.
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// Target is the digest the tag named then; Applied the last digest
	// whose release the node runs in full, Version its label.
	Target  string `json:"target,omitempty"`
	Applied string `json:"applied,omitempty"`
	Version string `json:"version,omitempty"`
	// LastError is why the target is not applied: the registry, a
	// refused or failed release.
	LastError string    `json:"lastError,omitempty"`
	Failures  int       `json:"failures,omitempty"`
	NextCheck time.Time `json:"nextCheck,omitzero"`
	WaveOpens time.Time `json:"waveOpens,omitzero"`
	Seed      float64   `json:"seed"`
}

// Behind reports whether the node does not run what its tag names.
func (f *FollowStatus) Behind() bool { return f.Target != "" && f.Target != f.Applied }

// FollowAuth is where an image keeps the pull credentials of the registry
// it follows (an authn.AuthConfig as JSON, root-only, hidden from the
// apps' sandboxes like the rest of /etc/nodeboot): written at build time
// from the build host's Docker config, read by PID 1 alone.
const FollowAuth = "/etc/nodeboot/follow/auth.json"
