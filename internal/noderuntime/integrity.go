package noderuntime

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// ErrIntegrity is wrapped by every error about downloaded bytes not matching
// what the registry promised.
var ErrIntegrity = errors.New("integrity check failed")

// sriAlgos lists the Subresource Integrity algorithms we verify, strongest
// first; like npm we check only the strongest one present.
var sriAlgos = []struct {
	name string
	new  func() hash.Hash
}{
	{"sha512", sha512.New},
	{"sha384", sha512.New384},
	{"sha256", sha256.New},
	{"sha1", sha1.New},
}

// verifier hashes a stream and checks it against the registry's integrity
// (or, for old packages without one, the hex sha1 shasum).
type verifier struct {
	algo     string
	h        hash.Hash
	want     [][]byte
	expected string // as the registry wrote it, for messages
	hexOut   bool   // report the digest in hex (shasum) instead of SRI form
}

// newVerifier prefers integrity and falls back to shasum only when integrity is
// absent: a present but unusable integrity string is an error rather than a
// silent downgrade to sha1.
func newVerifier(integrity, shasum string) (*verifier, error) {
	if strings.TrimSpace(integrity) != "" {
		return parseIntegrity(integrity)
	}
	if shasum != "" {
		d, err := hex.DecodeString(shasum)
		if err != nil || len(d) != sha1.Size {
			return nil, fmt.Errorf("registry shasum %q is not a hex sha1", shasum)
		}
		return &verifier{algo: "sha1", h: sha1.New(), want: [][]byte{d}, expected: shasum, hexOut: true}, nil
	}
	return nil, errors.New("the registry gives neither an integrity nor a shasum for this tarball, so it cannot be verified")
}

// parseIntegrity parses an SRI string: space-separated "algo-base64[?opts]"
// entries.
func parseIntegrity(s string) (*verifier, error) {
	found := map[string][][]byte{}
	for _, f := range strings.Fields(s) {
		algo, digest, ok := strings.Cut(f, "-")
		if !ok {
			continue
		}
		digest, _, _ = strings.Cut(digest, "?")
		d, err := base64.StdEncoding.DecodeString(digest)
		if err != nil {
			continue
		}
		found[strings.ToLower(algo)] = append(found[strings.ToLower(algo)], d)
	}
	for _, a := range sriAlgos {
		want := found[a.name]
		h := a.new()
		var ok [][]byte
		for _, d := range want {
			if len(d) == h.Size() {
				ok = append(ok, d)
			}
		}
		if len(ok) > 0 {
			return &verifier{algo: a.name, h: h, want: ok, expected: strings.TrimSpace(s)}, nil
		}
	}
	return nil, fmt.Errorf("registry integrity %q has no sha512/sha384/sha256/sha1 digest nodeboot can check", s)
}

func (v *verifier) Write(p []byte) (int, error) { return v.h.Write(p) }

// got is the digest of what was written, in the same notation as expected.
func (v *verifier) got() string {
	sum := v.h.Sum(nil)
	if v.hexOut {
		return hex.EncodeToString(sum)
	}
	return v.algo + "-" + base64.StdEncoding.EncodeToString(sum)
}

// sri is the verified digest as an SRI string, what Runtime.Integrity records
// even when the registry only had a shasum.
func (v *verifier) sri() string {
	return v.algo + "-" + base64.StdEncoding.EncodeToString(v.h.Sum(nil))
}

func (v *verifier) check() error {
	sum := v.h.Sum(nil)
	for _, w := range v.want {
		if bytes.Equal(sum, w) {
			return nil
		}
	}
	return fmt.Errorf("%w: expected %s, got %s", ErrIntegrity, v.expected, v.got())
}
