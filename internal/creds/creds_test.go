package creds

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ensure(t *testing.T, dir string) *Creds {
	t.Helper()
	c, _, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureCreatesOnceAndLoads(t *testing.T) {
	dir := t.TempDir()
	c, created, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first Ensure reports nothing created")
	}
	c2, created, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second Ensure created something again")
	}
	if !bytes.Equal(c.NodeKeyPEM, c2.NodeKeyPEM) || !bytes.Equal(c.NodeCertPEM, c2.NodeCertPEM) || c.Token != c2.Token {
		t.Error("second Ensure changed the credentials")
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Token != c.Token || l.OwnerHash != sha256.Sum256([]byte(c.Token)) {
		t.Error("Load differs from Ensure or OwnerHash is not the token's SHA-256")
	}
	if _, err := ParseToken([]byte(c.Token)); err != nil {
		t.Errorf("token %q: %v", c.Token, err)
	}

	// The certificate is what docs/api.md says.
	blk, _ := pem.Decode(c.NodeCertPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "nodeboot node" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "nodeboot" ||
		len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("certificate names: CN %q, DNS %v, IP %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 10*365*24*time.Hour {
		t.Errorf("certificate lives %v, want 10 years", life)
	}
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("certificate key is %T", cert.PublicKey)
	}
}

func TestPermissionsAndGitignore(t *testing.T) {
	dir := t.TempDir()
	ensure(t, dir)
	for _, tc := range []struct {
		name string
		mode os.FileMode
	}{
		{".", 0o700},
		{KeyFile, 0o600},
		{TokenFile, 0o600},
		{CertFile, 0o644},
	} {
		st, err := os.Stat(filepath.Join(dir, Dir, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.name, got, tc.mode)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, Dir, ".gitignore"))
	if err != nil || strings.TrimSpace(string(b)) != "*" {
		t.Errorf(".gitignore = %q, %v; want *", b, err)
	}
	// No temporary files left behind by the atomic writes.
	ents, _ := os.ReadDir(filepath.Join(dir, Dir))
	for _, e := range ents {
		switch e.Name() {
		case KeyFile, CertFile, TokenFile, UpdateKeyFile, ".gitignore":
		default:
			t.Errorf("unexpected file %s", e.Name())
		}
	}
}

// TestUpdateKey: made once, kept across Ensure and Load, and a damaged one
// is an error that says not to simply delete it.
func TestUpdateKey(t *testing.T) {
	dir := t.TempDir()
	c := ensure(t, dir)
	if len(c.UpdateKey) != ed25519.PrivateKeySize {
		t.Fatalf("no update key: %v", c.UpdateKey)
	}
	again := ensure(t, dir)
	if !c.UpdateKey.Equal(again.UpdateKey) {
		t.Error("a second Ensure made a new update key")
	}
	path := filepath.Join(dir, Dir, UpdateKeyFile)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("update.key: %v %v, want mode 0600", st.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "restore it from your backup") {
		t.Errorf("Load with a damaged update.key: %v", err)
	}
	// A project from before update keys: Load works, there is no key,
	// and the image carries no trusted keys.
	os.Remove(path)
	old, err := Load(dir)
	if err != nil || old.UpdateKey != nil {
		t.Fatalf("Load without update.key: %v, %v", old, err)
	}
	if _, ok := old.ImageFiles()[ImageUpdateKeys]; ok {
		t.Error("an image without an update key lists trusted keys")
	}
}

func TestImageFilesCarryNoToken(t *testing.T) {
	c := ensure(t, t.TempDir())
	files := c.ImageFiles()
	if len(files) != 4 {
		t.Errorf("ImageFiles: %d files", len(files))
	}
	// The update key's public half only, in the form ospayload reads.
	pub := c.UpdateKey.Public().(ed25519.PublicKey)
	if got, want := string(files[ImageUpdateKeys]), base64.StdEncoding.EncodeToString(pub)+"\n"; got != want {
		t.Errorf("trusted.keys = %q, want %q", got, want)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(c.UpdateKey)
	for p, b := range files {
		if bytes.Contains(b, c.UpdateKey.Seed()) || bytes.Contains(b, der) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(der)[8:40])) {
			t.Errorf("%s contains the update signing key", p)
		}
	}
	sum := sha256.Sum256([]byte(c.Token))
	if got := string(files[ImageOwnerHash]); got != hex.EncodeToString(sum[:])+"\n" {
		t.Errorf("owner.sha256 = %q", got)
	}
	if !bytes.Equal(files[ImageKey], c.NodeKeyPEM) || !bytes.Equal(files[ImageCert], c.NodeCertPEM) {
		t.Error("key or certificate differ from .nodeboot's")
	}
	for p, b := range files {
		if bytes.Contains(b, []byte(c.Token)) {
			t.Errorf("%s contains the token", p)
		}
	}
}

