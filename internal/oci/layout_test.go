package oci

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/ospayload"
)

// TestLayoutRoundTrip publishes an app and an OS update into an OCI image
// layout and reads them back: the bundle is byte for byte the one
// `nodeboot deploy` sends, and the OS stream the one `nodeboot update`
// sends.
func TestLayoutRoundTrip(t *testing.T) {
	key := testKey(1)
	in := appInput(t, testApp(t, 300<<10))
	osp := osPayload(t, key, 3<<20)
	dir := filepath.Join(t.TempDir(), "usb", "fleet")
	ref := mustRef(t, "oci:"+dir+":stable")
	res, err := Push(ctx(t), ref, Publication{Apps: []AppInput{in}, OS: osp, Key: key}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Record.Apps) != 1 || len(res.Record.Apps[0].Layers) != 2 {
		t.Fatalf("record apps %+v: want one app of two layers", res.Record.Apps)
	}
	src := Open(ref, Options{})
	d, err := src.Resolve(ctx(t))
	if err != nil || d != res.Digest {
		t.Fatalf("Resolve = %s, %v; want %s", d, err, res.Digest)
	}
	rel, err := src.Release(ctx(t), d, []ed25519.PublicKey{pub(key)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	got, err := rel.WriteBundle(ctx(t), "shop", &b)
	if err != nil {
		t.Fatal(err)
	}
	want := plainBundle(t, in)
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("assembled bundle (%d bytes, %s) differs from bundle.Write's (%d bytes)", b.Len(), got, len(want))
	}
	if _, err := bundle.Extract(bytes.NewReader(b.Bytes()), filepath.Join(t.TempDir(), "x"), bundle.Limits{}); err != nil {
		t.Fatalf("the assembled bundle does not extract: %v", err)
	}

	p, err := rel.FetchOS(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var sent, orig bytes.Buffer
	r, err := p.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	sent.ReadFrom(r)
	r.Close()
	if _, err := osp.WriteTo(&orig); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sent.Bytes(), orig.Bytes()) || p.Size() != int64(orig.Len()) {
		t.Fatalf("OS stream from the layout (%d bytes) differs from the payload (%d bytes)", sent.Len(), orig.Len())
	}
	if _, err := ospayload.Verify(bytes.NewReader(sent.Bytes()), []ed25519.PublicKey{pub(key)}); err != nil {
		t.Fatalf("the node's verifier refuses the stream: %v", err)
	}
	// Resume offset, as the node asks.
	r, err = p.Open(1000)
	if err != nil {
		t.Fatal(err)
	}
	var tail bytes.Buffer
	tail.ReadFrom(r)
	r.Close()
	hs := osp.Header.Size()
	if !bytes.Equal(tail.Bytes()[hs:], orig.Bytes()[hs+1000:]) {
		t.Fatal("the stream resumed at body offset 1000 is not the payload's")
	}

	// Another key's node refuses it; nothing is fetched.
	_, err = src.Release(ctx(t), "", []ed25519.PublicKey{pub(testKey(2))})
	if !errors.Is(err, ospayload.ErrUntrusted) {
		t.Fatalf("a node trusting another key: %v, want ErrUntrusted", err)
	}
}

// TestLayoutTampered damages a layout (a layer's bytes, the record) and
// checks that nothing damaged is handed out.
func TestLayoutTampered(t *testing.T) {
	key := testKey(1)
	in := appInput(t, testApp(t, 10<<10))
	dir := t.TempDir()
	ref := mustRef(t, "oci:"+dir)
	res, err := Push(ctx(t), ref, Publication{Apps: []AppInput{in}, Key: key}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	trusted := []ed25519.PublicKey{pub(key)}

	// A layer flipped: the release verifies, the layer does not.
	code := res.Record.Apps[0].Layers[1]
	lp := layoutBlob(dir, code.Digest)
	orig, _ := os.ReadFile(lp)
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 1
	put(t, lp, bad)
	rel, err := Open(ref, Options{}).Release(ctx(t), "", trusted)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := rel.WriteBundle(ctx(t), "shop", &b); !errors.Is(err, ErrDigest) {
		t.Fatalf("damaged layer: %v, want ErrDigest", err)
	}
	put(t, lp, orig)

	// The record changed (paused) without signing again, the manifest
	// and the layout's index rewritten to point at it: the signature no
	// longer verifies.
	retarget(t, dir, func(rec []byte) []byte {
		return bytes.Replace(rec, []byte(`"mediaType":"application/vnd.nodeboot.release.v1+json",`), []byte(`"mediaType":"application/vnd.nodeboot.release.v1+json","rollout":{"paused":true},`), 1)
	})
	if _, err := Open(ref, Options{}).Release(ctx(t), "", trusted); !errors.Is(err, ospayload.ErrBadSignature) {
		t.Fatalf("changed record: %v, want ErrBadSignature", err)
	}
}

// retarget rewrites the record of the layout's only tag with change, and
// the manifest and index.json after it, as someone with write access to
// the storage could.
func retarget(t *testing.T, dir string, change func([]byte) []byte) {
	t.Helper()
	idxPath := filepath.Join(dir, "index.json")
	idx, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	var im struct {
		Manifests []map[string]any `json:"manifests"`
	}
	if err := json.Unmarshal(idx, &im); err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests", err, len(im.Manifests))
	}
	md := im.Manifests[0]["digest"].(string)
	raw, err := os.ReadFile(layoutBlob(dir, md))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	cfg := m["config"].(map[string]any)
	rec, err := os.ReadFile(layoutBlob(dir, cfg["digest"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	rec2 := change(rec)
	if bytes.Equal(rec, rec2) {
		t.Fatal("retarget changed nothing")
	}
	put(t, layoutBlob(dir, digestOf(rec2)), rec2)
	cfg["digest"], cfg["size"] = digestOf(rec2), len(rec2)
	raw2, _ := json.Marshal(m)
	put(t, layoutBlob(dir, digestOf(raw2)), raw2)
	im.Manifests[0]["digest"], im.Manifests[0]["size"] = digestOf(raw2), len(raw2)
	idx2, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": im.Manifests})
	put(t, idxPath, idx2)
}
