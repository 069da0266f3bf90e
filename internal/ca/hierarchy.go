package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
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
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/store"
)

// Errors of the hierarchy that callers branch on.
var (
	// ErrAlreadyInitialized is returned by Init when DIR/ca/ca.json exists.
	ErrAlreadyInitialized = errors.New("ca: already initialized")
	// ErrNotInitialized is returned by Load when DIR/ca/ca.json does not exist.
	ErrNotInitialized = errors.New("ca: not initialized")
	// ErrUnknownIssuer is wrapped by Issuer and RotateIntermediate when no
	// intermediate of that name exists or none is currently valid.
	ErrUnknownIssuer = errors.New("ca: unknown issuer")
	// ErrIssuerExists is returned by AddIssuer when the name is taken.
	ErrIssuerExists = errors.New("ca: issuer already exists")
	// ErrRootOffline is returned by what needs the root's key when the
	// root is kept offline (InitOptions.OfflineRoot).
	ErrRootOffline = errors.New("ca: the root is offline")
)

// Defaults of InitOptions and AddIssuer.
const (
	DefaultIssuerName     = "default"
	DefaultName           = "meshpki"
	DefaultRootLifetime   = 10 * 365 * 24 * time.Hour
	DefaultIssuerLifetime = 365 * 24 * time.Hour
)

// File names inside DIR/ca.
const (
	caDirName    = "ca"
	configName   = "ca.json"
	rootCertName = "root.crt"
	issuersDir   = "issuers"
	rootKeyName  = "root"
	tokenKeyName = "token"
	tokenKeySize = 32
	maxIssuerLen = 32
)

// InitOptions configure a new CA. The zero value of every field but
// TrustDomain selects its default.
type InitOptions struct {
	// Name is the organisation shown in subjects: "Acme Internal" gives
	// "Acme Internal Root CA" and "Acme Internal Intermediate CA (default, 1)".
	// At most 64 characters; "" means "meshpki".
	Name string
	// TrustDomain is the SPIFFE trust domain, e.g. "example.internal":
	// lowercase letters, digits, '.', '-' and '_'.
	TrustDomain string
	// KeyType is the key type of the root and of the intermediate
	// "default" ("" means ECDSA P-256).
	KeyType keys.KeyType
	// RootLifetime is the root's lifetime (0 means 10 years).
	RootLifetime time.Duration
	// IssuerLifetime is the lifetime of intermediate "default", capped at
	// the root's (0 means 1 year).
	IssuerLifetime time.Duration
	// Now is the clock (nil means time.Now).
	Now func() time.Time
	// Root and Issuer say where the root's key and intermediate
	// "default"'s key are kept, and TokenKey where the HMAC key that signs
	// one-time tokens (and derives the server's sealing keys) is; the zero
	// KeyPlace is an encrypted file in DIR/ca/keys.
	Root, Issuer, TokenKey KeyPlace
	// ServerKeys, if set, is a key URI (an HSM token, a KMS account) where
	// the server generates the keys it makes for itself: the JWT-SVID and
	// audit checkpoint keys (default: encrypted files in DIR/ca/keys).
	ServerKeys string
	// JWTSVIDKey, if set, is the key URI where the server generates its
	// JWT-SVID signing key (ahead of ServerKeys).
	JWTSVIDKey string
	// RootKeys is the keystore of the offline root's key (OfflineRoot):
	// keys.OpenRootKeystore(OfflineRoot, passphrase).
	RootKeys keys.Keystore
	// OfflineRoot, if set, is a directory apart from the data directory
	// where the root's certificate, its key (unless Root names an HSM or
	// KMS key) and root.json are kept; the data directory gets the root's
	// certificate alone, and the server never reads OfflineRoot.
	OfflineRoot string
}

// KeyPlace is where a CA key is kept: a key URI (keys.Router.CreateAt) —
// an HSM object, a KMS key, or "" for an encrypted file in DIR/ca/keys —
// and whether the key is generated there (Generate) or is one already
// there.
type KeyPlace struct {
	URI      string
	Generate bool
}

// keyCreator is a keystore that can put keys where a key URI says
// (keys.Router).
type keyCreator interface {
	CreateAt(ctx context.Context, uri string, kt keys.KeyType, generate bool) (crypto.Signer, string, error)
}

// macCreator is a keystore that can put the token MAC key where a key URI
// says (keys.Router).
type macCreator interface {
	CreateMACAt(ctx context.Context, uri string, generate bool) (string, error)
}

// createKey makes the key named name, at place if it names one.
func (h *Hierarchy) createKey(ctx context.Context, place KeyPlace, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	if place.URI == "" {
		return h.kb.Create(ctx, name, kt)
	}
	kc, ok := h.kb.(keyCreator)
	if !ok {
		return nil, "", fmt.Errorf("ca: this keystore keeps keys in files only, not at %s", keys.Redact(place.URI))
	}
	return kc.CreateAt(ctx, place.URI, kt, place.Generate)
}