// otherKeyPEM is a valid key that matches no certificate of dir.
func otherKeyPEM(t *testing.T) []byte {
	t.Helper()
	return ensure(t, t.TempDir()).NodeKeyPEM
}

func TestCorruptFiles(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		content    func(t *testing.T) []byte
		want       string
	}{
		{"garbage key", KeyFile, func(*testing.T) []byte { return []byte("hello") }, "node.key is corrupt"},
		{"truncated key", KeyFile, func(*testing.T) []byte {
			return []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIE\n-----END PRIVATE KEY-----\n")
		}, "node.key is corrupt"},
		{"another key", KeyFile, otherKeyPEM, "not the certificate of node.key"},
		{"garbage cert", CertFile, func(*testing.T) []byte {
			return []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, "node.crt is corrupt"},
		{"key as cert", CertFile, otherKeyPEM, "node.crt is corrupt"},
		{"short token", TokenFile, func(*testing.T) []byte { return []byte("abc\n") }, "owner.token is corrupt"},
		{"upper-case token", TokenFile, func(*testing.T) []byte { return []byte(strings.Repeat("A", 64) + "\n") }, "owner.token is corrupt"},
		{"token with spaces", TokenFile, func(*testing.T) []byte { return []byte(" " + strings.Repeat("a", 63) + "\n") }, "owner.token is corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ensure(t, dir)
			path := filepath.Join(dir, Dir, tc.file)
			if err := os.WriteFile(path, tc.content(t), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, f := range []func() error{
				func() error { _, err := Load(dir); return err },
				func() error { _, _, err := Ensure(dir); return err },
			} {
				err := f()
				if err == nil {
					t.Fatal("corrupt file accepted")
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "delete") {
					t.Errorf("error %q: want %q and how to recover", err, tc.want)
				}
			}
		})
	}
}

func TestMissingFiles(t *testing.T) {
	t.Run("token is made anew", func(t *testing.T) {
		dir := t.TempDir()
		old := ensure(t, dir)
		os.Remove(filepath.Join(dir, Dir, TokenFile))
		c, created, err := Ensure(dir)
		if err != nil || !created {
			t.Fatalf("Ensure: created %v, %v", created, err)
		}
		if c.Token == old.Token || !bytes.Equal(c.NodeCertPEM, old.NodeCertPEM) {
			t.Error("rotation must change the token and keep the certificate")
		}
	})
	t.Run("certificate is issued again for the key", func(t *testing.T) {
		dir := t.TempDir()
		old := ensure(t, dir)
		os.Remove(filepath.Join(dir, Dir, CertFile))
		c, created, err := Ensure(dir)
		if err != nil || !created {
			t.Fatalf("Ensure: created %v, %v", created, err)
		}
		if !bytes.Equal(c.NodeKeyPEM, old.NodeKeyPEM) {
			t.Error("the key changed")
		}
	})
	t.Run("key missing beside its certificate", func(t *testing.T) {
		dir := t.TempDir()
		ensure(t, dir)
		os.Remove(filepath.Join(dir, Dir, KeyFile))
		if _, _, err := Ensure(dir); err == nil || !strings.Contains(err.Error(), "node.key") {
			t.Errorf("Ensure: %v", err)
		}
	})
	t.Run("Load without a build", func(t *testing.T) {
		_, err := Load(t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "nodeboot build") {
			t.Errorf("Load: %v", err)
		}
	})
}

func TestFindProject(t *testing.T) {
	root := t.TempDir()
	ensure(t, root)
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, start := range []string{root, deep} {
		got, err := FindProject(start)
		if err != nil || got != root {
			t.Errorf("FindProject(%s) = %q, %v; want %s", start, got, err, root)
		}
	}
	if _, err := FindProject(t.TempDir()); err == nil || !strings.Contains(err.Error(), "run nodeboot build in your project first") {
		t.Errorf("FindProject outside a project: %v", err)
	}
}

// serve starts a TLS 1.3 server with the given certificate.
func serve(t *testing.T, certPEM, keyPEM []byte) *httptest.Server {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) }))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func TestClientTLSPinsTheCertificate(t *testing.T) {
	mine := ensure(t, t.TempDir())
	other := ensure(t, t.TempDir())
	client := func(c *Creds) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c.ClientTLS()}}
	}

	right := serve(t, mine.NodeCertPEM, mine.NodeKeyPEM)
	resp, err := client(mine).Get(right.URL)
	if err != nil {
		t.Fatalf("the project's own node refused: %v", err)
	}
	resp.Body.Close()
	if resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x", resp.TLS.Version)
	}

	for name, url := range map[string]string{
		"another project's node":     serve(t, other.NodeCertPEM, other.NodeKeyPEM).URL,
		"httptest's own certificate": httptest.NewTLSServer(http.NotFoundHandler()).URL,
	} {
		_, err := client(mine).Get(url)
		if err == nil {
			t.Errorf("%s accepted", name)
			continue
		}
		if !errors.Is(err, ErrWrongNode) || !strings.Contains(err.Error(), "does not match .nodeboot/node.crt") {
			t.Errorf("%s: error %v, want ErrWrongNode", name, err)
		}
	}

	// A TLS 1.2-only server is refused.
	cert, _ := tls.X509KeyPair(mine.NodeCertPEM, mine.NodeKeyPEM)
	old := httptest.NewUnstartedServer(http.NotFoundHandler())
	old.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12}
	old.StartTLS()
	defer old.Close()
	if _, err := client(mine).Get(old.URL); err == nil {
		t.Error("a TLS 1.2 server was accepted")
	}
}

func TestNodesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ensure(t, dir)
	nodes, err := ReadNodes(dir)
	if err != nil || len(nodes) != 0 {
		t.Fatalf("ReadNodes without nodes.json: %v, %v", nodes, err)
	}
	for _, n := range []struct{ name, addr string }{
		{"local", "127.0.0.1:40123"},
		{"pi", "pi.lan:9443"},
		{"local", "127.0.0.1:40999"}, // replaces
		{"v6", "[fe80::1]:9443"},
	} {
		if err := RecordNode(dir, n.name, n.addr); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err = ReadNodes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"local": "127.0.0.1:40999", "pi": "pi.lan:9443", "v6": "[fe80::1]:9443"}
	if len(nodes) != len(want) {
		t.Errorf("nodes: %v", nodes)
	}
	for name, addr := range want {
		if nodes[name].Address != addr {
			t.Errorf("node %s: %q, want %q", name, nodes[name].Address, addr)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, Dir, NodesFile))
	if !strings.Contains(string(b), `"nodes"`) || !strings.Contains(string(b), `"address": "127.0.0.1:40999"`) {
		t.Errorf("nodes.json is not the documented shape:\n%s", b)
	}

	for _, bad := range []struct{ name, addr string }{
		{"", "127.0.0.1:1"},
		{"a.b", "127.0.0.1:1"},
		{"x", "127.0.0.1"},
		{"x", "127.0.0.1:0"},
		{"x", "bad host:1"},
	} {
		if err := RecordNode(dir, bad.name, bad.addr); err == nil {
			t.Errorf("RecordNode(%q, %q) accepted", bad.name, bad.addr)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	if err := RecordNode(dir, "local", "127.0.0.1:40123"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		arg, want, err string
	}{
		{"local", "127.0.0.1:40123", ""},
		{"10.0.0.5", "10.0.0.5:9443", ""},
		{"10.0.0.5:1234", "10.0.0.5:1234", ""},
		{"pi.lan", "pi.lan:9443", ""},
		{"pi.lan:80", "pi.lan:80", ""},
		{"localhost", "localhost:9443", ""},
		{"::1", "[::1]:9443", ""},
		{"[::1]", "[::1]:9443", ""},
		{"[::1]:99", "[::1]:99", ""},
		{"lcoal", "", `no node named "lcoal"`},
		{"", "", "no node given"},
		{"pi.lan:http", "", "port"},
		{"pi.lan:70000", "", "port"},
		{"a b", "", "neither a node name"},
	} {
		got, err := Resolve(dir, tc.arg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q) = %q, %v; want error %q", tc.arg, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
}

func TestParseNodesRejects(t *testing.T) {
	for _, in := range []string{
		`{"nodes": {"a": {"address": "x:1", "extra": 1}}}`,
		`{"nodes": {"a.b": {"address": "x:1"}}}`,
		`{"nodes": {"a": {"address": "x"}}}`,
		`{"nodes": {}} {}`,
		`[]`,
		``,
	} {
		if _, err := ParseNodes([]byte(in)); err == nil {
			t.Errorf("ParseNodes(%s) accepted", in)
		}
	}
}

func FuzzParseNodes(f *testing.F) {
	f.Add([]byte(`{"nodes": {"local": {"address": "127.0.0.1:40123"}}}`))
	f.Add([]byte(`{"nodes": {"v6": {"address": "[::1]:1"}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodes, err := ParseNodes(b)
		if err != nil {
			return
		}
		for name, n := range nodes {
			if checkName(name) != nil {
				t.Fatalf("accepted name %q", name)
			}
			if _, _, err := net.SplitHostPort(n.Address); err != nil {
				t.Fatalf("accepted address %q", n.Address)
			}
		}
	})
}

func FuzzResolveAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.5", "pi.lan:80", "[::1]", "::1", "a b", "x:", ":1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		addr, err := addressOf(arg)
		if err != nil {
			return
		}
		if _, _, err := splitAddress(addr); err != nil {
			t.Fatalf("addressOf(%q) = %q, which is not host:port: %v", arg, addr, err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte("zz"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseToken(b)
		if err != nil {
			return
		}
		if _, err := hex.DecodeString(tok); err != nil || len(tok) != 64 {
			t.Fatalf("accepted %q", tok)
		}
	})
}
