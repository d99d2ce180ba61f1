package logship

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// A client certificate for an endpoint that requires one (mutual TLS) is
// given to each running node (`nodeboot logs login`, PUT /v1/logs/auth)
// and kept on /data, never built into the image: an image's OS update is
// pushed to registries and carried on sticks, and a key shared by a whole
// fleet could not be revoked for one stolen node.

// ErrBadClientCert wraps every reason ParseClientCert refuses a pair.
var ErrBadClientCert = errors.New("bad client certificate")

// LoginHint says how to give a node its client certificate.
const LoginHint = "`nodeboot logs login NODE --cert node.pem --key node.key` (docs/logs.md)"

// ParseClientCert checks a client certificate (PEM, the leaf first,
// optionally followed by intermediates) and its private key (PEM) as an
// owner sends them: both PEM, the key the certificate's own, not expired
// at now, and usable for client authentication. Its errors never quote
// the key.
func ParseClientCert(certPEM, keyPEM []byte, now time.Time) (*x509.Certificate, error) {
	certTypes, keyTypes := pemTypes(certPEM), pemTypes(keyPEM)
	switch {
	case !slices.Contains(certTypes, "CERTIFICATE") && hasKey(certTypes) && slices.Contains(keyTypes, "CERTIFICATE"):
		return nil, fmt.Errorf("%w: the certificate and the key are swapped (give the certificate as --cert, the key as --key)", ErrBadClientCert)
	case !slices.Contains(certTypes, "CERTIFICATE"):
		return nil, fmt.Errorf("%w: the certificate is not PEM (no \"-----BEGIN CERTIFICATE-----\" block); give the client certificate as PEM (openssl x509 -inform der -in cert.der -out cert.pem)", ErrBadClientCert)
	case hasKey(certTypes):
		return nil, fmt.Errorf("%w: the certificate file holds a private key too; give the certificate alone as --cert and the key as --key", ErrBadClientCert)
	case !hasKey(keyTypes):
		return nil, fmt.Errorf("%w: the key is not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" block)", ErrBadClientCert)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("%w: the key does not belong to the certificate (%v); give the certificate's own private key", ErrBadClientCert, err)
		}
		// Encrypted keys and unknown algorithms land here; the error
		// names neither the key's bytes nor its parameters.
		return nil, fmt.Errorf("%w: %v; give an unencrypted PKCS#1, PKCS#8 or EC private key", ErrBadClientCert, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate: %v", ErrBadClientCert, err)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: the certificate %s expired on %s (the node's clock says %s); issue a new one", ErrBadClientCert, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("%w: the certificate %s is not for client authentication (its extended key usage lacks clientAuth; a server certificate?); issue one with extendedKeyUsage = clientAuth", ErrBadClientCert, leaf.Subject)
	}
	return leaf, nil
}

func pemTypes(b []byte) []string {
	var types []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return types
		}
		types = append(types, blk.Type)
	}
}

func hasKey(types []string) bool {
	return slices.ContainsFunc(types, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") })
}

// WriteClientCert keeps a pair ParseClientCert accepted at path: the
// certificate chain then the key, root's and readable by root alone, in
// a directory only root may enter, replaced atomically so that a power
// cut leaves the old pair or the new, never a certificate with another's
// key.
func WriteClientCert(path string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	var b bytes.Buffer
	b.Write(bytes.TrimSpace(certPEM))
	b.WriteString("\n")
	b.Write(bytes.TrimSpace(keyPEM))
	b.WriteString("\n")
	return renameio.WriteFile(path, b.Bytes(), 0o400)
}

// LoadClientCert reads what WriteClientCert kept; nil (and no error)
// when there is no file.
func LoadClientCert(path string) (*tls.Certificate, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the client certificate: %w", err)
	}
	c, err := tls.X509KeyPair(b, b)
	if err != nil {
		// Never quote the file: it holds the key.
		return nil, fmt.Errorf("the client certificate in %s is damaged (%v); set it again with %s", path, err, LoginHint)
	}
	return &c, nil
}

// ClientCertFile is a tls.Config GetClientCertificate that presents the
// pair at path, read at each handshake, so a login takes effect at the
// next connection. An endpoint that asks for a certificate while the
// node has none gets no connection: under TLS 1.3 a server refuses a
// missing certificate only after the client's handshake is over, when
// the first lines would already count as delivered, and be lost.
func ClientCertFile(path string) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := LoadClientCert(path)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("the endpoint asks for a client certificate and this node has none: give it one with %s", LoginHint)
		}
		return c, nil
	}
}

// DescribeClientCert is the status's line about the pair at path:
// subject and expiry, never the key; "" when there is none.
func DescribeClientCert(path string) string {
	c, err := LoadClientCert(path)
	switch {
	case err != nil:
		return err.Error()
	case c == nil:
		return ""
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Sprintf("unreadable: %v", err)
	}
	return fmt.Sprintf("%s, valid until %s", leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
}
