package opcua

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The PKI folder under the gateway's data_dir, laid out like other OPC UA
// applications' so installers recognise it:
//
//	pki/own/cert.der           edged's application instance certificate
//	pki/own/private/key.pem    its RSA key (mode 0600)
//	pki/trusted/               server certificates edged trusts (DER or PEM)
//	pki/rejected/              server certificates edged refused, to inspect and move
const (
	pkiDir      = "pki"
	ownCertFile = "own/cert.der"
	ownKeyFile  = "own/private/key.pem"
	trustedDir  = "trusted"
	rejectedDir = "rejected"
)

// ownKeyBits is the size of the key made on first start (RSA ≥ 2048 is what
// Basic256Sha256 and the Aes policies require).
const ownKeyBits = 2048

// identity is edged's application instance certificate and key.
type identity struct {
	cert     []byte // DER
	key      *rsa.PrivateKey
	uri      string // from the certificate's SAN
	certPath string
}

// PKI is the certificate store of one data dir.
type PKI struct{ Dir string }

// NewPKI returns the store under dataDir/pki.
func NewPKI(dataDir string) PKI { return PKI{Dir: filepath.Join(dataDir, pkiDir)} }

func (p PKI) path(rel string) string { return filepath.Join(p.Dir, filepath.FromSlash(rel)) }

// DefaultApplicationURI is urn:edged:<hostname>.
func DefaultApplicationURI() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return "urn:edged:" + h
}

// Own loads edged's certificate and key, making them on first use with
// appURI (default DefaultApplicationURI) in the subjectAltName. created
// reports whether they were made now.
func (p PKI) Own(appURI string) (id *identity, created bool, err error) {
	certPath, keyPath := p.path(ownCertFile), p.path(ownKeyFile)
	cert, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist) {
		if err := p.create(appURI); err != nil {
			return nil, false, err
		}
		created = true
		cert, cerr = os.ReadFile(certPath)
		keyPEM, kerr = os.ReadFile(keyPath)
	}
	if cerr != nil {
		return nil, false, fmt.Errorf("read edged's certificate: %w (delete %s and %s to make a new pair)", cerr, certPath, keyPath)
	}
	if kerr != nil {
		return nil, false, fmt.Errorf("read edged's private key: %w (delete %s and %s to make a new pair)", kerr, certPath, keyPath)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", keyPath, err)
	}
	x, err := x509.ParseCertificate(cert)
	if err != nil {
		return nil, false, fmt.Errorf("%s: not a DER certificate: %w", certPath, err)
	}
	id = &identity{cert: cert, key: key, certPath: certPath}
	if len(x.URIs) > 0 {
		id.uri = x.URIs[0].String()
	}
	return id, created, nil
}