// Issuer is one generation of a named intermediate with its signer. It is
// immutable once returned.
type Issuer struct {
	// Name is the intermediate's name in ca.json and in policies, e.g. "default".
	Name string
	// Generation counts rotations of Name, starting at 1.
	Generation int
	// Cert is this generation's certificate, signed by the root.
	Cert *x509.Certificate
	// Signer is this generation's private key; it is safe for concurrent use.
	Signer crypto.Signer
	// Lifetime is the validity a rotation gives the next generation.
	Lifetime time.Duration
	// KeyType is the type of Signer, and of the next generation's key.
	KeyType keys.KeyType
	// RevokedAt, if set, is when the root revoked this generation
	// (RevokeIssuer), with the RFC 5280 reason code RevocationReason. A
	// revoked generation signs nothing more; the root's CRL lists it.
	RevokedAt        time.Time
	RevocationReason int

	pem    []byte
	keyRef string
	file   string
}

// Hierarchy is the CA's root and intermediates as recorded in DIR/ca/ca.json.
// It is safe for concurrent use: readers (Issuer, Issuers, RootsPEM, ...)
// take no lock; AddIssuer, RotateIntermediate and Reload are serialised
// within the process and replace the whole state at once.
type Hierarchy struct {
	caDir string
	kb    keys.Backend
	now   func() time.Time

	mu    sync.Mutex // serialises writers
	state atomic.Pointer[hierarchyState]
	// revokedElsewhere are the generations the store says the root
	// revoked, by certificate serial: applied over ca.json at every load,
	// for a copy of DIR/ca that predates the revocation. Under mu.
	revokedElsewhere map[string]store.IssuerRevocation
}

// hierarchyState is an immutable snapshot.
type hierarchyState struct {
	cfg     caConfig
	root    *x509.Certificate
	rootPEM []byte
	issuers []*Issuer            // newest first
	byName  map[string][]*Issuer // per name, newest generation first
}

// caConfig is the JSON form of ca.json. Paths are relative to DIR/ca and use
// forward slashes; key references are those the key backend returned.
type caConfig struct {
	Name        string         `json:"name"`
	TrustDomain string         `json:"trust_domain"`
	KeyType     keys.KeyType   `json:"key_type"`
	CreatedAt   time.Time      `json:"created_at"`
	Root        rootConfig     `json:"root"`
	TokenKey    string         `json:"token_key"`
	Issuers     []issuerConfig `json:"issuers"`
	// ServerKeys, if set, is the key URI under which the server keeps the
	// keys it makes for itself (keys.SuccessorURI of it, named after each).
	ServerKeys string `json:"server_keys,omitempty"`
	// JWTSVIDKey, if set, is the key URI of the JWT-SVID signing key
	// (ahead of ServerKeys).
	JWTSVIDKey string `json:"jwt_svid_key,omitempty"`
	// RootOffline is set when the root's key is kept away from the
	// server (InitOptions.OfflineRoot); Root.Key is then empty.
	RootOffline bool `json:"root_offline,omitempty"`
	// Pending are generations whose keys are made and whose certificates
	// the offline root has yet to sign (PrepareIntermediate).
	Pending []issuerConfig `json:"pending,omitempty"`
}

type rootConfig struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

type issuerConfig struct {
	Name       string       `json:"name"`
	Generation int          `json:"generation"`
	Cert       string       `json:"cert"`
	Key        string       `json:"key"`
	Lifetime   string       `json:"lifetime"`
	KeyType    keys.KeyType `json:"key_type"`
	RevokedAt  *time.Time   `json:"revoked_at,omitempty"`
	Reason     int          `json:"revocation_reason,omitempty"`
}

// Initialized reports whether dataDir holds a CA (DIR/ca/ca.json exists).
func Initialized(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, caDirName, configName))
	return err == nil
}

// Init creates a CA in dataDir: a self-signed root, the intermediate
// "default" (generation 1) and a 32-byte token MAC secret, all keys created
// through kb, which must keep its files in DIR/ca/keys. ca.json is written
// last, so a CA exists only once Init succeeds. It returns
// ErrAlreadyInitialized if dataDir holds a CA.
func Init(ctx context.Context, dataDir string, opts InitOptions, kb keys.Keystore) (*Hierarchy, error) {
	return initHierarchy(ctx, dataDir, opts, kb)
}

