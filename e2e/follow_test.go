package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/testregistry"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// followInterval is short so that the test costs little TCG time; the
// follower adds up to a fifth of it at random.
const followInterval = 3 * time.Second

// followServer answers its version.txt; crash makes it exit at start.
func followServer(crash bool) string {
	s := "const fs = require('fs');\n"
	if crash {
		s += "console.error('Error: boom'); process.exit(3);\n"
	}
	return s + "require('http').createServer((q, s) => s.end(fs.readFileSync(__dirname + '/version.txt', 'utf8'))).listen(Number(process.env.PORT));\n"
}

// TestFollow boots two nodes from disk images that follow :stable of a real
// registry behind htpasswd (the image carries no credentials: the nodes
// report the registry's refusal until `nodeboot registry login` gives
// them the owner's Docker config's, after a wrong password is refused),
// and pushes: v2 reaches both; a
// crashing v3 leaves both on v2 with the reason in status; a v4 signed by
// another project's key is ignored with the error in status; while the
// registry is down both keep serving and say so, and catch up once it is
// back.
func TestFollow(t *testing.T) {
	requireQEMU(t)
	reg := testregistry.Start(t, testregistry.Options{Auth: true})
	_, port, _ := strings.Cut(reg.Host, ":")
	guestHost := "10.0.2.2:" + port // the host as a QEMU guest on user networking sees it

	proj := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proj, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package.json", `{"name":"shop","version":"1.0.0","main":"server.js"}`)
	write("server.js", followServer(false))
	write("version.txt", "v1")
	write("nodeboot.json", fmt.Sprintf(`{"follow": {"ref": "%s/shop:stable", "interval": "%v", "insecure": true}}`, guestHost, followInterval))
	// The owner's Docker config holds the registry's pull credentials
	// under the name the nodes use; the build must not bake them in.
	dockerConfig := func(pw string) string {
		dc := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte(reg.User + ":" + pw))
		if err := os.WriteFile(filepath.Join(dc, "config.json"), []byte(fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, guestHost, auth)), 0o600); err != nil {
			t.Fatal(err)
		}
		return dc
	}
	t.Setenv("DOCKER_CONFIG", dockerConfig(reg.Password))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "shop.img")
	var log strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "nodeboot registry login NODE") {
		t.Errorf("the build did not say how to give the nodes pull credentials:\n%s", log.String())
	}
	owner, err := creds.Load(proj)
	if err != nil {
		t.Fatal(err)
	}

	type fnode struct {
		b       *diskBoot
		apiPort int
	}
	var nodes []fnode
	for i := range 2 {
		disk := filepath.Join(t.TempDir(), fmt.Sprintf("node%d.img", i))
		if out, err := exec.Command("cp", "--sparse=always", img, disk).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		apiPort, err := vm.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, fnode{bootDisk(t, ctx, disk, "256M", true, vm.Forward{Host: apiPort, Guest: contract.APIPort}), apiPort})
	}
	for _, n := range nodes {
		n.b.waitFor(t, "following "+guestHost+"/shop:stable")
	}

	push := func(version string, crash bool, key ed25519.PrivateKey) string {
		t.Helper()
		write("version.txt", version)
		write("server.js", followServer(crash))
		p, err := spec.Load(proj, "")
		if err != nil {
			t.Fatal(err)
		}
		a := &p.Apps[0]
		ref, err := oci.ParseRef(reg.Host+"/shop:stable", false)
		if err != nil {
			t.Fatal(err)
		}
		res, err := oci.Push(ctx, ref, oci.Publication{
			Apps: []oci.AppInput{{Meta: bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines}, Files: bundle.FromSpec(a.SrcDir, a.Files)}},
			Key:  key,
		}, oci.Options{Auth: &authn.Basic{Username: reg.User, Password: reg.Password}})
		if err != nil {
			t.Fatalf("push %s: %v", version, err)
		}
		return res.Digest
	}
	// waitAll waits until every node's follow status and answer satisfy ok,
	// failing at once when a guest dies.
	waitAll := func(what string, limit time.Duration, ok func(f *contract.FollowStatus, serves string) bool) {
		t.Helper()
		start := time.Now()
		for i, n := range nodes {
			for {
				var f *contract.FollowStatus
				if s, err := statusOf(owner, n.apiPort); err == nil {
					f = s.Follow
				}
				serves := answer(n.b.port)
				if f != nil && ok(f, serves) {
					break
				}
				select {
				case <-n.b.v.Done():
					t.Fatalf("node %d died waiting for %s: %v\n%s", i, what, n.b.v.Err(), n.b.v.Tail(40))
				default:
				}
				if time.Since(start) > limit {
					t.Fatalf("node %d: %s not within %v: follow %+v, serves %q\n%s", i, what, limit, f, serves, n.b.v.Tail(30))
				}
				time.Sleep(time.Second)
			}
		}
		t.Logf("%s after %v", what, time.Since(start).Round(time.Second))
	}
	// Generous: an interval with its jitter, then a deploy under TCG.
	limit := followInterval*6/5 + 3*time.Minute

	// No credentials yet: the registry refuses the nodes, which say so
	// and what to do.
	waitAll("both say the registry refuses them", limit, func(f *contract.FollowStatus, serves string) bool {
		return strings.Contains(f.LastError, "refused the credentials") && strings.Contains(f.LastError, "nodeboot registry login") && !f.PullCredentials && serves == "v1"
	})
	for i, n := range nodes {
		addr := fmt.Sprintf("127.0.0.1:%d", n.apiPort)
		// A wrong password: refused by the registry the node asks, not kept.
		t.Setenv("DOCKER_CONFIG", dockerConfig("wrong-"+reg.Password))
		out, err := nodeboot(ctx, proj, "registry", "login", addr)
		if err == nil || !strings.Contains(err.Error(), "refused these credentials") || !strings.Contains(err.Error(), guestHost) {
			t.Fatalf("node %d: login with a wrong password: %v\n%s", i, err, out)
		}
		t.Setenv("DOCKER_CONFIG", dockerConfig(reg.Password))
		out, err = nodeboot(ctx, proj, "registry", "login", addr)
		if err != nil || !strings.Contains(out, "pull credentials for "+guestHost+" set") || !strings.Contains(out, "accepted") {
			t.Fatalf("node %d: registry login: %v\n%s", i, err, out)
		}
	}

	v2 := push("v2", false, owner.UpdateKey)
	waitAll("both serve v2", limit, func(f *contract.FollowStatus, serves string) bool {
		return f.Applied == v2 && serves == "v2" && f.LastError == ""
	})

	v3 := push("v3", true, owner.UpdateKey)
	waitAll("both refuse the crashing v3", limit, func(f *contract.FollowStatus, serves string) bool {
		return f.Target == v3 && f.State == "release refused" && strings.Contains(f.LastError, "app shop") && serves == "v2"
	})

	_, foreign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v4 := push("v4", false, foreign)
	waitAll("both ignore v4 of another key", limit, func(f *contract.FollowStatus, serves string) bool {
		return f.Target == v4 && strings.Contains(f.LastError, "not signed by a key this node trusts") && serves == "v2"
	})

	reg.Stop()
	waitAll("both say the registry is down", limit, func(f *contract.FollowStatus, serves string) bool {
		return f.State == "registry unreachable" && f.LastError != "" && serves == "v2"
	})
	reg.Restart()
	v5 := push("v5", false, owner.UpdateKey)
	waitAll("both catch up with v5", limit, func(f *contract.FollowStatus, serves string) bool {
		return f.Applied == v5 && serves == "v5" && f.LastError == ""
	})

	// The status verb says what the node follows, and that it holds
	// credentials, never what they are; nor does its console.
	out, err := nodeboot(ctx, proj, "status", fmt.Sprintf("127.0.0.1:%d", nodes[0].apiPort))
	if err != nil || !strings.Contains(out, "follows "+guestHost+"/shop:stable: up to date") || !strings.Contains(out, "has pull credentials") {
		t.Errorf("status: %v\n%s", err, out)
	}
	for i, n := range nodes {
		if c := n.b.v.Console(); strings.Contains(out+c, reg.Password) || !strings.Contains(c, "pull credentials for "+guestHost+" set") {
			t.Errorf("node %d: the console or status shows the password, or the console does not say the credentials were set", i)
		}
	}
}

