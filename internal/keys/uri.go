package keys

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
)

// Key URIs name where a CA key lives: "file:NAME.key" (an encrypted PKCS#8
// file in the key directory, the default), "pkcs11:…" (RFC 7512: a key
// pair on a PKCS#11 token, an HSM), "awskms:…" (a key in AWS KMS). Each
// scheme other than file is a Provider; a Router is the Keystore that
// sends each reference to the one its scheme names.

// Provider keeps keys somewhere other than the key directory: an HSM, a
// cloud KMS. The private key never leaves it; the Signer it returns asks
// it to sign. A Google Cloud KMS or Azure Key Vault provider is one more
// implementation of these three methods in a file of its own, registered
// under its scheme with RegisterProvider.
type Provider interface {
	// Generate makes a new key of type kt inside the device or service, at
	// the place uri names, and returns its signer and the URI Open takes
	// from now on (which may pin what uri left open, such as a KMS key's
	// id). A key already at that place is an error wrapping fs.ErrExist.
	Generate(ctx context.Context, uri string, kt KeyType) (crypto.Signer, string, error)
	// Open returns the signer of the existing key uri names. A key that is
	// not there is an error wrapping fs.ErrNotExist.
	Open(ctx context.Context, uri string) (crypto.Signer, error)
	// Close releases sessions and connections.
	Close() error
}

// ProviderFactory makes the provider of one scheme.
type ProviderFactory func() (Provider, error)

var (
	factoriesMu sync.Mutex
	factories   = map[string]ProviderFactory{}
)

// RegisterProvider makes scheme ("pkcs11", "awskms") known to every Router.
func RegisterProvider(scheme string, f ProviderFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	factories[scheme] = f
}

// Scheme returns the scheme of a key reference or URI: "file", "pkcs11",
// "awskms", or "" when it has none.
func Scheme(ref string) string {
	scheme, _, ok := strings.Cut(ref, ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/.\\") {
		return ""
	}
	return scheme
}

// Router is the Keystore of a CA whose keys may live in several places.
// Keys created by name (Create), secrets and file: references are the
// FileBackend's; a reference or URI of another scheme goes to that
// scheme's Provider, made on first use and kept.
type Router struct {
	*FileBackend

	mu        sync.Mutex
	providers map[string]Provider
	placed    map[string]string // name → key URI (Place)
}

var _ Keystore = (*Router)(nil)

// OpenKeystore is the keystore of the CA in dataDir: a Router over the
// encrypted files in DIR/ca/keys.
func OpenKeystore(dataDir string, passphrase []byte) *Router {
	return NewRouter(NewFileBackend(filepath.Join(dataDir, "ca", "keys"), passphrase))
}

// NewRouter returns a Router over files.
func NewRouter(files *FileBackend) *Router {
	return &Router{FileBackend: files, providers: map[string]Provider{}, placed: map[string]string{}}
}

// Place keeps the key named name at uri from now on: Ref(name) is uri, and
// Create(name) generates the key there (the keys a server makes for itself
// by name, such as the JWT-SVID and audit checkpoint keys, then live in the
// HSM or KMS with the CA's).
func (r *Router) Place(name, uri string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.placed[name] = uri
}

func (r *Router) placement(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	uri, ok := r.placed[name]
	return uri, ok
}

// Ref is the reference of the key named name: its placed URI, or its file.
func (r *Router) Ref(name string) string {
	if uri, ok := r.placement(name); ok {
		return uri
	}
	return r.FileBackend.Ref(name)
}

// Create generates the key named name: at its placed URI, or in a file.
func (r *Router) Create(ctx context.Context, name string, kt KeyType) (crypto.Signer, string, error) {
	if uri, ok := r.placement(name); ok {
		return r.CreateAt(ctx, uri, kt, true)
	}
	return r.FileBackend.Create(ctx, name, kt)
}

// Load returns the signer of ref, whatever its scheme.
func (r *Router) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	if s := Scheme(ref); s != "" && s != "file" {
		p, err := r.provider(s)
		if err != nil {
			return nil, err
		}
		return p.Open(ctx, ref)
	}
	return r.FileBackend.Load(ctx, ref)
}