func initHierarchy(ctx context.Context, dataDir string, opts InitOptions, kb keys.Keystore) (_ *Hierarchy, err error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if err := validateName(opts.Name); err != nil {
		return nil, err
	}
	if err := ValidateTrustDomain(opts.TrustDomain); err != nil {
		return nil, err
	}
	if opts.KeyType == "" {
		opts.KeyType = keys.ECP256
	}
	if _, err := keys.ParseKeyType(string(opts.KeyType)); err != nil {
		return nil, fmt.Errorf("ca: init: %w", err)
	}
	if opts.RootLifetime == 0 {
		opts.RootLifetime = DefaultRootLifetime
	}
	if opts.IssuerLifetime == 0 {
		opts.IssuerLifetime = DefaultIssuerLifetime
	}
	if opts.RootLifetime < 0 || opts.IssuerLifetime < 0 {
		return nil, errors.New("ca: init: lifetimes must be positive")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ServerKeys != "" {
		// The server finds its keys again by name: a token's object label,
		// a KMS alias.
		uri, err := keys.SuccessorURI(opts.ServerKeys, "jwt-svid")
		if err != nil || uri == "" || (keys.Scheme(uri) == "awskms" && !strings.Contains(uri, ":///alias/")) {
			return nil, fmt.Errorf("ca: init: the server's keys need a place they are found again by name: a pkcs11: token, or awskms:///alias/PREFIX (not %s)", keys.Redact(opts.ServerKeys))
		}
	}
	if Initialized(dataDir) {
		return nil, ErrAlreadyInitialized
	}
	h := &Hierarchy{caDir: filepath.Join(dataDir, caDirName), kb: kb, now: opts.Now}
	// A failed Init leaves no CA directory behind if it made it: a wrong
	// HSM PIN or a missing token changes nothing on disk. (A key already
	// generated in an HSM or KMS stays there; the error says which.)
	if _, statErr := os.Stat(h.caDir); errors.Is(statErr, fs.ErrNotExist) {
		defer func() {
			if err != nil {
				os.RemoveAll(h.caDir)
			}
		}()
	}
	if err := os.MkdirAll(filepath.Join(h.caDir, issuersDir), 0o700); err != nil {
		return nil, fmt.Errorf("ca: init: %w", err)
	}

	now := opts.Now()
	rootKeys := h
	if opts.OfflineRoot != "" {
		if opts.RootKeys == nil {
			return nil, errors.New("ca: init: an offline root needs InitOptions.RootKeys")
		}
		if err := makeOfflineRootDir(opts.OfflineRoot); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				os.RemoveAll(opts.OfflineRoot)
			}
		}()
		rootKeys = &Hierarchy{kb: opts.RootKeys}
	}
	rootKey, rootRef, err := rootKeys.createKey(ctx, opts.Root, rootKeyName, opts.KeyType)
	if err != nil {
		return nil, fmt.Errorf("ca: init: create root key: %w", err)
	}
	root, rootPEM, err := createRoot(opts.Name, rootKey, now, opts.RootLifetime)
	if err != nil {
		return nil, err
	}
	if err := keys.WriteFile(filepath.Join(h.caDir, rootCertName), rootPEM, 0o644); err != nil {
		return nil, fmt.Errorf("ca: init: write root: %w", err)
	}
	if opts.OfflineRoot != "" {
		if err := writeOfflineRoot(opts.OfflineRoot, offlineRoot{Name: opts.Name, KeyType: opts.KeyType, Cert: rootCertName, Key: rootRef,
			CreatedAt: now.UTC().Truncate(time.Second)}, rootPEM); err != nil {
			return nil, err
		}
		rootRef = ""
	}
	var tokenRef string
	if opts.TokenKey.URI == "" {
		_, tokenRef, err = kb.CreateSecret(ctx, tokenKeyName, tokenKeySize)
	} else if mc, ok := kb.(macCreator); ok {
		tokenRef, err = mc.CreateMACAt(ctx, opts.TokenKey.URI, opts.TokenKey.Generate)
	} else {
		err = fmt.Errorf("this keystore keeps keys in files only, not at %s", keys.Redact(opts.TokenKey.URI))
	}
	if err != nil {
		return nil, fmt.Errorf("ca: init: create the token MAC key: %w", err)
	}
	cfg := caConfig{
		Name:        opts.Name,
		TrustDomain: opts.TrustDomain,
		KeyType:     opts.KeyType,
		CreatedAt:   now.UTC().Truncate(time.Second),
		Root:        rootConfig{Cert: rootCertName, Key: rootRef},
		TokenKey:    tokenRef,
		ServerKeys:  opts.ServerKeys,
		JWTSVIDKey:  opts.JWTSVIDKey,
		RootOffline: opts.OfflineRoot != "",
	}
	iss, ic, err := h.mintIssuer(ctx, &cfg, root, rootKey, DefaultIssuerName, 1, opts.IssuerLifetime, opts.KeyType, opts.Issuer, now)
	if err != nil {
		return nil, err
	}
	cfg.Issuers = []issuerConfig{ic}
	data, err := marshalConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := keys.WriteFileExclusive(filepath.Join(h.caDir, configName), data, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, ErrAlreadyInitialized
		}
		return nil, fmt.Errorf("ca: init: write %s: %w", configName, err)
	}
	h.state.Store(newState(cfg, root, rootPEM, []*Issuer{iss}))
	return h, nil
}

