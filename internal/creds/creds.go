// Package creds holds a project's management credentials in
// <project>/.nodeboot/ (docs/api.md, "Credentials"): the node's TLS key and
// self-signed certificate, the owner's bearer token, and the named nodes the
// CLI talks to. The image carries the key, the certificate and only the
// token's SHA-256; the token itself never leaves the owner's machine.
package creds

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// Dir is the credentials directory inside a project.
const Dir = ".nodeboot"

// The files in Dir.
const (
	KeyFile   = "node.key"
	CertFile  = "node.crt"
	TokenFile = "owner.token"
	NodesFile = "nodes.json"
	// UpdateKeyFile signs OS updates (ed25519). It never leaves the build
	// host: images carry only its public half (docs/updates.md says how
	// to back it up and rotate it).
	UpdateKeyFile = "update.key"
	gitignoreFile = ".gitignore"
)

// The files PID 1 reads from the image.
const (
	ImageKey       = contract.ImageKey
	ImageCert      = contract.ImageCert
	ImageOwnerHash = contract.ImageOwnerHash
	// ImageUpdateKeys lists the public keys whose signed OS updates the
	// node accepts, one base64 ed25519 key per line.
	ImageUpdateKeys = "/etc/nodeboot/update/trusted.keys"
)

// certLifetime is long on purpose: the CLI pins the exact certificate, so
// expiry adds no safety, only a date on which every node stops answering.
const certLifetime = 10 * 365 * 24 * time.Hour

// Creds are one project's credentials.
type Creds struct {
	NodeKeyPEM  []byte
	NodeCertPEM []byte
	Token       string
	OwnerHash   [32]byte // SHA-256 of Token
	// UpdateKey signs OS updates; nil in a project made before update
	// keys existed and not built since.
	UpdateKey ed25519.PrivateKey

	certDER []byte // what ClientTLS pins
}

// Ensure loads the credentials of projectDir, creating whatever is missing
// first; created reports whether anything was. A missing owner.token is
// made anew (that is how the token is rotated); a missing node.crt next to
// an existing node.key is issued again for that key; a node.key missing
// next to its certificate is an error, because no new key can match it.
func Ensure(projectDir string) (c *Creds, created bool, err error) {
	dir := filepath.Join(projectDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating %s: %w", dir, err)
	}
	// The secrets must never be committed, whatever the project's own
	// .gitignore says: git reads this one inside the directory.
	if _, err := os.Stat(filepath.Join(dir, gitignoreFile)); errors.Is(err, fs.ErrNotExist) {
		if err := renameio.WriteFile(filepath.Join(dir, gitignoreFile), []byte("*\n"), 0o644); err != nil {
			return nil, false, fmt.Errorf("writing %s: %w", filepath.Join(dir, gitignoreFile), err)
		}
	}

	keyPath, certPath, tokenPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile), filepath.Join(dir, TokenFile)
	haveKey, err := exists(keyPath)
	if err != nil {
		return nil, false, err
	}
	haveCert, err := exists(certPath)
	if err != nil {
		return nil, false, err
	}
	switch {
	case !haveKey && haveCert:
		return nil, false, corrupt(keyPath, errors.New("it is missing but node.crt exists, and no new key can match that certificate"))
	case !haveKey:
		// ECDSA P-256, not ed25519: browsers (Chromium, Firefox) do not
		// accept ed25519 certificates in TLS, and the status page must
		// open in one.
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generating the node's key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, false, fmt.Errorf("encoding the node's key: %w", err)
		}
		// The key first: a crash after it leaves a key without a
		// certificate, which the next run completes (below).
		if err := renameio.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("writing %s: %w", keyPath, err)
		}
		created = true
		fallthrough
	case !haveCert:
		priv, err := readKey(keyPath)
		if err != nil {
			return nil, false, err
		}
		certPEM, err := selfSigned(priv)
		if err != nil {
			return nil, false, err
		}
		if err := renameio.WriteFile(certPath, certPEM, 0o644); err != nil {
			return nil, false, fmt.Errorf("writing %s: %w", certPath, err)
		}
		created = true
	}

	haveToken, err := exists(tokenPath)
	if err != nil {
		return nil, false, err
	}
	if !haveToken {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, false, fmt.Errorf("generating the owner's token: %w", err)
		}
		if err := renameio.WriteFile(tokenPath, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
			return nil, false, fmt.Errorf("writing %s: %w", tokenPath, err)
		}
		created = true
	}

	updatePath := filepath.Join(dir, UpdateKeyFile)
	haveUpdateKey, err := exists(updatePath)
	if err != nil {
		return nil, false, err
	}
	if !haveUpdateKey {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generating the update signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, false, fmt.Errorf("encoding the update signing key: %w", err)
		}
		if err := renameio.WriteFile(updatePath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("writing %s: %w", updatePath, err)
		}
		created = true
	}

	c, err = Load(projectDir)
	return c, created, err
}

// readUpdateKey reads update.key; a missing one is nil (the project was
// made before update keys existed: the next build creates one).
func readUpdateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, corruptUpdateKey(path, errors.New("it holds no PEM \"PRIVATE KEY\" block"))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, corruptUpdateKey(path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, corruptUpdateKey(path, fmt.Errorf("it holds a %T, want an ed25519 key", k))
	}
	return priv, nil
}

