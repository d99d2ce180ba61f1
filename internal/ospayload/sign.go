package ospayload

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Sign completes m (media type; signing key from key) and returns the
// signed header. m must pass the parser's checks: a node would refuse it
// otherwise.
func Sign(m *Manifest, key ed25519.PrivateKey) (*Header, error) {
	mm := *m
	mm.MediaType = MediaTypeManifest
	mm.SigningKey = EncodeKey(key.Public().(ed25519.PublicKey))
	raw, err := json.MarshalIndent(&mm, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := ParseManifest(raw); err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key, append([]byte(SignedPrefix), raw...))
	return &Header{Manifest: &mm, Raw: raw, Sig: sig}, nil
}

// Endorse returns old's endorsement of next: put it in the KeyChain of
// manifests signed by next, so that nodes still trusting only old accept
// them (and, once updated, carry next in their image).
func Endorse(old ed25519.PrivateKey, next ed25519.PublicKey) Endorsement {
	return Endorsement{
		Key: EncodeKey(next),
		By:  EncodeKey(old.Public().(ed25519.PublicKey)),
		Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(old, append([]byte(EndorsePrefix), next...))),
	}
}

var (
	// ErrUntrusted is wrapped when no key the node trusts vouches for the
	// payload's signing key.
	ErrUntrusted = errors.New("the payload is not signed by a key this node trusts")
	// ErrBadSignature is wrapped when a signature does not verify.
	ErrBadSignature = errors.New("the payload's signature does not verify")
)

// Verify checks the header's signature against the keys a node trusts and
// returns the key that signed it. The signing key is trusted when it is one
// of trusted, or when a chain of endorsements in the manifest leads to it
// from one of trusted, each verified.
func (h *Header) Verify(trusted []ed25519.PublicKey) (ed25519.PublicKey, error) {
	m := h.Manifest
	signer, err := TrustedSigner(m.SigningKey, m.KeyChain, trusted)
	if err != nil {
		return nil, err
	}
	if len(h.Sig) != ed25519.SignatureSize || !ed25519.Verify(signer, append([]byte(SignedPrefix), h.Raw...), h.Sig) {
		return nil, fmt.Errorf("%w: the manifest was changed after it was signed, or the signature is damaged; build and send the update again", ErrBadSignature)
	}
	return signer, nil
}

// TrustedSigner returns the key signingKey (base64) names when it is one of
// trusted, or when a chain of endorsements in chain leads to it from one of
// trusted, each verified. Other signed documents of the project (the fleet
// releases of internal/oci) share this rule, so a rotated key is trusted
// the same way everywhere.
func TrustedSigner(signingKey string, chain []Endorsement, trusted []ed25519.PublicKey) (ed25519.PublicKey, error) {
	signer, err := decodeKey(signingKey)
	if err != nil {
		return nil, invalid("signingKey: %v", err)
	}
	ok := map[string]bool{}
	for _, k := range trusted {
		ok[string(k)] = true
	}
	// Follow the chain: each endorsement by a trusted key makes its key
	// trusted. The chain is short (MaxKeyChain); a fixed point is reached
	// in at most len(chain) rounds.
	for range chain {
		grew := false
		for i, e := range chain {
			by, _ := decodeKey(e.By)
			k, _ := decodeKey(e.Key)
			if !ok[string(by)] || ok[string(k)] {
				continue
			}
			sig, _ := base64.StdEncoding.DecodeString(e.Sig)
			if !ed25519.Verify(by, append([]byte(EndorsePrefix), k...), sig) {
				return nil, fmt.Errorf("%w: key endorsement %d (of key %s by key %s)", ErrBadSignature, i, KeyID(k), KeyID(by))
			}
			ok[string(k)] = true
			grew = true
		}
		if !grew {
			break
		}
	}
	if !ok[string(signer)] {
		var ids []string
		for _, k := range trusted {
			ids = append(ids, KeyID(k))
		}
		return nil, fmt.Errorf("%w: it is signed by key %s, the node trusts %s; sign it with the update key of the project the node was built from (.nodeboot/update.key), or endorse the new key with the old one (docs/updates.md)",
			ErrUntrusted, KeyID(signer), orNone(strings.Join(ids, ", ")))
	}
	return signer, nil
}

func orNone(s string) string {
	if s == "" {
		return "no key at all"
	}
	return s
}
