package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/keys"
)

// An offline root: InitOptions.OfflineRoot makes the root in a directory of
// its own (root.json, root.crt, keys/root.key, or the HSM or KMS key
// root.json names), which can live on a machine that is never on the
// network. The server runs with the intermediates alone. A new
// intermediate generation is made in three steps: PrepareIntermediate on
// the server makes its key and a certificate request, SignIntermediate
// where the root is signs it, ImportIntermediate on the server adds it.

// offlineRootFile describes the root in its directory.
const offlineRootFile = "root.json"

// offlineRoot is root.json.
type offlineRoot struct {
	Name      string       `json:"name"`
	KeyType   keys.KeyType `json:"key_type"`
	Cert      string       `json:"cert"`
	Key       string       `json:"key"`
	CreatedAt time.Time    `json:"created_at"`
}

// makeOfflineRootDir creates dir (0700), which must not hold a root.
func makeOfflineRootDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, offlineRootFile)); err == nil {
		return fmt.Errorf("ca: init: %s already holds a root: %w", dir, ErrAlreadyInitialized)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return fmt.Errorf("ca: init: offline root: %w", err)
	}
	return nil
}

func writeOfflineRoot(dir string, r offlineRoot, rootPEM []byte) error {
	if err := keys.WriteFile(filepath.Join(dir, rootCertName), rootPEM, 0o644); err != nil {
		return fmt.Errorf("ca: init: offline root: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := keys.WriteFileExclusive(filepath.Join(dir, offlineRootFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("ca: init: offline root: %w", err)
	}
	return nil
}

// OfflineRootKeystore is the keystore of the root kept in dir: its
// encrypted key file in DIR/keys, or the HSM or KMS key root.json names.
func OfflineRootKeystore(dir string, passphrase []byte) *keys.Router {
	return keys.NewRouter(keys.NewFileBackend(filepath.Join(dir, "keys"), passphrase))
}

// SignIntermediate signs, with the root kept in rootDir, the certificate of
// the intermediate a request from PrepareIntermediate asks for. The request's
// signature must verify, and its subject must name an intermediate of this
// CA; the certificate has the intermediate profile and lifetime (0 means
// DefaultIssuerLifetime, capped at the root's), and is returned in PEM.
func SignIntermediate(ctx context.Context, rootDir string, kb keys.Backend, csrPEM []byte, lifetime time.Duration, now time.Time) ([]byte, *x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(rootDir, offlineRootFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("ca: %s holds no offline root (no %s)", rootDir, offlineRootFile)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	var r offlineRoot
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", filepath.Join(rootDir, offlineRootFile), err)
	}
	if !filepath.IsLocal(r.Cert) {
		return nil, nil, fmt.Errorf("ca: %s: the root certificate's path must stay in %s", offlineRootFile, rootDir)
	}
	root, _, err := readCert(filepath.Join(rootDir, r.Cert))
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, nil, errors.New("ca: the request is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse the request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("ca: the request's signature does not verify: %w", err)
	}
	if _, err := keys.TypeOf(csr.PublicKey); err != nil {
		return nil, nil, fmt.Errorf("ca: the request's key: %w", err)
	}
	if len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != r.Name || !strings.Contains(csr.Subject.CommonName, "Intermediate CA (") {
		return nil, nil, fmt.Errorf("ca: the request is for %q, not an intermediate of %q", Clip(csr.Subject.String()), r.Name)
	}
	rootKey, err := kb.Load(ctx, r.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: load the root's key: %w", err)
	}
	if !publicKeysEqual(rootKey.Public(), root.PublicKey) {
		return nil, nil, fmt.Errorf("ca: key %s does not match the root certificate", keys.Redact(r.Key))
	}
	if lifetime == 0 {
		lifetime = DefaultIssuerLifetime
	}
	if lifetime < 0 {
		return nil, nil, errors.New("ca: the lifetime must be positive")
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl, err := intermediateTemplate(csr.Subject, csr.PublicKey, now, notAfter)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, csr.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign the intermediate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert, nil
}

// PrepareIntermediate makes the key of the next generation of the named
// intermediate (generation 1 of a new name, lifetime 0 meaning
// DefaultIssuerLifetime) at place — where the newest generation's is, when
// place is zero — records it as pending in ca.json, and returns a
// certificate request for it in PEM. Its certificate comes from
// SignIntermediate and is added by ImportIntermediate.
func (h *Hierarchy) PrepareIntermediate(ctx context.Context, name string, lifetime time.Duration, place KeyPlace) ([]byte, int, error) {
	if err := validateIssuerName(name); err != nil {
		return nil, 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg, err := h.readConfig()
	if err != nil {
		return nil, 0, err
	}
	var newest *issuerConfig
	for _, list := range [][]issuerConfig{cfg.Issuers, cfg.Pending} {
		for i := range list {
			if ic := &list[i]; ic.Name == name && (newest == nil || ic.Generation > newest.Generation) {
				newest = ic
			}
		}
	}
	gen, kt := 1, cfg.KeyType
	if newest != nil {
		gen, kt = newest.Generation+1, newest.KeyType
		if lifetime == 0 {
			if lifetime, err = time.ParseDuration(newest.Lifetime); err != nil {
				return nil, 0, fmt.Errorf("ca: issuer %q in %s: bad lifetime %q", name, configName, newest.Lifetime)
			}
		}
		if place.URI == "" {
			uri, err := keys.SuccessorURI(newest.Key, name+"-"+strconv.Itoa(gen))
			if err != nil {
				return nil, 0, err
			}
			place = KeyPlace{URI: uri, Generate: true}
		}
	}
	if lifetime == 0 {
		lifetime = DefaultIssuerLifetime
	}
	keyName := name + "-" + strconv.Itoa(gen)
	signer, ref, err := h.createKey(ctx, place, keyName, kt)
	if err != nil {
		return nil, 0, fmt.Errorf("ca: create key of issuer %q generation %d: %w", name, gen, err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: caSubject(cfg.Name, fmt.Sprintf("Intermediate CA (%s, %d)", name, gen))}, signer)
	if err != nil {
		return nil, 0, fmt.Errorf("ca: request for issuer %q generation %d: %w", name, gen, err)
	}
	cfg.Pending = append(cfg.Pending, issuerConfig{Name: name, Generation: gen, Key: ref, Lifetime: lifetime.String(), KeyType: kt})
	if err := h.writeConfigLocked(cfg); err != nil {
		return nil, 0, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), gen, nil
}

// ImportIntermediate adds the certificate SignIntermediate made for a
// pending generation: it must be signed by this CA's root, be a CA
// certificate, and hold the public key of a pending generation's key. The
// generation then signs like any other (a running server picks it up at
// its next reload).
func (h *Hierarchy) ImportIntermediate(ctx context.Context, certPEM []byte) (*Issuer, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("ca: the file is not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: parse the certificate: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg, err := h.readConfig()
	if err != nil {
		return nil, err
	}
	root, _, err := h.rootCert(cfg)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("ca: the certificate is not signed by this CA's root: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("ca: the certificate is not an intermediate CA's")
	}
	at := -1
	for i, p := range cfg.Pending {
		key, err := h.kb.Load(ctx, p.Key)
		if err == nil && publicKeysEqual(key.Public(), cert.PublicKey) {
			at = i
			break
		}
	}
	if at < 0 {
		return nil, errors.New("ca: no pending generation has this certificate's key: make one with 'meshpki ca rotate-intermediate --csr FILE'")
	}
	ic := cfg.Pending[at]
	ic.Cert = path.Join(issuersDir, ic.Name+"-"+strconv.Itoa(ic.Generation)+".crt")
	if err := keys.WriteFile(filepath.Join(h.caDir, filepath.FromSlash(ic.Cert)), pem.EncodeToMemory(block), 0o644); err != nil {
		return nil, fmt.Errorf("ca: write %s: %w", ic.Cert, err)
	}
	cfg.Pending = slices.Delete(cfg.Pending, at, at+1)
	cfg.Issuers = append(cfg.Issuers, ic)
	if err := h.writeConfigLocked(cfg); err != nil {
		return nil, err
	}
	if err := h.reloadLocked(ctx); err != nil {
		return nil, err
	}
	if loaded := h.generation(ic.Name, ic.Generation); loaded != nil {
		return loaded, nil
	}
	return nil, fmt.Errorf("ca: issuer %q generation %d was added but has expired", ic.Name, ic.Generation)
}

// RootOffline reports whether the root's key is kept away from this data
// directory.
func (h *Hierarchy) RootOffline() bool { return h.state.Load().cfg.RootOffline }