// corruptUpdateKey says what a damaged update key means: unlike the other
// credentials it cannot simply be made anew, since nodes in the field
// trust only its public half.
func corruptUpdateKey(path string, err error) error {
	return fmt.Errorf("%s is corrupt: %v; restore it from your backup (docs/updates.md): nodes accept OS updates only when signed by it. Deleting it makes a new key on the next build, which nodes built before then do not trust", path, err)
}

// Load reads and checks the credentials of projectDir.
func Load(projectDir string) (*Creds, error) {
	dir := filepath.Join(projectDir, Dir)
	keyPath, certPath, tokenPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile), filepath.Join(dir, TokenFile)
	priv, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", keyPath, err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is missing: run nodeboot build in %s to create it", certPath, projectDir)
		}
		return nil, fmt.Errorf("reading %s: %w", certPath, err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, corrupt(certPath, err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(priv.Public()) {
		return nil, corrupt(certPath, errors.New("it is not the certificate of node.key"))
	}
	tokenBytes, err := os.ReadFile(tokenPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is missing: run nodeboot build in %s to create a new one (images built before then accept only the old token)", tokenPath, projectDir)
		}
		return nil, fmt.Errorf("reading %s: %w", tokenPath, err)
	}
	token, err := ParseToken(tokenBytes)
	if err != nil {
		return nil, corrupt(tokenPath, err)
	}
	updateKey, err := readUpdateKey(filepath.Join(dir, UpdateKeyFile))
	if err != nil {
		return nil, err
	}
	return &Creds{
		UpdateKey:   updateKey,
		NodeKeyPEM:  keyPEM,
		NodeCertPEM: certPEM,
		Token:       token,
		OwnerHash:   sha256.Sum256([]byte(token)),
		certDER:     cert.Raw,
	}, nil
}

// ParseToken checks the contents of owner.token: 64 lower-case hex digits,
// optionally followed by one newline.
func ParseToken(b []byte) (string, error) {
	s := strings.TrimSuffix(string(b), "\n")
	if len(s) != 64 {
		return "", fmt.Errorf("the token is %d characters long, want 64 hex digits", len(s))
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return "", fmt.Errorf("the token holds %q, want only the hex digits 0-9a-f", r)
		}
	}
	return s, nil
}

// ImageFiles are the files to put into the image: the node's key and
// certificate and the token's SHA-256 in hex, never the token.
func (c *Creds) ImageFiles() map[string][]byte {
	files := map[string][]byte{
		ImageKey:       c.NodeKeyPEM,
		ImageCert:      c.NodeCertPEM,
		ImageOwnerHash: []byte(hex.EncodeToString(c.OwnerHash[:]) + "\n"),
	}
	if c.UpdateKey != nil {
		pub := c.UpdateKey.Public().(ed25519.PublicKey)
		files[ImageUpdateKeys] = []byte(base64.StdEncoding.EncodeToString(pub) + "\n")
	}
	return files
}

// ErrWrongNode is what ClientTLS's check returns for any other certificate.
var ErrWrongNode = errors.New("the node's certificate does not match .nodeboot/node.crt: this is not the node this project built, or someone is in between")

// ClientTLS is the client configuration for this project's nodes: TLS 1.3,
// and exactly the certificate in node.crt. There is no CA to trust and no
// host name to check (nodes are reached by whatever address they have), so
// the usual verification is replaced by a byte-for-byte comparison.
func (c *Creds) ClientTLS() *tls.Config {
	want := bytes.Clone(c.certDER)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection's pin
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return ErrWrongNode
			}
			return nil
		},
	}
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("checking %s: %w", path, err)
}

// corrupt names the broken file and the way out, and what it costs.
func corrupt(path string, err error) error {
	return fmt.Errorf("%s is corrupt: %v; to start over, delete %s and run nodeboot build again (images built before then will not accept the new credentials)", path, err, filepath.Dir(path))
}

// readKey reads node.key: ECDSA P-256, or ed25519 as the first builds
// wrote (those nodes answer the CLI and curl but no browser).
func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is missing: run nodeboot build in the project first (it creates the credentials)", path)
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, corrupt(path, errors.New("it holds no PEM \"PRIVATE KEY\" block"))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, corrupt(path, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, corrupt(path, fmt.Errorf("it holds an ECDSA key on %s, want P-256", k.Curve.Params().Name))
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, corrupt(path, fmt.Errorf("it holds a %T, want an ECDSA P-256 key", k))
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("it holds no PEM \"CERTIFICATE\" block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("it holds more than one PEM block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// selfSigned issues the node's certificate. The names are for tools that
// insist on some; nodeboot's own client checks nothing but the bytes.
func selfSigned(priv crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "nodeboot node"},
		NotBefore:             now.Add(-time.Hour), // tolerate a node clock slightly behind
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"nodeboot"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, fmt.Errorf("issuing the node's certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// FindProject walks up from start to the first directory holding
// .nodeboot/, the way git finds its repository.
func FindProject(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("finding the project from %s: %w", start, err)
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, Dir)); err == nil && st.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s/ in %s or any directory above it: run nodeboot build in your project first (it creates the credentials), or run this command inside the project", Dir, start)
		}
		dir = parent
	}
}