// Load reads the CA in dataDir: the root certificate, and the certificate
// and signer of every intermediate generation that has not expired. The root
// key is not loaded. It returns ErrNotInitialized if dataDir holds no CA.
func Load(ctx context.Context, dataDir string, kb keys.Backend) (*Hierarchy, error) {
	return load(ctx, dataDir, kb, time.Now)
}

// LoadWithClock is Load with the clock that decides which intermediates
// are current (now nil means time.Now).
func LoadWithClock(ctx context.Context, dataDir string, kb keys.Backend, now func() time.Time) (*Hierarchy, error) {
	if now == nil {
		now = time.Now
	}
	return load(ctx, dataDir, kb, now)
}

func load(ctx context.Context, dataDir string, kb keys.Backend, now func() time.Time) (*Hierarchy, error) {
	h := &Hierarchy{caDir: filepath.Join(dataDir, caDirName), kb: kb, now: now}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.reloadLocked(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload re-reads ca.json, so that a running server picks up an intermediate
// added or rotated by another process, and replaces the state at once.
// Signers of generations already loaded are reused. On error the previous
// state stays in use.
func (h *Hierarchy) Reload(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reloadLocked(ctx)
}

func (h *Hierarchy) reloadLocked(ctx context.Context) error {
	cfg, err := h.readConfig()
	if err != nil {
		return err
	}
	root, rootPEM, err := h.rootCert(cfg)
	if err != nil {
		return err
	}
	loaded := map[string]*Issuer{}
	if old := h.state.Load(); old != nil {
		for _, iss := range old.issuers {
			loaded[iss.file+"\x00"+iss.keyRef] = iss
		}
	}
	now := h.now()
	var issuers []*Issuer
	for _, ic := range cfg.Issuers {
		if iss, ok := loaded[ic.Cert+"\x00"+ic.Key]; ok && iss.Name == ic.Name && iss.Generation == ic.Generation && bytes.Equal(iss.Cert.RawIssuer, root.RawSubject) {
			if now.Before(iss.Cert.NotAfter) {
				if ic.RevokedAt != nil && iss.RevokedAt.IsZero() {
					iss = iss.revoked(*ic.RevokedAt, ic.Reason)
				}
				issuers = append(issuers, iss)
			}
			continue
		}
		iss, err := h.loadIssuer(ctx, ic, root, now)
		if err != nil {
			return err
		}
		if iss != nil {
			issuers = append(issuers, iss)
		}
	}
	h.overlayRevocations(issuers)
	h.state.Store(newState(cfg, root, rootPEM, issuers))
	return nil
}

// revoked is a copy of iss revoked at for reason: issuers are immutable, so
// a revoked one is a new value.
func (iss *Issuer) revoked(at time.Time, reason int) *Issuer {
	c := *iss
	c.RevokedAt, c.RevocationReason = at.UTC(), reason
	return &c
}

// overlayRevocations replaces, in issuers, each generation the store
// revoked and ca.json does not with a revoked copy (issuers are
// immutable), and returns the copies. Under mu.
func (h *Hierarchy) overlayRevocations(issuers []*Issuer) []*Issuer {
	var applied []*Issuer
	for i, iss := range issuers {
		if r, ok := h.revokedElsewhere[string(store.SerialOf(iss.Cert.SerialNumber))]; ok && iss.RevokedAt.IsZero() {
			issuers[i] = iss.revoked(r.RevokedAt, r.Reason)
			applied = append(applied, issuers[i])
		}
	}
	return applied
}

// ApplyRevocations marks the generations among rs that ca.json does not
// show revoked as revoked from now on, as RevokeIssuer would, without
// writing ca.json: rs are what the store shared by the replicas recorded,
// and this replica's DIR/ca may be a copy made before. It returns the
// generations newly revoked here.
func (h *Hierarchy) ApplyRevocations(rs []store.IssuerRevocation) []*Issuer {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.revokedElsewhere == nil {
		h.revokedElsewhere = map[string]store.IssuerRevocation{}
	}
	for _, r := range rs {
		h.revokedElsewhere[string(r.Serial)] = r
	}
	old := h.state.Load()
	issuers := slices.Clone(old.issuers)
	applied := h.overlayRevocations(issuers)
	if len(applied) > 0 {
		h.state.Store(newState(old.cfg, old.root, old.rootPEM, issuers))
	}
	return applied
}

// loadIssuer reads one generation; it returns nil, nil if it has expired.
func (h *Hierarchy) loadIssuer(ctx context.Context, ic issuerConfig, root *x509.Certificate, now time.Time) (*Issuer, error) {
	certPath, err := h.path(ic.Cert)
	if err != nil {
		return nil, err
	}
	cert, certPEM, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	if !now.Before(cert.NotAfter) {
		return nil, nil
	}
	label := fmt.Sprintf("issuer %q generation %d", ic.Name, ic.Generation)
	if err := cert.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("ca: %s (%s) is not signed by the root: %w", label, ic.Cert, err)
	}
	lifetime, err := time.ParseDuration(ic.Lifetime)
	if err != nil {
		return nil, fmt.Errorf("ca: %s in %s: lifetime: %w", label, configName, err)
	}
	signer, err := h.kb.Load(ctx, ic.Key)
	if err != nil {
		return nil, fmt.Errorf("ca: load key of %s: %w", label, err)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("ca: key %s does not match the certificate of %s", ic.Key, label)
	}
	iss := &Issuer{
		Name:       ic.Name,
		Generation: ic.Generation,
		Cert:       cert,
		Signer:     signer,
		Lifetime:   lifetime,
		KeyType:    ic.KeyType,
		pem:        certPEM,
		keyRef:     ic.Key,
		file:       ic.Cert,
	}
	if ic.RevokedAt != nil {
		iss.RevokedAt, iss.RevocationReason = ic.RevokedAt.UTC(), ic.Reason
	}
	return iss, nil
}

// Name returns the CA's name, as given to Init.
func (h *Hierarchy) Name() string { return h.state.Load().cfg.Name }

// TrustDomain returns the SPIFFE trust domain.
func (h *Hierarchy) TrustDomain() string { return h.state.Load().cfg.TrustDomain }

// Root returns the root certificate.
func (h *Hierarchy) Root() *x509.Certificate { return h.state.Load().root }

// ServerKeysURI is where the server keeps the keys it makes for itself
// ("" for files; see InitOptions.ServerKeys).
func (h *Hierarchy) ServerKeysURI() string { return h.state.Load().cfg.ServerKeys }

// JWTSVIDKeyURI is where the server keeps its JWT-SVID key, if ca.json
// names a place for it alone ("" otherwise; see ServerKeysURI).
func (h *Hierarchy) JWTSVIDKeyURI() string { return h.state.Load().cfg.JWTSVIDKey }

// RootKeyRef is the reference of the root's key (a file or a key URI).
func (h *Hierarchy) RootKeyRef() string { return h.state.Load().cfg.Root.Key }

// KeyRef is the reference of the generation's key: "file:NAME.key" or the
// key URI of its HSM object or KMS key.
func (iss *Issuer) KeyRef() string { return iss.keyRef }

// TokenKeyRef returns the key backend reference of the token MAC secret.
func (h *Hierarchy) TokenKeyRef() string { return h.state.Load().cfg.TokenKey }

// RootsPEM returns the root certificate in PEM form, as served at /roots.pem.
func (h *Hierarchy) RootsPEM() []byte { return slices.Clone(h.state.Load().rootPEM) }

// Issuer returns the newest generation of the named intermediate that is
// valid now. The error wraps ErrUnknownIssuer when there is none.
func (h *Hierarchy) Issuer(name string) (*Issuer, error) {
	gens := h.state.Load().byName[name]
	if len(gens) == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownIssuer, name)
	}
	now := h.now()
	for _, iss := range gens {
		if iss.RevokedAt.IsZero() && !now.Before(iss.Cert.NotBefore) && now.Before(iss.Cert.NotAfter) {
			return iss, nil
		}
	}
	return nil, fmt.Errorf("%w %q: no generation is valid at %s", ErrUnknownIssuer, name, now.UTC().Format(time.RFC3339))
}