// CreateAt makes the key uri names: with generate, a new key of type kt
// is generated there (in the HSM or KMS itself); without, the key already
// there is used as it is. It returns the signer and the reference to keep.
// For file URIs ("file:NAME.key") a new key is always generated: a file
// backend has no existing objects to adopt.
func (r *Router) CreateAt(ctx context.Context, uri string, kt KeyType, generate bool) (crypto.Signer, string, error) {
	switch s := Scheme(uri); s {
	case "":
		return nil, "", fmt.Errorf("keys: %q is not a key URI (file:NAME.key, pkcs11:…, awskms:…)", clip(uri))
	case "file":
		name, ok := strings.CutSuffix(strings.TrimPrefix(uri, "file:"), ".key")
		if !ok {
			return nil, "", fmt.Errorf("keys: a file key URI is file:NAME.key, not %q", clip(uri))
		}
		return r.FileBackend.Create(ctx, name, kt)
	default:
		p, err := r.provider(s)
		if err != nil {
			return nil, "", err
		}
		if generate {
			return p.Generate(ctx, uri, kt)
		}
		key, err := p.Open(ctx, uri)
		if err != nil {
			return nil, "", err
		}
		if got, err := TypeOf(key.Public()); err != nil {
			return nil, "", err
		} else if kt != "" && got != kt {
			return nil, "", fmt.Errorf("keys: the key at %s is %s, not %s", Redact(uri), got, kt)
		}
		return key, uri, nil
	}
}

// provider returns the provider of scheme, making it on first use.
func (r *Router) provider(scheme string) (Provider, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.providers[scheme]; ok {
		return p, nil
	}
	factoriesMu.Lock()
	f, ok := factories[scheme]
	factoriesMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("keys: unknown key URI scheme %q (meshpki knows file, pkcs11 and awskms)", clip(scheme))
	}
	p, err := f()
	if err != nil {
		return nil, err
	}
	r.providers[scheme] = p
	return p, nil
}

// Close closes every provider the router made.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for s, p := range r.providers {
		errs = append(errs, p.Close())
		delete(r.providers, s)
	}
	return errors.Join(errs...)
}

// Redact returns a key URI fit for logs and the audit log: the query (a
// PIN source, an endpoint with credentials) is left out.
func Redact(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return clip(uri)
}

// clip bounds what a caller sent before it is echoed in an error.
func clip(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// SuccessorURI is where the key after ref is made when ref's issuer
// rotates: "" (a key the keystore names, a file) for a file reference or
// one of a scheme no provider serves, and for a
// key URI the same token or account with the key named object: a PKCS#11
// URI with object=object and no id; an AWS KMS URI with no key id or
// alias, so a new key is created in the same region and endpoint.
func SuccessorURI(ref, object string) (string, error) {
	switch Scheme(ref) {
	case "", "file":
		return "", nil
	case "pkcs11":
		path, query, _ := strings.Cut(strings.TrimPrefix(ref, "pkcs11:"), "?")
		var attrs []string
		for _, a := range strings.Split(path, ";") {
			if a != "" && !strings.HasPrefix(a, "object=") && !strings.HasPrefix(a, "id=") {
				attrs = append(attrs, a)
			}
		}
		attrs = append(attrs, "object="+url.PathEscape(object))
		uri := "pkcs11:" + strings.Join(attrs, ";")
		if query != "" {
			uri += "?" + query
		}
		return uri, nil
	case "awskms":
		path, query, _ := strings.Cut(strings.TrimPrefix(ref, "awskms:///"), "?")
		uri := "awskms:///"
		if prefix, ok := strings.CutPrefix(path, "alias/"); ok {
			uri += "alias/" + prefix + "-" + object
		}
		if query != "" {
			uri += "?" + query
		}
		return uri, nil
	}
	factoriesMu.Lock()
	_, provided := factories[Scheme(ref)]
	factoriesMu.Unlock()
	if !provided {
		return "", nil // a keystore's own kind of reference: a key by name
	}
	return "", fmt.Errorf("keys: no successor for a %s key: give the new key's URI", Scheme(ref))
}
