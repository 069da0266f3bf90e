package cli

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/keys"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/store"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

func init() { register(newCACommand) }

func newCACommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Create and manage the CA hierarchy (root and issuing intermediates)",
		Long: `Create and manage the CA hierarchy in DIR/ca: an offline-use root (its key is
loaded only to sign intermediates) and one or more online issuing
intermediates. Every private key is encrypted with the CA passphrase.`,
	}
	cmd.AddCommand(newCAInitCommand(s), newCARotateCommand(s), newCAAddIssuerCommand(s), newCAStatusCommand(s), newCAMigrateKeysCommand(s),
		newCASignIntermediateCommand(s), newCAImportIntermediateCommand(s))
	return cmd
}

func newCAInitCommand(s *streams) *cobra.Command {
	var (
		dataDir, passwordFile, keyType, storeURL string
		opts                                     ca.InitOptions
		generate                                 bool
	)
	cmd := &cobra.Command{
		Use:   "init --data DIR --name NAME --trust-domain TD",
		Short: "Create a root (10 years) and an issuing intermediate (1 year)",
		Long: `Create a new CA in DIR/ca: a root valid for 10 years and an issuing
intermediate named "default" valid for 1 year, signed by it, plus the key that
signs one-time tokens and the server's own JWT-SVID and audit checkpoint keys,
so that DIR/ca is complete: replicas given a copy share every key. Keys are
ECDSA P-256 unless --key-type says otherwise.

The passphrase that encrypts the keys comes from --password-file, else
MESHPKI_PASSWORD; when neither is given a random one is written to
DIR/secrets/password (0600) — fine for development, not for production.`,
		Example: `  meshpki ca init --data ./ca-data --name "Acme Internal" --trust-domain acme.internal
  meshpki ca init --data /var/lib/meshpki --name Acme --trust-domain acme.internal --key-type ec-p384 --password-file /run/secrets/ca-pass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || opts.Name == "" || opts.TrustDomain == "" {
				return usageError{fmt.Errorf("--data, --name and --trust-domain are required")}
			}
			kt, err := keys.ParseKeyType(keyType)
			if err != nil {
				return usageError{err}
			}
			opts.KeyType = kt
			opts.Root.Generate, opts.Issuer.Generate, opts.TokenKey.Generate = generate, generate, generate
			if ca.Initialized(dataDir) {
				return fmt.Errorf("%s already holds a CA (%s); refusing to overwrite it", dataDir, filepath.Join(dataDir, "ca", "ca.json"))
			}
			pass, generated, err := keys.ResolvePassphrase(dataDir, passwordFile, true)
			if err != nil {
				return err
			}
			if generated != "" {
				fmt.Fprintf(s.err, "WARNING: no passphrase given; a random one was written to %s (development only).\n", generated)
			}
			fmt.Fprintf(s.err, "Generating %s keys…\n", kt)
			if (opts.Root.URI != "" || opts.Issuer.URI != "" || opts.TokenKey.URI != "") && !generate {
				fmt.Fprintln(s.err, "Using the keys already at the key URIs (--generate makes new ones there).")
			}
			ks := keys.OpenKeystore(dataDir, pass)
			defer ks.Close()
			if opts.OfflineRoot != "" {
				rk := ca.OfflineRootKeystore(opts.OfflineRoot, pass)
				defer rk.Close()
				opts.RootKeys = rk
			}
			h, err := ca.Init(contextOf(cmd), dataDir, opts, ks)
			if err != nil {
				return err
			}
			if err := server.PrepareServerKeys(contextOf(cmd), dataDir, h, ks); err != nil {
				return err
			}
			root := h.Root()
			if err := auditCAChange(cmd, dataDir, storeURL, audit.TypeCAInitialized, h.Name(), map[string]string{
				"trust_domain": h.TrustDomain(), "root_fingerprint": server.RootFingerprint(root),
				"root_key": keys.Redact(h.RootKeyRef()), "root_key_backend": backendOf(h.RootKeyRef()), "root_offline": strconv.FormatBool(h.RootOffline())}); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "Created CA %q (trust domain %s) in %s\n", h.Name(), h.TrustDomain(), dataDir)
			fmt.Fprintf(s.out, "  root:          %s, valid until %s\n", filepath.Join(dataDir, server.RootCertFile), root.NotAfter.UTC().Format(time.DateOnly))
			fmt.Fprintf(s.out, "  fingerprint:   %s (SHA-256)\n", server.RootFingerprint(root))
			for _, iss := range h.Issuers() {
				fmt.Fprintf(s.out, "  intermediate:  %s (generation %d), valid until %s\n", iss.Name, iss.Generation, iss.Cert.NotAfter.UTC().Format(time.DateOnly))
			}
			if opts.OfflineRoot != "" {
				fmt.Fprintf(s.out, "  offline root:  %s — move it off this machine; the server runs without it\n", opts.OfflineRoot)
			}
			fmt.Fprintf(s.out, "Start it with: meshpki server --data %s\n", dataDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory")
	f.StringVar(&opts.Name, "name", "", "CA name (appears in the certificates' subjects)")
	f.StringVar(&opts.TrustDomain, "trust-domain", "", "SPIFFE trust domain, e.g. acme.internal")
	f.StringVar(&keyType, "key-type", string(keys.ECP256), "key type: ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072, rsa-4096")
	durationVar(f, &opts.RootLifetime, "root-lifetime", 0, "root lifetime (default 87600h = 10 years)")
	durationVar(f, &opts.IssuerLifetime, "intermediate-lifetime", 0, "intermediate lifetime (default 8760h = 1 year)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the CA passphrase")
	f.StringVar(&storeURL, "store", "", "store URL the server will use, for the audit record: postgres://… (default $"+StoreEnv+", else SQLite in --data)")
	f.StringVar(&opts.Root.URI, "root-key-uri", "", "where the root's key is kept: pkcs11:… (an HSM), awskms:… (AWS KMS) (default an encrypted file in DIR/ca/keys)")
	f.StringVar(&opts.Issuer.URI, "intermediate-key-uri", "", "where the intermediate's key is kept, as --root-key-uri")
	f.StringVar(&opts.JWTSVIDKey, "jwt-svid-key-uri", "", "where the JWT-SVID signing key is generated: pkcs11:…;object=NAME, awskms:///alias/NAME (default --server-key-uri's place, else a file)")
	f.StringVar(&opts.TokenKey.URI, "token-key-uri", "", "where the HMAC key that signs one-time tokens is kept: pkcs11:…, awskms:///alias/NAME (default an encrypted file in DIR/ca/keys)")
	f.BoolVar(&generate, "generate", false, "generate the keys the key URIs name inside the HSM or KMS (without it, keys already there are used)")
	f.StringVar(&opts.OfflineRoot, "offline-root", "", "make the root in this directory, apart from DIR, for a machine off the network: the server never reads it (see 'ca sign-intermediate')")
	f.StringVar(&opts.ServerKeys, "server-key-uri", "", "where the keys the server signs with for itself (JWT-SVID, audit checkpoints) are generated: a pkcs11: token or awskms: account; each key is named after its use (default encrypted files in DIR/ca/keys)")
	return cmd
}

// openHierarchy loads the CA in dataDir with the resolved passphrase.
func openHierarchy(cmd *cobra.Command, dataDir, passwordFile string) (*ca.Hierarchy, error) {
	if dataDir == "" {
		return nil, usageError{fmt.Errorf("--data DIR is required")}
	}
	if !ca.Initialized(dataDir) {
		return nil, fmt.Errorf("%s holds no CA: run 'meshpki ca init --data %s …' or start 'meshpki server --data %s'", dataDir, dataDir, dataDir)
	}
	pass, _, err := keys.ResolvePassphrase(dataDir, passwordFile, false)
	if err != nil {
		return nil, err
	}
	return ca.Load(contextOf(cmd), dataDir, keys.OpenKeystore(dataDir, pass))
}

func newCARotateCommand(s *streams) *cobra.Command {
	var dataDir, passwordFile, issuer, storeURL, csrFile string
	var place ca.KeyPlace
	cmd := &cobra.Command{
		Use:   "rotate-intermediate --data DIR [--issuer NAME] [--key-uri URI [--generate]] [--csr FILE]",
		Short: "Make a new generation of an issuing intermediate",
		Long: `Make a new generation of an issuing intermediate (default "default"), with
the same lifetime and key type, signed by the root. New certificates are signed
by it; certificates under older generations keep verifying until they expire,
and /intermediates.pem serves every unexpired generation. A running server
picks the new intermediate up within 10 seconds.

The new key is kept where the newest generation's is: an encrypted file, or
a new key generated in the same HSM token or KMS account, named after the
generation ("default-2"). --key-uri puts it elsewhere; with --generate a new
key is made there, without it the key already there is used.`,
		Example: `  meshpki ca rotate-intermediate --data ./ca-data
  meshpki ca rotate-intermediate --data ./ca-data --issuer payments
  meshpki ca rotate-intermediate --data ./ca-data --generate \
    --key-uri 'pkcs11:token=meshpki;object=int-2027?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/meshpki/pin'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := openHierarchy(cmd, dataDir, passwordFile)
			if err != nil {
				return err
			}
			if csrFile != "" {
				csr, gen, err := h.PrepareIntermediate(contextOf(cmd), issuer, 0, place)
				if err != nil {
					return err
				}
				if err := keys.WriteFile(csrFile, csr, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(s.out, "Made the key of issuer %q generation %d and its request %s.\n", issuer, gen, csrFile)
				fmt.Fprintf(s.out, "Where the root is:  meshpki ca sign-intermediate --root ROOT-DIR --csr %s --out %s-%d.crt\n", filepath.Base(csrFile), issuer, gen)
				fmt.Fprintf(s.out, "Then here:          meshpki ca import-intermediate --data %s --cert %s-%d.crt\n", dataDir, issuer, gen)
				return nil
			}
			iss, err := h.RotateIntermediateAt(contextOf(cmd), issuer, place)
			if err != nil {
				return err
			}
			return newGeneration(cmd, s, dataDir, storeURL, h, iss)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory")
	f.StringVar(&issuer, "issuer", "default", "name of the issuing intermediate to rotate")
	f.StringVar(&place.URI, "key-uri", "", "where the new generation's key is kept: pkcs11:…, awskms:… (default where the newest generation's is)")
	f.BoolVar(&place.Generate, "generate", false, "generate the key --key-uri names (without it, the key already there is used)")
	f.StringVar(&csrFile, "csr", "", "for an offline root: make the key and write a certificate request to FILE, for 'ca sign-intermediate'")
	f.StringVar(&passwordFile, "password-file", "", "file holding the CA passphrase")
	f.StringVar(&storeURL, "store", "", "the server's store URL, for the audit record: postgres://… (default $"+StoreEnv+", else SQLite in --data)")
	return cmd
}

func newCAAddIssuerCommand(s *streams) *cobra.Command {
	var dataDir, passwordFile, keyType, storeURL string
	var lifetime time.Duration
	var place ca.KeyPlace
	cmd := &cobra.Command{
		Use:   "add-issuer NAME --data DIR [--lifetime 8760h] [--key-type ec-p256] [--key-uri URI [--generate]]",
		Short: "Add another issuing intermediate (one per team or environment)",
		Long: `Add a named issuing intermediate signed by the root, with its own lifetime
and key type. A provisioner signs with it when its policy names it
(--issuer NAME on 'meshpki provisioner add').`,
		Example: `  meshpki ca add-issuer payments --data ./ca-data --lifetime 2160h`,
		Args:    positionalArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kt, err := keys.ParseKeyType(keyType)
			if err != nil {
				return usageError{err}
			}
			h, err := openHierarchy(cmd, dataDir, passwordFile)
			if err != nil {
				return err
			}
			iss, err := h.AddIssuerAt(contextOf(cmd), args[0], lifetime, kt, place)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "Added issuer %q (%s), valid until %s\n", iss.Name, iss.KeyType, iss.Cert.NotAfter.UTC().Format(time.DateOnly))
			return auditCAChange(cmd, dataDir, storeURL, audit.TypeCAIssuerAdded, iss.Name, issuerDetail(h, iss))
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory")
	durationVar(f, &lifetime, "lifetime", 8760*time.Hour, "intermediate lifetime")
	f.StringVar(&keyType, "key-type", string(keys.ECP256), "key type")
	f.StringVar(&place.URI, "key-uri", "", "where the intermediate's key is kept: pkcs11:…, awskms:… (default an encrypted file in DIR/ca/keys)")
	f.BoolVar(&place.Generate, "generate", false, "generate the key --key-uri names (without it, the key already there is used)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the CA passphrase")
	f.StringVar(&storeURL, "store", "", "the server's store URL, for the audit record: postgres://… (default $"+StoreEnv+", else SQLite in --data)")
	return cmd
}

func newCAStatusCommand(s *streams) *cobra.Command {
	var dataDir, passwordFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status --data DIR [--json]",
		Short: "Show the root and every issuing intermediate with their expiry",
		Example: `  meshpki ca status --data ./ca-data
  meshpki ca status --data ./ca-data --json | jq '.issuers[] | select(.name=="default") | .not_after'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := openHierarchy(cmd, dataDir, passwordFile)
			if err != nil {
				return err
			}
			now := time.Now()
			root := h.Root()
			if asJSON {
				return writeJSON(s.out, caStatusOf(h))
			}
			fmt.Fprintf(s.out, "CA %q, trust domain %s\n", h.Name(), h.TrustDomain())
			fmt.Fprintf(s.out, "root          %s  %s\n", server.RootFingerprint(root), expiresPhrase(root.NotAfter, now))
			for _, iss := range h.Issuers() {
				fmt.Fprintf(s.out, "issuer %-8s generation %d  %s  %s\n", iss.Name, iss.Generation, iss.KeyType, expiresPhrase(iss.Cert.NotAfter, now))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory")
	f.StringVar(&passwordFile, "password-file", "", "file holding the CA passphrase")
	f.BoolVar(&asJSON, "json", false, "print the CA, its root and its issuers as JSON")
	return cmd
}

// caStatus is what ca status prints with --json.
type caStatus struct {
	Name        string         `json:"name"`
	TrustDomain string         `json:"trust_domain"`
	Root        caCertStatus   `json:"root"`
	Issuers     []caCertStatus `json:"issuers"`
}

type caCertStatus struct {
	Name              string    `json:"name,omitempty"`
	Generation        int       `json:"generation,omitempty"`
	KeyType           string    `json:"key_type,omitempty"`
	Subject           string    `json:"subject"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
}

func caStatusOf(h *ca.Hierarchy) caStatus {
	root := h.Root()
	out := caStatus{Name: h.Name(), TrustDomain: h.TrustDomain(), Issuers: []caCertStatus{},
		Root: caCertStatus{Subject: root.Subject.String(), FingerprintSHA256: server.RootFingerprint(root), NotBefore: root.NotBefore.UTC(), NotAfter: root.NotAfter.UTC()}}
	for _, iss := range h.Issuers() {
		out.Issuers = append(out.Issuers, caCertStatus{Name: iss.Name, Generation: iss.Generation, KeyType: string(iss.KeyType), Subject: iss.Cert.Subject.String(),
			FingerprintSHA256: server.RootFingerprint(iss.Cert), NotBefore: iss.Cert.NotBefore.UTC(), NotAfter: iss.Cert.NotAfter.UTC()})
	}
	return out
}

// auditCAChange appends the record of a change to the CA hierarchy to the
// store the server uses (SQLite in DIR unless --store or MESHPKI_STORE
// names PostgreSQL), so that the audit log holds every hierarchy change
// however it was made.
func auditCAChange(cmd *cobra.Command, dataDir, storeURL, typ, subject string, detail map[string]string) error {
	st, err := sqlstore.Open(contextOf(cmd), storeURLOrEnv(storeURL), dataDir)
	if err != nil {
		return fmt.Errorf("the change is made, but its audit record could not be written: %w", err)
	}
	defer st.Close()
	ev := audit.Event{Time: time.Now(), Type: typ, Actor: cliActor(), Subject: subject, Outcome: "success", Detail: detail}
	if err := st.AppendAudit(contextOf(cmd), ev); err != nil {
		return fmt.Errorf("the change is made, but its audit record could not be written: %w", err)
	}
	return nil
}

// cliActor names who ran a command on the CA host: "cli:USER@HOST".
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "cli:" + name + "@" + host
}

// newGeneration reports a new generation of an intermediate and audits it.
func newGeneration(cmd *cobra.Command, s *streams, dataDir, storeURL string, h *ca.Hierarchy, iss *ca.Issuer) error {
	fmt.Fprintf(s.out, "Issuer %q is now at generation %d, valid until %s (serial %s)\n",
		iss.Name, iss.Generation, iss.Cert.NotAfter.UTC().Format(time.DateOnly), store.SerialOf(iss.Cert.SerialNumber))
	return auditCAChange(cmd, dataDir, storeURL, audit.TypeCARotated, iss.Name, issuerDetail(h, iss))
}

// issuerDetail is an issuer change's audit detail: the new generation, its
// key and the backend that keeps it, and the root key that signed it.
func issuerDetail(h *ca.Hierarchy, iss *ca.Issuer) map[string]string {
	signedBy, signedByBackend := keys.Redact(h.RootKeyRef()), backendOf(h.RootKeyRef())
	if h.RootOffline() {
		signedBy, signedByBackend = "offline root", "offline"
	}
	return map[string]string{"issuer": iss.Name, "generation": strconv.Itoa(iss.Generation), "serial": string(store.SerialOf(iss.Cert.SerialNumber)),
		"key_type": string(iss.KeyType), "not_after": iss.Cert.NotAfter.UTC().Format(time.RFC3339),
		"key": keys.Redact(iss.KeyRef()), "key_backend": backendOf(iss.KeyRef()),
		"signed_by": signedBy, "signed_by_backend": signedByBackend}
}

// backendOf names the backend that keeps a key: file, pkcs11, awskms.
func backendOf(ref string) string {
	if s := keys.Scheme(ref); s != "" {
		return s
	}
	return "file"
}

func newCAMigrateKeysCommand(s *streams) *cobra.Command {
	var dataDir, passwordFile string
	cmd := &cobra.Command{
		Use:   "migrate-keys --data DIR",
		Short: "Rewrite key files of the older meshpki format as standard encrypted PKCS#8",
		Long: `Rewrite every key file in DIR/ca/keys, and the bootstrap admin key in
DIR/secrets, that is still in the format meshpki wrote before it wrote PKCS#8
("MESHPKI ENCRYPTED PRIVATE KEY") as standard encrypted PKCS#8 ("ENCRYPTED
PRIVATE KEY": PBES2, scrypt, AES-256-CBC) under the same passphrase, which
'openssl pkey -in FILE -passin file:PASSFILE' reads. Each file is read back
before it replaces the old one, atomically. Files already in PKCS#8 are
left alone, so running it twice changes nothing. meshpki reads both
formats; a running server needs no restart.`,
		Example: `  meshpki ca migrate-keys --data ./ca-data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return usageError{fmt.Errorf("--data DIR is required")}
			}
			if !ca.Initialized(dataDir) {
				return fmt.Errorf("%s holds no CA", dataDir)
			}
			pass, _, err := keys.ResolvePassphrase(dataDir, passwordFile, false)
			if err != nil {
				return err
			}
			files, err := filepath.Glob(filepath.Join(dataDir, "ca", "keys", "*.key"))
			if err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(dataDir, "secrets", "admin.key")); err == nil {
				files = append(files, filepath.Join(dataDir, "secrets", "admin.key"))
			}
			migrated := 0
			for _, f := range files {
				changed, err := keys.MigrateKeyFile(f, pass)
				if err != nil {
					return fmt.Errorf("%w (%d files rewritten before it)", err, migrated)
				}
				if changed {
					migrated++
					fmt.Fprintf(s.out, "rewrote %s\n", f)
				}
			}
			fmt.Fprintf(s.out, "%d of %d key files rewritten as encrypted PKCS#8; the rest already were.\n", migrated, len(files))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory")
	f.StringVar(&passwordFile, "password-file", "", "file holding the CA passphrase")
	return cmd
}

func newCASignIntermediateCommand(s *streams) *cobra.Command {
	var rootDir, csrFile, outFile, passwordFile string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "sign-intermediate --root ROOT-DIR --csr FILE --out FILE",
		Short: "Sign an intermediate's request with the offline root",
		Long: `Sign, with the root made by 'meshpki ca init --offline-root ROOT-DIR', the
request 'meshpki ca rotate-intermediate --csr FILE' wrote on the server. Run
it where the root is (an air-gapped machine); it needs no server and no
network. The request's signature must verify and its subject must name an
intermediate of this CA. Bring the certificate back to the server with
'meshpki ca import-intermediate'.

The root's passphrase comes from --password-file, else MESHPKI_PASSWORD.`,
		Example: `  meshpki ca sign-intermediate --root /media/root-ca --csr default-2.csr --out default-2.crt --password-file /media/root-pass`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rootDir == "" || csrFile == "" || outFile == "" {
				return usageError{fmt.Errorf("--root, --csr and --out are required")}
			}
			csr, err := os.ReadFile(csrFile)
			if err != nil {
				return err
			}
			pass, _, err := keys.ResolvePassphrase(rootDir, passwordFile, false)
			if err != nil {
				return err
			}
			rk := ca.OfflineRootKeystore(rootDir, pass)
			defer rk.Close()
			certPEM, cert, err := ca.SignIntermediate(contextOf(cmd), rootDir, rk, csr, lifetime, time.Now())
			if err != nil {
				return err
			}
			if err := keys.WriteFileExclusive(outFile, certPEM, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "Signed %s (serial %s), valid until %s, into %s\n", cert.Subject.CommonName, store.SerialOf(cert.SerialNumber),
				cert.NotAfter.UTC().Format(time.DateOnly), outFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rootDir, "root", "", "the offline root's directory (ca init --offline-root)")
	f.StringVar(&csrFile, "csr", "", "the request from 'ca rotate-intermediate --csr'")
	f.StringVar(&outFile, "out", "", "where to write the certificate (not overwritten)")
	durationVar(f, &lifetime, "lifetime", 0, "the intermediate's lifetime (default 8760h, capped at the root's)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the root's passphrase")
	return cmd
}

func newCAImportIntermediateCommand(s *streams) *cobra.Command {
	var dataDir, passwordFile, certFile, storeURL string
	cmd := &cobra.Command{
		Use:   "import-intermediate --data DIR --cert FILE",
		Short: "Add an intermediate the offline root signed",
		Long: `Add the certificate 'meshpki ca sign-intermediate' made for a generation
that 'meshpki ca rotate-intermediate --csr' prepared. It must be signed by
this CA's root and hold the prepared key. New certificates are signed by it
from then on; a running server picks it up within 10 seconds.`,
		Example: `  meshpki ca import-intermediate --data ./ca-data --cert default-2.crt`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" {
				return usageError{fmt.Errorf("--cert FILE is required")}
			}
			data, err := os.ReadFile(certFile)
			if err != nil {
				return err
			}
			h, err := openHierarchy(cmd, dataDir, passwordFile)
			if err != nil {
				return err
			}
			iss, err := h.ImportIntermediate(contextOf(cmd), data)
			if err != nil {
				return err
			}
			return newGeneration(cmd, s, dataDir, storeURL, h, iss)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory")
	f.StringVar(&certFile, "cert", "", "the certificate from 'ca sign-intermediate'")
	f.StringVar(&passwordFile, "password-file", "", "file holding the CA passphrase")
	f.StringVar(&storeURL, "store", "", "the server's store URL, for the audit record: postgres://… (default $"+StoreEnv+", else SQLite in --data)")
	return cmd
}