// Issuers returns every loaded generation of every intermediate, newest
// first.
func (h *Hierarchy) Issuers() []*Issuer {
	return slices.Clone(h.state.Load().issuers)
}

// IntermediatesPEM returns, newest first, every intermediate certificate not
// expired at now, so that relying parties can build chains for leaves of
// older generations until those expire.
func (h *Hierarchy) IntermediatesPEM(now time.Time) []byte {
	var buf bytes.Buffer
	for _, iss := range h.state.Load().issuers {
		if now.Before(iss.Cert.NotAfter) {
			buf.Write(iss.pem)
		}
	}
	return buf.Bytes()
}

// AddIssuer creates a new named intermediate, generation 1, signed by the
// root. name is 1 to 32 characters of [a-z0-9-], not starting with '-';
// lifetime 0 means 1 year and
// kt "" means the CA's key type. It returns ErrIssuerExists if ca.json has an
// intermediate of that name.
func (h *Hierarchy) AddIssuer(ctx context.Context, name string, lifetime time.Duration, kt keys.KeyType) (*Issuer, error) {
	return h.AddIssuerAt(ctx, name, lifetime, kt, KeyPlace{})
}

// AddIssuerAt is AddIssuer with the new intermediate's key kept at place.
func (h *Hierarchy) AddIssuerAt(ctx context.Context, name string, lifetime time.Duration, kt keys.KeyType, place KeyPlace) (*Issuer, error) {
	if err := validateIssuerName(name); err != nil {
		return nil, err
	}
	if lifetime == 0 {
		lifetime = DefaultIssuerLifetime
	}
	if lifetime < 0 {
		return nil, errors.New("ca: add issuer: lifetime must be positive")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg, err := h.readConfig()
	if err != nil {
		return nil, err
	}
	if kt == "" {
		kt = cfg.KeyType
	}
	if _, err := keys.ParseKeyType(string(kt)); err != nil {
		return nil, fmt.Errorf("ca: add issuer: %w", err)
	}
	for _, ic := range cfg.Issuers {
		if ic.Name == name {
			return nil, fmt.Errorf("%w: %q", ErrIssuerExists, name)
		}
	}
	return h.extendLocked(ctx, cfg, name, 1, lifetime, kt, place)
}

// ReservedIssuerName cannot name an intermediate: it names the root's CRL.
const ReservedIssuerName = "root"

// RootSigner loads the root's key, for the root's CRL.
func (h *Hierarchy) RootSigner(ctx context.Context) (crypto.Signer, error) {
	cfg, err := h.readConfig()
	if err != nil {
		return nil, err
	}
	if cfg.RootOffline {
		return nil, ErrRootOffline
	}
	key, err := h.kb.Load(ctx, cfg.Root.Key)
	if err != nil {
		return nil, fmt.Errorf("ca: load the root key: %w", err)
	}
	return key, nil
}

// RevokeIssuer records that the root revokes generation gen of the named
// intermediate at the given time for an RFC 5280 reason (it signs nothing
// more, and the root's CRL lists it), and reloads. Revoking a revoked
// generation changes nothing. The error wraps ErrUnknownIssuer when there
// is no such generation.
func (h *Hierarchy) RevokeIssuer(ctx context.Context, name string, gen int, at time.Time, reason int) (*Issuer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg, err := h.readConfig()
	if err != nil {
		return nil, err
	}
	found := false
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		if ic.Name == name && ic.Generation == gen {
			found = true
			if ic.RevokedAt == nil {
				t := at.UTC().Truncate(time.Second)
				ic.RevokedAt, ic.Reason = &t, reason
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w %q generation %d", ErrUnknownIssuer, name, gen)
	}
	if err := h.writeConfigLocked(cfg); err != nil {
		return nil, err
	}
	if err := h.reloadLocked(ctx); err != nil {
		return nil, err
	}
	if iss := h.generation(name, gen); iss != nil {
		return iss, nil
	}
	return nil, fmt.Errorf("%w %q generation %d: expired", ErrUnknownIssuer, name, gen)
}

// writeConfigLocked replaces ca.json (0600) with cfg.
func (h *Hierarchy) writeConfigLocked(cfg caConfig) error {
	data, err := marshalConfig(cfg)
	if err != nil {
		return err
	}
	if err := keys.WriteFile(filepath.Join(h.caDir, configName), data, 0o600); err != nil {
		return fmt.Errorf("ca: write %s: %w", configName, err)
	}
	return nil
}

// RotateIntermediate creates generation n+1 of the named intermediate with
// the same lifetime and key type as generation n. Older generations stay in
// ca.json, loaded and published, until they expire; Issuer returns the new
// one from now on. The error wraps ErrUnknownIssuer if there is no such
// intermediate.
//
// The new key is kept where the newest generation's is: a file again, or,
// for a key in an HSM or KMS, a new key generated in the same token or
// account (keys.SuccessorURI), named after the new generation.
func (h *Hierarchy) RotateIntermediate(ctx context.Context, name string) (*Issuer, error) {
	return h.RotateIntermediateAt(ctx, name, KeyPlace{})
}

// RotateIntermediateAt is RotateIntermediate with the new generation's key
// kept at place (the zero KeyPlace: where the newest generation's is).
func (h *Hierarchy) RotateIntermediateAt(ctx context.Context, name string, place KeyPlace) (*Issuer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg, err := h.readConfig()
	if err != nil {
		return nil, err
	}
	var newest *issuerConfig
	for i := range cfg.Issuers {
		if ic := &cfg.Issuers[i]; ic.Name == name && (newest == nil || ic.Generation > newest.Generation) {
			newest = ic
		}
	}
	if newest == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownIssuer, name)
	}
	lifetime, err := time.ParseDuration(newest.Lifetime)
	if err != nil || lifetime <= 0 {
		return nil, fmt.Errorf("ca: issuer %q in %s: bad lifetime %q", name, configName, newest.Lifetime)
	}
	if place.URI == "" {
		uri, err := keys.SuccessorURI(newest.Key, name+"-"+strconv.Itoa(newest.Generation+1))
		if err != nil {
			return nil, fmt.Errorf("ca: rotate %q: %w", name, err)
		}
		place = KeyPlace{URI: uri, Generate: true}
	}
	return h.extendLocked(ctx, cfg, name, newest.Generation+1, lifetime, newest.KeyType, place)
}

