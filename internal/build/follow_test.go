package build

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nodeboot/nodeboot/internal/spec"
)

func TestFollowAuth(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"auths": {"127.0.0.1:5000": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("puller:s3cret")) + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)

	b, reg, err := followAuth(&spec.FollowConfig{Ref: "127.0.0.1:5000/shop:stable"}, authn.DefaultKeychain)
	if err != nil || reg != "127.0.0.1:5000" {
		t.Fatalf("%s %v", reg, err)
	}
	var got authn.AuthConfig
	if err := json.Unmarshal(b, &got); err != nil || got.Username != "puller" || got.Password != "s3cret" {
		t.Fatalf("auth %s (%v)", b, err)
	}
	// Another registry: none, nothing baked in.
	b, _, err = followAuth(&spec.FollowConfig{Ref: "registry.example.com/shop:stable"}, authn.DefaultKeychain)
	if err != nil || b != nil {
		t.Fatalf("%s %v", b, err)
	}
	// A broken Docker config is an error that names it.
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o600)
	if _, _, err := followAuth(&spec.FollowConfig{Ref: "127.0.0.1:5000/shop:stable"}, authn.DefaultKeychain); err == nil {
		t.Fatal("a broken Docker config was accepted")
	}
}