func (p PKI) create(appURI string) error {
	if appURI == "" {
		appURI = DefaultApplicationURI()
	}
	u, err := url.Parse(appURI)
	if err != nil {
		return fmt.Errorf("application_uri %q: %w", appURI, err)
	}
	key, err := rsa.GenerateKey(rand.Reader, ownKeyBits)
	if err != nil {
		return fmt.Errorf("make edged's key: %w", err)
	}
	host, _ := os.Hostname()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "edged@" + host, Organization: []string{"edged"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(20, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	if host != "" {
		tmpl.DNSNames = []string{host}
	}
	tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make edged's certificate: %w", err)
	}
	for _, dir := range []string{p.path("own"), p.path(trustedDir), p.path(rejectedDir)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("make PKI folder: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.path(ownKeyFile)), 0o700); err != nil {
		return fmt.Errorf("make PKI folder: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeFileAtomic(p.path(ownKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(p.path(ownCertFile), der, 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// parseKey reads an RSA key in PEM (PKCS#1 or PKCS#8) or DER.
func parseKey(b []byte) (*rsa.PrivateKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	if k, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return nil, errors.New("not an RSA private key (PEM or DER, PKCS#1 or PKCS#8)")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA private key: OPC UA security policies need RSA")
	}
	return rk, nil
}

// readCert reads a certificate file in DER or PEM.
func readCert(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	if _, err := x509.ParseCertificate(b); err != nil {
		return nil, fmt.Errorf("%s: not a certificate (DER or PEM): %w", path, err)
	}
	return b, nil
}

// Thumbprints returns the SHA-1 and SHA-256 thumbprints of a DER
// certificate, lower-case hex.
func Thumbprints(der []byte) (sha1hex, sha256hex string) {
	a, b := sha1.Sum(der), sha256.Sum256(der)
	return hex.EncodeToString(a[:]), hex.EncodeToString(b[:])
}

// leaf returns the first certificate of a DER chain (servers may send
// their certificate followed by its issuers).
func leaf(chain []byte) ([]byte, error) {
	certs, err := x509.ParseCertificates(chain)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("the server sent no valid certificate: %v", err)
	}
	return certs[0].Raw, nil
}

// UntrustedError is the refusal of a server certificate that is neither in
// trusted/ nor pinned. Its message tells the installer what to do.
type UntrustedError struct {
	Subject                string
	SHA1, SHA256           string
	SavedTo                string // the copy in rejected/
	ClientCert, ClientSHA1 string // edged's certificate, for the server's trust list
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("server certificate %q (SHA-1 %s) is not trusted: to trust it, move %s to %s, or add trusted_thumbprints = [\"%s\"] to the device; "+
		"the server must also trust edged's certificate %s (SHA-1 %s)",
		e.Subject, e.SHA1, e.SavedTo, filepath.Join(filepath.Dir(filepath.Dir(e.SavedTo)), trustedDir), e.SHA256, e.ClientCert, e.ClientSHA1)
}

// TrustedNowError is a failed connect after the server's certificate,
// refused before, was trusted (moved into trusted/ or pinned) while edged
// ran: the trust check passes now and what is left is usually the other
// side, the server not trusting edged's certificate yet. Its message says
// so, instead of the advice to move a file that was moved already.
type TrustedNowError struct {
	Server *UntrustedError // the refusal that came before
	Err    error
}

func (e *TrustedNowError) Error() string {
	return fmt.Sprintf("%v: the server's certificate %q (SHA-1 %s) is trusted now, but the connection still fails: "+
		"the server must trust edged's certificate %s (SHA-1 %s): copy it into the server's trusted certificates "+
		"(many servers list it among their rejected ones, to approve)",
		e.Err, e.Server.Subject, e.Server.SHA1, e.Server.ClientCert, e.Server.ClientSHA1)
}

func (e *TrustedNowError) Unwrap() error { return e.Err }

// reachedServer reports whether a failed connect got as far as the
// server: not refused at the TCP level nor lost in name resolution (then
// the server's trust is not the question).
func reachedServer(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &dns), errors.As(err, &op) && op.Op == "dial":
		return false
	}
	return true
}

// Check decides whether the server certificate (a DER chain) is trusted:
// its leaf is in trusted/ (read at every call, so moving a file there takes
// effect at the next connect) or its thumbprint is in pinned (normalised
// hex). An untrusted one is saved to rejected/ and returned as
// *UntrustedError.
func (p PKI) Check(chain []byte, pinned []string, own *identity) error {
	cert, err := leaf(chain)
	if err != nil {
		return err
	}
	s1, s256 := Thumbprints(cert)
	for _, tp := range pinned {
		if tp == s1 || tp == s256 {
			return nil
		}
	}
	entries, err := os.ReadDir(p.path(trustedDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read trusted certificates: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		c, err := readCert(filepath.Join(p.path(trustedDir), e.Name()))
		if err != nil {
			continue // not a certificate: ignore, like other OPC UA stacks do
		}
		if string(c) == string(cert) {
			return nil
		}
	}
	x, _ := x509.ParseCertificate(cert)
	subject := x.Subject.String()
	name := safeName(x.Subject.CommonName) + "_" + s1 + ".der"
	saved := filepath.Join(p.path(rejectedDir), name)
	if err := os.MkdirAll(p.path(rejectedDir), 0o755); err == nil {
		_ = writeFileAtomic(saved, cert, 0o644)
	}
	ue := &UntrustedError{Subject: subject, SHA1: s1, SHA256: s256, SavedTo: saved}
	if own != nil {
		ue.ClientCert = own.certPath
		ue.ClientSHA1, _ = Thumbprints(own.cert)
	}
	return ue
}

// safeName keeps a certificate's common name as a file name that needs
// no quoting in a shell: letters, digits, '.', '-' and '_' (every other
// run of characters becomes one '_'), at most 64 bytes.
func safeName(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b = append(b, byte(r))
		case len(b) > 0 && b[len(b)-1] != '_':
			b = append(b, '_')
		}
	}
	out := strings.TrimLeft(strings.TrimRight(string(b), "_"), "-_.") // no leading "-": not an option
	if len(out) > 64 {
		out = out[:64]
	}
	if out == "" {
		out = "server"
	}
	return out
}
