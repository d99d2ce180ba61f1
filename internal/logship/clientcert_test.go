package logship

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/logship/logshiptest"
)

// issue makes a certificate signed by ca with the given extended key
// usages and expiry.
func issue(t *testing.T, ca *logshiptest.CA, eku []x509.ExtKeyUsage, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "edge-1"},
		NotBefore:    notAfter.Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func TestParseClientCertRefusesBadInput(t *testing.T) {
	ca, err := logshiptest.NewCA("logs CA")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, key := issue(t, ca, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now.Add(24*time.Hour))
	_, otherKey := issue(t, ca, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now.Add(24*time.Hour))
	expired, expiredKey := issue(t, ca, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now.Add(-time.Hour))
	server, serverKey := issue(t, ca, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, now.Add(24*time.Hour))
	noEKU, noEKUKey := issue(t, ca, nil, now.Add(24*time.Hour))
	der, _ := pem.Decode(cert)

	if leaf, err := ParseClientCert(cert, key, now); err != nil || leaf.Subject.CommonName != "edge-1" {
		t.Fatalf("a good pair: %v %v", leaf, err)
	}
	if _, err := ParseClientCert(noEKU, noEKUKey, now); err != nil {
		t.Errorf("a certificate without extended key usage (any use): %v", err)
	}
	// A chain: the leaf, then the CA.
	if _, err := ParseClientCert(append(append([]byte{}, cert...), ca.PEM...), key, now); err != nil {
		t.Errorf("a chain: %v", err)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"key of another certificate", cert, otherKey, "the key does not belong to the certificate"},
		{"certificate not PEM (DER)", der.Bytes, key, "the certificate is not PEM"},
		{"certificate empty", nil, key, "the certificate is not PEM"},
		{"key not PEM", cert, []byte("not a key at all"), "the key is not a PEM private key"},
		{"key is a certificate", cert, cert, "the key is not a PEM private key"},
		{"swapped", key, cert, "swapped"},
		{"certificate file with the key in it", append(append([]byte{}, cert...), key...), key, "holds a private key too"},
		{"key damaged", cert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}), "give an unencrypted"},
		{"expired", expired, expiredKey, "expired on"},
		{"server certificate", server, serverKey, "not for client authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClientCert(tc.cert, tc.key, now)
			if !errors.Is(err, ErrBadClientCert) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			// The key never appears in the error.
			if len(tc.key) > 40 && strings.Contains(err.Error(), string(tc.key[30:40])) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}

func TestLoadClientCertDamagedOrMissing(t *testing.T) {
	dir := t.TempDir()
	if c, err := LoadClientCert(filepath.Join(dir, "none.pem")); c != nil || err != nil {
		t.Fatalf("no file: %v %v", c, err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	_, err := LoadClientCert(bad)
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "nodeboot logs login") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("damaged file: %v", err)
	}
}
