package keys

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// MAC computes HMAC-SHA256 under a key the keystore holds: the token MAC
// key signs one-time tokens with it, and the server derives its other
// secrets (sealing keys, nonce keys) as the MAC of a label. Behind an HSM
// or KMS the key never leaves it and each MAC is a call.
type MAC interface {
	MAC(data []byte) ([]byte, error)
}

// SecretMAC is HMAC-SHA256 under secret bytes held in memory (a file
// keystore's secret).
type SecretMAC []byte

// MAC returns HMAC-SHA256(s, data).
func (s SecretMAC) MAC(data []byte) ([]byte, error) {
	m := hmac.New(sha256.New, s)
	m.Write(data)
	return m.Sum(nil), nil
}

// ErrMACUnavailable wraps a MAC the device or service could not compute.
var ErrMACUnavailable = errors.New("keys: the token MAC key is unavailable")

// MACProvider is a Provider that also keeps HMAC-SHA256 keys.
type MACProvider interface {
	// GenerateMAC makes a new HMAC-SHA256 key at uri and returns the URI to
	// keep; a key already there is an error wrapping fs.ErrExist.
	GenerateMAC(ctx context.Context, uri string) (string, error)
	// OpenMAC returns the existing HMAC key at uri.
	OpenMAC(ctx context.Context, uri string) (MAC, error)
}

// LoadMAC returns the MAC of the key ref names in ks: an HSM or KMS key
// through a Router, or a secret ks holds.
func LoadMAC(ctx context.Context, ks Keystore, ref string) (MAC, error) {
	if r, ok := ks.(*Router); ok {
		return r.LoadMAC(ctx, ref)
	}
	secret, err := ks.LoadSecret(ctx, ref)
	if err != nil {
		return nil, err
	}
	return SecretMAC(secret), nil
}

// LoadMAC returns the MAC of ref: a file secret's, or the key a provider
// keeps.
func (r *Router) LoadMAC(ctx context.Context, ref string) (MAC, error) {
	s := Scheme(ref)
	if s == "" || s == "file" {
		secret, err := r.LoadSecret(ctx, ref)
		if err != nil {
			return nil, err
		}
		return SecretMAC(secret), nil
	}
	mp, err := r.macProvider(s)
	if err != nil {
		return nil, err
	}
	return mp.OpenMAC(ctx, ref)
}

// CreateMACAt makes the HMAC key uri names (with generate) or checks the
// one there, and returns the reference to keep.
func (r *Router) CreateMACAt(ctx context.Context, uri string, generate bool) (string, error) {
	mp, err := r.macProvider(Scheme(uri))
	if err != nil {
		return "", err
	}
	if generate {
		return mp.GenerateMAC(ctx, uri)
	}
	if _, err := mp.OpenMAC(ctx, uri); err != nil {
		return "", err
	}
	return uri, nil
}

func (r *Router) macProvider(scheme string) (MACProvider, error) {
	if scheme == "" || scheme == "file" {
		return nil, errors.New("keys: the token MAC key in a file is made by name, not by a key URI")
	}
	p, err := r.provider(scheme)
	if err != nil {
		return nil, err
	}
	mp, ok := p.(MACProvider)
	if !ok {
		return nil, fmt.Errorf("keys: %s keys cannot hold the token MAC key", scheme)
	}
	return mp, nil
}