// statusOf asks a node's API for its status, without failing the test
// (the node may be busy).
func statusOf(c *creds.Creds, apiPort int) (*contract.Status, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", apiPort, contract.PathStatus), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := apiClient(c).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	var s contract.Status
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// answer is what the app on port says now ("" when it does not answer).
func answer(port int) string {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// TestFollowOS (NODEBOOT_LONG: it costs an OVMF boot, a trial boot and
// their updates under TCG) pushes a release with an OS update to a node
// that follows its tag: the app is deployed, the OS written to the other
// slot and tried, committed, and the follower reports the release applied.
func TestFollowOS(t *testing.T) {
	requireQEMU(t)
	if os.Getenv("NODEBOOT_LONG") == "" {
		t.Skip("an OS update through the followed tag runs under NODEBOOT_LONG=1 (make test-long)")
	}
	if _, err := vm.FindFirmware(); err != nil {
		t.Fatal(err)
	}
	reg := testregistry.Start(t, testregistry.Options{})
	_, port, _ := strings.Cut(reg.Host, ":")
	guestHost := "10.0.2.2:" + port
	proj := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proj, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package.json", `{"name":"shop","version":"1.0.0","main":"server.js"}`)
	write("server.js", followServer(false))
	write("version.txt", "os1")
	write("nodeboot.json", fmt.Sprintf(`{"update": {"healthySeconds": 5}, "follow": {"ref": "%s/shop:stable", "interval": "%v", "insecure": true}}`, guestHost, followInterval))
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	build := func(name string) (string, string) {
		t.Helper()
		img := filepath.Join(t.TempDir(), name)
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		b, err := os.ReadFile(strings.TrimSuffix(img, ".img") + ".manifest.json")
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ ImageVersion string }
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return img, m.ImageVersion
	}
	img, _ := build("one.img")
	owner, err := creds.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	apiPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b := bootDisk(t, ctx, img, "512M", false, vm.Forward{Host: apiPort, Guest: contract.APIPort})
	b.waitFor(t, "following "+guestHost+"/shop:stable")

	write("version.txt", "os2")
	img2, id2 := build("two.img")
	payload, err := ospayload.FromImage(img2, ospayload.BuildOptions{Key: owner.UpdateKey, Version: uint64(time.Now().Unix()), Image: id2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := spec.Load(proj, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &p.Apps[0]
	ref, err := oci.ParseRef(reg.Host+"/shop:stable", false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := oci.Push(ctx, ref, oci.Publication{
		Apps: []oci.AppInput{{Meta: bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines}, Files: bundle.FromSpec(a.SrcDir, a.Files)}},
		OS:   payload, Key: owner.UpdateKey,
	}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		s, err := statusOf(owner, apiPort)
		if err == nil && s.Follow != nil && s.Follow.Applied == res.Digest && s.OS != nil {
			if bs := s.OS.Booted(); bs != nil && bs.Name == "b" && bs.State == "good" && bs.Image != nil && bs.Image.ID == id2 && answer(b.port) == "os2" {
				break
			}
		}
		select {
		case <-b.v.Done():
			t.Fatalf("the node died: %v\n%s", b.v.Err(), b.v.Tail(40))
		default:
		}
		if time.Since(start) > 25*time.Minute {
			var f *contract.FollowStatus
			if s != nil {
				f = s.Follow
			}
			t.Fatalf("the OS release was not applied: %v, follow %+v\n%s", err, f, b.v.Tail(40))
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("OS release applied and committed after %v", time.Since(start).Round(time.Second))
}
