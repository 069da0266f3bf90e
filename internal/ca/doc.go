// Package ca owns the certificate authority: its root and issuing
// intermediates on disk, the certificate profiles, and the one issuance path
// every front door calls.
//
// # Hierarchy
//
// The CA lives in DIR/ca, where DIR is the server's data directory:
//
//	DIR/ca/ca.json          configuration and state, the single source of truth (0600)
//	DIR/ca/root.crt         the self-signed root
//	DIR/ca/issuers/*.crt    one file per intermediate generation, e.g. default-1.crt
//	DIR/ca/keys/*.key       private keys and the token MAC secret, encrypted by keys.FileBackend
//
// [Init] creates the root, the intermediate "default" (generation 1) and the
// token MAC secret. [Load] reads ca.json and loads the signer of every
// unexpired intermediate generation; the root key is loaded only to mint
// intermediates ([Hierarchy.AddIssuer], [Hierarchy.RotateIntermediate]). A
// rotation adds generation n+1 of an intermediate; older generations stay in
// ca.json, and certificates they signed keep verifying until they expire,
// because [Hierarchy.IntermediatesPEM] keeps publishing them.
// [Hierarchy.Reload] lets a running server pick up a rotation made by the CLI.
//
// # Profiles
//
// All certificates follow RFC 5280. CA certificates carry basicConstraints
// CA:TRUE (intermediates with pathLenConstraint 0, section 4.2.1.9), a
// critical keyUsage with keyCertSign and cRLSign (section 4.2.1.3) and key
// identifiers (sections 4.2.1.1 and 4.2.1.2, RFC 7093 method 1). Leaves
// ([Issuer.SignLeaf]) carry CA:FALSE, digitalSignature (plus keyEncipherment
// for RSA keys), extKeyUsage serverAuth and clientAuth, and their names in
// subjectAltName, which is critical when the subject is empty
// (section 4.2.1.6), as in SPIFFE X509-SVIDs. Serial numbers are 128 random
// bits ([NewSerial]). docs/LINTS.md lists the zlint results of every profile.
//
// Typical use:
//
//	kb := keys.NewFileBackend(filepath.Join(dir, "ca", "keys"), passphrase)
//	h, err := ca.Load(ctx, dir, kb)
//	...
//	iss, err := h.Issuer("default")
//	cert, err := iss.SignLeaf(ca.LeafRequest{Names: names, PublicKey: pub, NotBefore: nb, NotAfter: na})
package ca
