package keys

// NewFastFileBackend is NewFileBackend with cheap scrypt parameters, for the
// external conformance test.
func NewFastFileBackend(dir string, passphrase []byte) *FileBackend {
	b := NewFileBackend(dir, passphrase)
	b.scrypt, b.keyScrypt = testScrypt, testScrypt
	return b
}
