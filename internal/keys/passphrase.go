package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// PassphraseEnv is the environment variable ResolvePassphrase reads.
const PassphraseEnv = "MESHPKI_PASSWORD"

// maxPassphraseFile bounds how much of a password file is read.
const maxPassphraseFile = 4096

// ResolvePassphrase finds the passphrase that protects the CA's keys, trying
// in order:
//
//  1. passwordFile, if not empty (one trailing newline is removed);
//  2. the MESHPKI_PASSWORD environment variable;
//  3. dataDir/secrets/password, if it exists; it must not be accessible to
//     group or others.
//
// If none is found and allowGenerate is true, it generates a random
// passphrase, writes it to dataDir/secrets/password with mode 0600 (directory
// 0700) and returns that path as generatedPath, so the caller can warn that a
// passphrase kept next to the keys is for development only.
func ResolvePassphrase(dataDir, passwordFile string, allowGenerate bool) (pass []byte, generatedPath string, err error) {
	if passwordFile != "" {
		pass, err := readPassphraseFile(passwordFile, false)
		if err != nil {
			return nil, "", err
		}
		return pass, "", nil
	}
	if v, ok := os.LookupEnv(PassphraseEnv); ok {
		if v == "" {
			return nil, "", fmt.Errorf("keys: %s is set but empty", PassphraseEnv)
		}
		return []byte(v), "", nil
	}
	defaultPath := filepath.Join(dataDir, "secrets", "password")
	if dataDir != "" {
		pass, err := readPassphraseFile(defaultPath, true)
		switch {
		case err == nil:
			return pass, "", nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, "", err
		}
	}
	if !allowGenerate || dataDir == "" {
		return nil, "", fmt.Errorf("keys: no passphrase: pass --password-file, set %s, or keep one in %s", PassphraseEnv, defaultPath)
	}

	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("keys: read random passphrase: %w", err)
	}
	pass = []byte(base64.RawURLEncoding.EncodeToString(raw))
	clear(raw)
	secretsDir := filepath.Dir(defaultPath)
	if err := os.MkdirAll(secretsDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("keys: create %s: %w", secretsDir, err)
	}
	if err := os.Chmod(secretsDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	}
	if err := WriteFileExclusive(defaultPath, append(bytes.Clone(pass), '\n'), 0o600); err != nil {
		return nil, "", err
	}
	return pass, defaultPath, nil
}

// readPassphraseFile reads a passphrase file, removing one trailing newline.
// With private set, the file must not be accessible to group or others.
func readPassphraseFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: read password file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: read password file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: password file %s is not a regular file", path)
	}
	if private && runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: password file %s has mode %04o and must not be readable by group or others: run chmod 600 %s", path, info.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile+1))
	if err != nil {
		return nil, fmt.Errorf("keys: read password file %s: %w", path, err)
	}
	if len(data) > maxPassphraseFile {
		return nil, fmt.Errorf("keys: password file %s is larger than %d bytes", path, maxPassphraseFile)
	}
	if bytes.HasSuffix(data, []byte("\r\n")) {
		data = data[:len(data)-2]
	} else if bytes.HasSuffix(data, []byte("\n")) {
		data = data[:len(data)-1]
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("keys: password file %s is empty", path)
	}
	return data, nil
}
