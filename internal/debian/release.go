package debian

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"pault.ag/go/debian/control"
)

// Release is what nodeboot reads of a suite's Release file.
type Release struct {
	Origin, Label, Suite, Codename, Date string
	Architectures, Components            []string
	// Files maps a path under dists/<suite>/ to its size and SHA-256.
	Files map[string]FileSum
	// Signer names the key that signed it ("" when not checked).
	Signer string
}

// FileSum is a file's size and SHA-256 (hex), as an index lists it.
type FileSum struct {
	Size   int64
	SHA256 string
}

// ErrSignature wraps every signature failure of a Release.
var ErrSignature = errors.New("the Release file's signature does not verify")

// LoadKeyring reads an OpenPGP keyring, binary (as Debian ships
// /usr/share/keyrings/*.gpg) or ASCII-armoured.
func LoadKeyring(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PGP")) {
		kr, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("keyring %s: %w", path, err)
		}
		return kr, nil
	}
	kr, err := openpgp.ReadKeyRing(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return kr, nil
}

// ParseInRelease reads a clearsigned InRelease. With a keyring, a missing
// or bad signature, or one by a key not in it, is an error wrapping
// ErrSignature; with none, the signature is not checked.
func ParseInRelease(data []byte, keyring openpgp.EntityList) (*Release, error) {
	if !bytes.HasPrefix(data, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		if keyring != nil {
			return nil, fmt.Errorf("%w: InRelease is not clearsigned", ErrSignature)
		}
		return ParseRelease(data)
	}
	var kr *control.ParagraphReader
	var err error
	if keyring != nil {
		el := keyring
		kr, err = control.NewParagraphReader(bytes.NewReader(data), &el)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSignature, err)
		}
	} else {
		kr, err = control.NewParagraphReader(bytes.NewReader(data), nil)
		if err != nil {
			return nil, fmt.Errorf("InRelease: %w", err)
		}
	}
	r, err := releaseFrom(kr)
	if err != nil {
		return nil, err
	}
	if s := kr.Signer(); s != nil {
		for name := range s.Identities {
			r.Signer = name
			break
		}
		if r.Signer == "" {
			r.Signer = fmt.Sprintf("key %X", s.PrimaryKey.Fingerprint)
		}
	}
	return r, nil
}

// ParseRelease reads an unsigned Release file.
func ParseRelease(data []byte) (*Release, error) {
	pr, err := control.NewParagraphReader(bytes.NewReader(data), nil)
	if err != nil {
		return nil, fmt.Errorf("Release: %w", err)
	}
	return releaseFrom(pr)
}

func releaseFrom(pr *control.ParagraphReader) (*Release, error) {
	p, err := pr.Next()
	if err != nil {
		return nil, fmt.Errorf("Release: %w", err)
	}
	v := p.Values
	r := &Release{
		Origin: v["Origin"], Label: v["Label"], Suite: v["Suite"], Codename: v["Codename"], Date: v["Date"],
		Architectures: strings.Fields(v["Architectures"]),
		Components:    strings.Fields(v["Components"]),
		Files:         map[string]FileSum{},
	}
	for _, line := range strings.Split(v["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("Release: bad SHA256 line %q", line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("Release: bad size in SHA256 line %q", line)
		}
		if b, err := hex.DecodeString(f[0]); err != nil || len(b) != 32 {
			return nil, fmt.Errorf("Release: bad hash in SHA256 line %q", line)
		}
		r.Files[f[2]] = FileSum{Size: size, SHA256: strings.ToLower(f[0])}
	}
	if len(r.Files) == 0 {
		return nil, errors.New("Release lists no SHA256 sums: nodeboot verifies indices by SHA-256 only")
	}
	return r, nil
}
