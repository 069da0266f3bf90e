package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// WriteFile atomically replaces path with data: it creates missing parent
// directories with mode 0700, writes a temporary file with mode perm in the
// same directory, syncs it, renames it over path and syncs the directory.
// Readers see either the old content or the new, never a partial file.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keys: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// WriteFileExclusive writes data to path like WriteFile, but fails with an
// error wrapping fs.ErrExist if path already exists; it never replaces a file.
func WriteFileExclusive(path string, data []byte, perm os.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return existsError(path)
	}
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// A hard link is created atomically and only if path does not exist, so
	// a concurrent writer cannot be overwritten and no partial file is ever
	// visible under path.
	err = os.Link(tmp, path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		return existsError(path)
	default:
		// Some file systems have no hard links; fall back to O_EXCL.
		if err := writeExclusiveDirect(path, data, perm); err != nil {
			return err
		}
	}
	return SyncDir(filepath.Dir(path))
}

func existsError(path string) error {
	return fmt.Errorf("keys: refusing to overwrite %s: %w", path, fs.ErrExist)
}

func writeExclusiveDirect(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return existsError(path)
		}
		return fmt.Errorf("keys: %w", err)
	}
	if err := writeSyncClose(f, data, perm); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// writeTemp writes data to a new temporary file next to path and returns its
// name. The file has mode perm and its content is synced to disk.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keys: create directory: %w", err)
	}
	// CreateTemp makes the file with mode 0600, so data is never readable by
	// others even for a moment.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	if err := writeSyncClose(f, data, perm); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func writeSyncClose(f *os.File, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("keys: write %s: %w", f.Name(), err)
	}
	return nil
}

// SyncDir makes a rename or link in dir durable.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("keys: sync directory %s: %w", dir, err)
	}
	return nil
}
