package build

import (
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// followAuth returns the pull credentials a following node needs for the
// registry of ref, as the build host's Docker config (DOCKER_CONFIG,
// ~/.docker/config.json, credential helpers) gives them through kc, or nil
// when it has none (an anonymous registry).
//
// They go into the image as a root-only file because a node has no one to
// type a password and no other channel before it first follows. Whoever
// can read the image (a stolen disk, the OS update pushed to the registry)
// can read them, so they should be a pull-only token: build with
// DOCKER_CONFIG pointing at a config that holds just that (docs/follow.md).
func followAuth(f *spec.FollowConfig, kc authn.Keychain) ([]byte, string, error) {
	tag, err := spec.ParseFollowRef(f.Ref)
	if err != nil {
		return nil, "", err
	}
	reg := tag.Context().Registry
	a, err := kc.Resolve(reg)
	if err != nil {
		return nil, "", fmt.Errorf("the pull credentials of %s from the Docker config: %w", reg.RegistryStr(), err)
	}
	if a == authn.Anonymous {
		return nil, reg.RegistryStr(), nil
	}
	cfg, err := a.Authorization()
	if err != nil {
		return nil, "", fmt.Errorf("the pull credentials of %s from the Docker config: %w", reg.RegistryStr(), err)
	}
	if *cfg == (authn.AuthConfig{}) {
		return nil, reg.RegistryStr(), nil
	}
	b, err := json.Marshal(cfg)
	return b, reg.RegistryStr(), err
}
