package agent

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/nodeapi"
)

// Files of the persisted SVID cache.
const (
	CacheFile    = "svids.cache"  // AES-256-GCM sealed JSON of the entries, SVIDs and bundle
	CacheKeyFile = "cache.secret" // the cache's data key, encrypted with the agent passphrase
)

// cacheFile is what svids.cache holds, before sealing.
type cacheFile struct {
	NodeID  string         `json:"node_id"`
	Entries []cachedSVID   `json:"svids"`
	Bundle  nodeapi.Bundle `json:"bundle"`
}

type cachedSVID struct {
	Entry nodeapi.Entry `json:"entry"`
	Chain [][]byte      `json:"chain"`
	Key   []byte        `json:"key"` // PKCS #8 DER
}

// cacheAEAD returns the cipher of the SVID cache, making its data key on
// first use. The key is derived from the passphrase once per start, so
// saving the cache after every rotation costs no key derivation.
func (a *Agent) cacheAEAD() (cipher.AEAD, error) {
	path := filepath.Join(a.cfg.DataDir, CacheKeyFile)
	var key []byte
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		sealed, err := keys.EncryptSecret(key, a.pass)
		if err != nil {
			return nil, err
		}
		if err := keys.WriteFile(path, sealed, 0o600); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if key, err = keys.DecryptSecret(data, a.pass); err != nil {
			return nil, err
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// saveCache writes the SVIDs held, sealed. Failures are logged: the cache
// only spares a restart some minting.
func (a *Agent) saveCache() {
	if a.aead == nil {
		return
	}
	a.mu.Lock()
	cf := cacheFile{NodeID: a.nodeID, Bundle: a.bundle}
	for _, h := range a.svids {
		der, err := x509.MarshalPKCS8PrivateKey(h.key)
		if err != nil {
			continue
		}
		c := cachedSVID{Entry: h.entry, Key: der}
		for _, cert := range h.chain {
			c.Chain = append(c.Chain, cert.Raw)
		}
		cf.Entries = append(cf.Entries, c)
	}
	a.mu.Unlock()
	plain, err := json.Marshal(cf)
	if err != nil {
		return
	}
	nonce := make([]byte, a.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return
	}
	sealed := a.aead.Seal(nonce, nonce, plain, []byte(CacheFile))
	clear(plain)
	if err := keys.WriteFile(filepath.Join(a.cfg.DataDir, CacheFile), sealed, 0o600); err != nil {
		a.log.Warn("saving the SVID cache", "error", err)
	}
}

// loadCache restores SVIDs saved for this node that have not expired.
func (a *Agent) loadCache() error {
	sealed, err := os.ReadFile(filepath.Join(a.cfg.DataDir, CacheFile))
	if err != nil {
		return err
	}
	n := a.aead.NonceSize()
	if len(sealed) < n {
		return errors.New("the SVID cache is truncated")
	}
	plain, err := a.aead.Open(nil, sealed[:n], sealed[n:], []byte(CacheFile))
	if err != nil {
		return fmt.Errorf("the SVID cache does not decrypt: %w", err)
	}
	defer clear(plain)
	var cf cacheFile
	if err := json.Unmarshal(plain, &cf); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cf.NodeID != a.nodeID {
		return fmt.Errorf("the SVID cache belongs to node %s", cf.NodeID)
	}
	now := a.now()
	for _, c := range cf.Entries {
		k, err := x509.ParsePKCS8PrivateKey(c.Key)
		if err != nil {
			continue
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			continue
		}
		h := &heldSVID{entry: c.Entry, key: signer}
		for _, der := range c.Chain {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				h.chain = nil
				break
			}
			h.chain = append(h.chain, cert)
		}
		if len(h.chain) == 0 || !now.Before(h.chain[0].NotAfter) {
			continue
		}
		leaf := h.chain[0]
		h.rotateAt = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		a.entries[c.Entry.ID] = c.Entry
		a.svids[c.Entry.ID] = h
	}
	a.bundle = cf.Bundle
	return nil
}
