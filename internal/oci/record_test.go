package oci

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// TestRolloutWaves runs a fleet of 1000 seeds against a clock: about the
// first wave's share may apply in the first wave, all after the last, none
// while paused.
func TestRolloutWaves(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	r := &Rollout{Waves: []Wave{{Share: 0.1, NotBefore: t0}, {Share: 0.5, NotBefore: t0.Add(time.Hour)}, {Share: 1, NotBefore: t0.Add(2 * time.Hour)}}}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	seeds := make([]float64, 1000)
	for i := range seeds {
		seeds[i] = rnd.Float64()
	}
	count := func(r *Rollout, now time.Time) int {
		n := 0
		for _, s := range seeds {
			if r.Allows(s, now) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		at       time.Time
		min, max int
	}{
		{t0.Add(-time.Minute), 0, 0},
		{t0, 70, 130},
		{t0.Add(90 * time.Minute), 450, 550},
		{t0.Add(2 * time.Hour), 1000, 1000},
	} {
		if n := count(r, c.at); n < c.min || n > c.max {
			t.Errorf("at %v: %d of 1000 nodes may apply, want %d..%d", c.at.Sub(t0), n, c.min, c.max)
		}
	}
	p := *r
	p.Paused = true
	if n := count(&p, t0.Add(3*time.Hour)); n != 0 {
		t.Errorf("paused: %d nodes may apply", n)
	}
	if n := count(nil, t0); n != 1000 {
		t.Errorf("no rollout: %d of 1000 may apply", n)
	}
	if at, ok := r.ApplyAt(0.3); !ok || !at.Equal(t0.Add(time.Hour)) {
		t.Errorf("ApplyAt(0.3) = %v, %v", at, ok)
	}

	for _, bad := range []Rollout{
		{Waves: []Wave{{Share: 0.5, NotBefore: t0}}},
		{Waves: []Wave{{Share: 0.5, NotBefore: t0}, {Share: 0.4, NotBefore: t0}, {Share: 1, NotBefore: t0}}},
		{Waves: []Wave{{Share: 0.5, NotBefore: t0}, {Share: 1, NotBefore: t0.Add(-time.Hour)}}},
		{Waves: []Wave{{Share: 0, NotBefore: t0}, {Share: 1, NotBefore: t0}}},
		{Waves: []Wave{{Share: 1}}},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("rollout %+v accepted", bad)
		}
	}
}

func signedRecord(t testing.TB, key ed25519.PrivateKey) ([]byte, string) {
	t.Helper()
	z := "sha256:" + strings.Repeat("0", 64)
	r := &Record{Created: time.Unix(1700000000, 0).UTC(), Apps: []App{{
		Name:   "shop",
		Meta:   bundle.Meta{Format: 1, App: "shop", Entry: "index.js", NodeArgs: []string{}, Libraries: []string{}},
		Bundle: Blob{MediaType: MediaTypeBundle, Digest: z, Size: 10},
		Layers: []Layer{{Blob: Blob{MediaType: MediaTypeAppLayer, Digest: z, Size: 10}, Role: RoleCode}},
	}}}
	raw, sig, err := r.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return raw, sig
}

func TestVerifyRecord(t *testing.T) {
	key := testKey(1)
	raw, sig := signedRecord(t, key)
	if _, _, err := VerifyRecord(raw, sig, []ed25519.PublicKey{pub(key)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyRecord(raw, sig, []ed25519.PublicKey{pub(testKey(2))}); !errors.Is(err, ospayload.ErrUntrusted) {
		t.Errorf("other key: %v", err)
	}
	// A rotated key: nodes trusting the old key accept the new one when
	// the old endorses it.
	next := testKey(3)
	r, _ := ParseRecord(raw)
	r.KeyChain = []ospayload.Endorsement{ospayload.Endorse(key, pub(next))}
	raw2, sig2, err := r.Sign(next)
	if err != nil {
		t.Fatal(err)
	}
	if _, signer, err := VerifyRecord(raw2, sig2, []ed25519.PublicKey{pub(key)}); err != nil || !signer.Equal(pub(next)) {
		t.Errorf("endorsed key: %v", err)
	}
	bad := []byte(strings.Replace(string(raw), `"shop"`, `"shoq"`, 1))
	if _, _, err := VerifyRecord(bad, sig, []ed25519.PublicKey{pub(key)}); err == nil {
		t.Error("a changed record verified")
	}
	if _, _, err := VerifyRecord(raw, "", []ed25519.PublicKey{pub(key)}); !errors.Is(err, ospayload.ErrBadSignature) {
		t.Errorf("no signature: %v", err)
	}
	for _, s := range []string{`{}`, `[]`, string(raw) + `{}`, strings.Replace(string(raw), `"mtime"`, `"mtimes"`, 1), strings.Replace(string(raw), `"role":"code"`, `"role":"x"`, 1)} {
		if _, err := ParseRecord([]byte(s)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRecord(%.60q) = %v, want ErrInvalid", s, err)
		}
	}
}

// TestFuzzSeeds writes the fuzz targets' seed corpus from real bytes when
// NODEBOOT_WRITE_SEEDS=1, and otherwise checks that every seed is there.
func TestFuzzSeeds(t *testing.T) {
	raw, _ := signedRecord(t, testKey(1))
	seeds := map[string][]byte{
		"FuzzParseRecord/record":    raw,
		"FuzzParseManifest/release": []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.nodeboot.release.v1","config":{"mediaType":"application/vnd.nodeboot.release.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":100},"layers":[],"annotations":{"vnd.nodeboot.release.signature":"AAAA"}}`),
		"FuzzParseManifest/image":   []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":100},"layers":[]}`),
		"FuzzParseManifest/index":   []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`),
	}
	for name, b := range seeds {
		p := filepath.Join("testdata", "fuzz", name)
		if os.Getenv("NODEBOOT_WRITE_SEEDS") == "1" {
			put(t, p, []byte("go test fuzz v1\n[]byte("+quote(b)+")\n"))
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("seed %s missing (NODEBOOT_WRITE_SEEDS=1 go test -run TestFuzzSeeds writes it): %v", name, err)
		}
	}
}

func quote(b []byte) string { return strconv.Quote(string(b)) }

func FuzzParseRecord(f *testing.F) {
	raw, sig := signedRecord(f, testKey(1))
	f.Add(raw)
	trusted := []ed25519.PublicKey{pub(testKey(1))}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		// What parses parses again after a round trip, and a different
		// record never verifies with the seed's signature.
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRecord(again); err != nil {
			t.Fatalf("a parsed record does not parse again: %v", err)
		}
		r.Rollout.ApplyAt(0.5)
		if string(b) != string(raw) {
			if _, _, err := VerifyRecord(b, sig, trusted); err == nil {
				t.Fatal("a different record verified with the seed's signature")
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, sig, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotRelease) && !errors.Is(err, ospayload.ErrBadSignature) {
				t.Fatalf("error wraps none of the package's errors: %v", err)
			}
			return
		}
		if c.MediaType != MediaTypeRecord || !digestRE.MatchString(c.Digest) || c.Size < 0 || c.Size > MaxRecordSize || sig == "" {
			t.Fatalf("accepted config %+v, signature %q", c, sig)
		}
	})
}
