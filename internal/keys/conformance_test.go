package keys_test

import (
	"path/filepath"
	"testing"

	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/keys/keystest"
)

func TestFileBackendConformance(t *testing.T) {
	keystest.Run(t, func(t *testing.T) keys.Backend {
		return keys.NewFastFileBackend(filepath.Join(t.TempDir(), "keys"), []byte("conformance"))
	})
}

func TestMemoryConformance(t *testing.T) {
	keystest.Run(t, func(t *testing.T) keys.Backend { return keystest.NewMemory() })
}