// extendLocked mints an intermediate with the root key, records it in
// ca.json and reloads the state. cfg is the configuration just read from
// disk, so changes made by other processes are kept.
func (h *Hierarchy) extendLocked(ctx context.Context, cfg caConfig, name string, gen int, lifetime time.Duration, kt keys.KeyType, place KeyPlace) (*Issuer, error) {
	root, _, err := h.rootCert(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.RootOffline {
		return nil, fmt.Errorf("%w: make the key and a request with 'meshpki ca rotate-intermediate --csr FILE', sign it where the root is with 'meshpki ca sign-intermediate', and bring the certificate back with 'meshpki ca import-intermediate'", ErrRootOffline)
	}
	rootKey, err := h.kb.Load(ctx, cfg.Root.Key)
	if err != nil {
		return nil, fmt.Errorf("ca: load root key: %w", err)
	}
	if !publicKeysEqual(rootKey.Public(), root.PublicKey) {
		return nil, fmt.Errorf("ca: key %s does not match the root certificate", keys.Redact(cfg.Root.Key))
	}
	iss, ic, err := h.mintIssuer(ctx, &cfg, root, rootKey, name, gen, lifetime, kt, place, h.now())
	if err != nil {
		return nil, err
	}
	cfg.Issuers = append(cfg.Issuers, ic)
	if err := h.writeConfigLocked(cfg); err != nil {
		return nil, err
	}
	if err := h.reloadLocked(ctx); err != nil {
		return nil, err
	}
	// Return the instance the state holds, so that callers and Issuer
	// agree on identity.
	if loaded := h.generation(name, gen); loaded != nil {
		return loaded, nil
	}
	return iss, nil
}

// generation is the loaded generation gen of the named intermediate, or
// nil (none, or expired).
func (h *Hierarchy) generation(name string, gen int) *Issuer {
	for _, iss := range h.state.Load().byName[name] {
		if iss.Generation == gen {
			return iss
		}
	}
	return nil
}

// mintIssuer creates the key and certificate of one intermediate generation
// and writes the certificate file; the caller records it in ca.json.
func (h *Hierarchy) mintIssuer(ctx context.Context, cfg *caConfig, root *x509.Certificate, rootKey crypto.Signer, name string, gen int, lifetime time.Duration, kt keys.KeyType, place KeyPlace, now time.Time) (*Issuer, issuerConfig, error) {
	keyName := name + "-" + strconv.Itoa(gen)
	label := fmt.Sprintf("issuer %q generation %d", name, gen)
	signer, ref, err := h.createKey(ctx, place, keyName, kt)
	if err != nil {
		return nil, issuerConfig{}, fmt.Errorf("ca: create key of %s: %w", label, err)
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl, err := intermediateTemplate(caSubject(cfg.Name, fmt.Sprintf("Intermediate CA (%s, %d)", name, gen)), signer.Public(), now, notAfter)
	if err != nil {
		return nil, issuerConfig{}, fmt.Errorf("ca: %s: %w", label, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, signer.Public(), rootKey)
	if err != nil {
		return nil, issuerConfig{}, fmt.Errorf("ca: sign %s: %w", label, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, issuerConfig{}, fmt.Errorf("ca: parse %s: %w", label, err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	file := path.Join(issuersDir, keyName+".crt")
	if err := keys.WriteFile(filepath.Join(h.caDir, filepath.FromSlash(file)), certPEM, 0o644); err != nil {
		return nil, issuerConfig{}, fmt.Errorf("ca: write %s: %w", label, err)
	}
	iss := &Issuer{
		Name:       name,
		Generation: gen,
		Cert:       cert,
		Signer:     signer,
		Lifetime:   lifetime,
		KeyType:    kt,
		pem:        certPEM,
		keyRef:     ref,
		file:       file,
	}
	ic := issuerConfig{Name: name, Generation: gen, Cert: file, Key: ref, Lifetime: lifetime.String(), KeyType: kt}
	return iss, ic, nil
}

// intermediateTemplate is the profile of every intermediate: CA, path
// length 0, certificate and CRL signing, a fresh serial.
func intermediateTemplate(subject pkix.Name, pub crypto.PublicKey, now, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}, nil
}

// createRoot self-signs the root certificate.
func createRoot(name string, key crypto.Signer, now time.Time, lifetime time.Duration) (*x509.Certificate, []byte, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("ca: root: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               caSubject(name, "Root CA"),
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse root: %w", err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// caSubject is O=name, CN="name role", or CN=role alone when that would
// exceed the 64-character bound of a common name.
func caSubject(name, role string) pkix.Name {
	cn := name + " " + role
	if utf8.RuneCountInString(cn) > maxCommonNameLength {
		cn = role
	}
	return pkix.Name{Organization: []string{name}, CommonName: cn}
}

func newState(cfg caConfig, root *x509.Certificate, rootPEM []byte, issuers []*Issuer) *hierarchyState {
	slices.SortStableFunc(issuers, func(a, b *Issuer) int {
		if c := b.Cert.NotBefore.Compare(a.Cert.NotBefore); c != 0 {
			return c
		}
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		return b.Generation - a.Generation
	})
	byName := make(map[string][]*Issuer)
	for _, iss := range issuers {
		byName[iss.Name] = append(byName[iss.Name], iss)
	}
	for _, gens := range byName {
		slices.SortStableFunc(gens, func(a, b *Issuer) int { return b.Generation - a.Generation })
	}
	return &hierarchyState{cfg: cfg, root: root, rootPEM: rootPEM, issuers: issuers, byName: byName}
}

func (h *Hierarchy) readConfig() (caConfig, error) {
	var cfg caConfig
	data, err := os.ReadFile(filepath.Join(h.caDir, configName))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("%w: %s not found", ErrNotInitialized, filepath.Join(h.caDir, configName))
	}
	if err != nil {
		return cfg, fmt.Errorf("ca: %w", err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("ca: parse %s: %w", filepath.Join(h.caDir, configName), err)
	}
	if cfg.Root.Cert == "" || (cfg.Root.Key == "" && !cfg.RootOffline) {
		return cfg, fmt.Errorf("ca: %s: no root", filepath.Join(h.caDir, configName))
	}
	return cfg, nil
}

func marshalConfig(cfg caConfig) ([]byte, error) {
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("ca: encode %s: %w", configName, err)
	}
	return append(data, '\n'), nil
}

// path resolves a path recorded in ca.json, which must stay inside DIR/ca.
func (h *Hierarchy) path(rel string) (string, error) {
	p := filepath.FromSlash(rel)
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("ca: %s: path %q is outside the CA directory", configName, rel)
	}
	return filepath.Join(h.caDir, p), nil
}

// rootCert reads the root certificate ca.json names.
func (h *Hierarchy) rootCert(cfg caConfig) (*x509.Certificate, []byte, error) {
	p, err := h.path(cfg.Root.Cert)
	if err != nil {
		return nil, nil, err
	}
	return readCert(p)
}

// readCert reads a file holding one PEM certificate and returns it parsed
// and re-encoded.
func readCert(file string) (*x509.Certificate, []byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("ca: %s: no PEM certificate", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", file, err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// ValidateTrustDomain checks a SPIFFE trust domain name: 1 to 255 characters
// of lowercase letters, digits, '.', '-' and '_' (SPIFFE-ID, section 2.1).
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("ca: trust domain is empty")
	}
	if len(td) > 255 {
		return fmt.Errorf("ca: trust domain is longer than 255 characters")
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("ca: trust domain %q: character %q is not allowed (use lowercase letters, digits, '.', '-' and '_')", td, r)
		}
	}
	return nil
}

func validateName(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("ca: name is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > maxCommonNameLength {
		return fmt.Errorf("ca: name %q is longer than %d characters", name, maxCommonNameLength)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("ca: name %q contains the unprintable character %q", name, r)
		}
	}
	return nil
}

func validateIssuerName(name string) error {
	if name == "" || len(name) > maxIssuerLen {
		return fmt.Errorf("ca: issuer name %q must be 1 to %d characters", name, maxIssuerLen)
	}
	if name == ReservedIssuerName {
		return fmt.Errorf("ca: issuer name %q is reserved: /crl/%s is the root's CRL", name, name)
	}
	for i, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0) {
			return fmt.Errorf("ca: issuer name %q: character %q is not allowed (use a-z, 0-9 and '-', starting with a letter or digit)", name, r)
		}
	}
	return nil
}
