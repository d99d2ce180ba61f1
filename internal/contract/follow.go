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
	// PullCredentials: the node holds credentials for the registry
	// (FollowAuthFile); never what they are.
	PullCredentials bool `json:"pullCredentials,omitempty"`
}

// Behind reports whether the node does not run what its tag names.
func (f *FollowStatus) Behind() bool { return f.Target != "" && f.Target != f.Applied }

// FollowAuthFile is where a node keeps the pull credentials of the
// registry it follows (RegistryCredentials as JSON, mode 0400, root's): on
// /data, never in the image, so that an OS update pushed to a registry or
// copied to a stick carries none, and rotating them needs no new image.
// Set with PUT PathFollowAuth (`nodeboot registry login`); read by PID 1
// alone (root's file in a root-only directory; an app's sandbox reaches
// only its own code and state directories anyway).
const FollowAuthFile = "/data/follow/auth.json"

// PathFollowAuth: PUT sets the followed registry's pull credentials
// (body: RegistryCredentials), DELETE removes them.
const PathFollowAuth = "/v1/follow/auth"

// MaxRegistryCredentialsBytes bounds PUT PathFollowAuth's body.
const MaxRegistryCredentialsBytes = 16 << 10

// RegistryCredentials are a registry's pull credentials as a Docker config
// holds them: a user name and password (or token), or an identity token.
type RegistryCredentials struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// Empty reports whether c holds no credential at all.
func (c RegistryCredentials) Empty() bool { return c == RegistryCredentials{} }

// FollowAuthResult answers PUT and DELETE PathFollowAuth; it never carries
// the credentials.
type FollowAuthResult struct {
	Registry string `json:"registry"`
	// Checked: the registry accepted the credentials when the node tried
	// them; false when it could not be reached (Note says why). Credentials
	// the registry refuses are not stored (422).
	Checked bool   `json:"checked"`
	Note    string `json:"note,omitempty"`
}
