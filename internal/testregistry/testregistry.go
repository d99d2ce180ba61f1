// Package testregistry runs the open-source Docker Distribution registry
// (github.com/distribution/distribution/v3) as the real program for tests:
// built once from the Go module proxy into the user cache (go install, so
// nodeboot's own go.mod never links it), started on 127.0.0.1 with a
// temporary config and storage, optionally behind htpasswd authentication.
// A QEMU guest on user networking reaches it at 10.0.2.2:<port>.
package testregistry

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Version is the registry's module version the helper builds.
const Version = "v3.1.2"

const module = "github.com/distribution/distribution/v3/cmd/registry"

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// Binary returns the registry program, building it on first use into
// <user cache>/nodeboot/testregistry/<Version>/registry. Building takes a
// few minutes the first time; test processes running at once share one
// build through a file lock.
func Binary() (string, error) {
	buildOnce.Do(func() { buildOnce.path, buildOnce.err = build() })
	return buildOnce.path, buildOnce.err
}

func build() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir for the test registry: %w", err)
	}
	dir := filepath.Join(cache, "nodeboot", "testregistry", Version)
	bin := filepath.Join(dir, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if st, err := os.Stat(bin); err == nil && st.Mode().IsRegular() {
		return bin, nil
	}
	gobin, err := os.MkdirTemp(dir, "build-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(gobin)
	// Outside any module: `go install pkg@version` resolves the registry's
	// own go.mod through the module proxy configured here (GOPROXY).
	cmd := exec.Command("go", "install", module+"@"+Version)
	cmd.Dir = gobin
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test registry (go install %s@%s): %w\n%s", module, Version, err, out)
	}
	if err := os.Rename(filepath.Join(gobin, "registry"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Options configure a registry.
type Options struct {
	// Auth requires HTTP basic authentication (htpasswd) with User and
	// Password (generated).
	Auth bool
}

// Registry is a running registry.
type Registry struct {
	// Host is 127.0.0.1:<port>, as it goes into a reference.
	Host string
	// User and Password are the htpasswd credentials when Options.Auth.
	User, Password string
	// Dir holds the config, the htpasswd file and the storage.
	Dir string

	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start builds (once) and starts a registry; it is stopped and removed
// when the test ends. The test fails if the registry cannot be built or
// started.
func Start(t testing.TB, o Options) *Registry {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// New builds (once) and starts a registry in a new temporary directory,
// for programs that are not tests (the benchmark); Close stops it and
// removes the directory.
func New(o Options) (*Registry, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nodeboot-registry-")
	if err != nil {
		return nil, err
	}
	r := &Registry{bin: bin, Dir: dir}
	fail := func(err error) (*Registry, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	r.Host = l.Addr().String()
	l.Close()
	secret := make([]byte, 16)
	rand.Read(secret)
	auth := ""
	if o.Auth {
		pw := make([]byte, 12)
		rand.Read(pw)
		r.User, r.Password = "fleet", hex.EncodeToString(pw)
		h, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			return fail(err)
		}
		hp := filepath.Join(r.Dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(r.User+":"+string(h)+"\n"), 0o600); err != nil {
			return fail(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: nodeboot-test\n    path: %s\n", hp)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
%s`, filepath.Join(r.Dir, "storage"), r.Host, hex.EncodeToString(secret), auth)
	if err := os.WriteFile(filepath.Join(r.Dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		return fail(err)
	}
	if err := r.Restart(); err != nil {
		return fail(err)
	}
	return r, nil
}

// Close stops the registry and removes its directory.
func (r *Registry) Close() {
	r.Stop()
	os.RemoveAll(r.Dir)
}

// Restart starts the registry again (after Stop) on the same address and
// storage; it returns once the registry answers.
func (r *Registry) Restart() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(r.Dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, "serve", filepath.Join(r.Dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// No tracing exporter: the registry would try to reach a collector.
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting the test registry: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.cmd, r.done, r.log = cmd, done, logf
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
			r.cmd = nil
			logf.Close()
			return fmt.Errorf("the test registry exited at start: %s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.cmd.Process.Kill()
			<-done
			r.cmd = nil
			logf.Close()
			return fmt.Errorf("the test registry on %s did not answer within 60 s: %v", r.Host, err)
		}
	}
}

// Stop stops the registry (its storage stays, for Restart).
func (r *Registry) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
	r.log.Close()
	r.cmd = nil
}

// Log returns what the registry wrote so far (for a failing test).
func (r *Registry) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	return string(b)
}

// DockerConfig writes a Docker config.json holding the registry's
// credentials (or the given ones, to test wrong credentials) into a new
// directory and returns it: set DOCKER_CONFIG to it, as `docker login`
// would have left it.
func (r *Registry) DockerConfig(user, password string) string {
	dir, err := os.MkdirTemp(r.Dir, "docker-")
	if err != nil {
		panic(err)
	}
	if user == "" && password == "" {
		user, password = r.User, r.Password
	}
	cfg := map[string]any{"auths": map[string]any{
		r.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))},
	}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		panic(err)
	}
	return dir
}
