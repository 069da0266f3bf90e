package cli

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/server"
	"github.com/meshpki/meshpki/internal/store/sqlstore"
)

func init() { register(newAuditCommand) }

func newAuditCommand(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the hash-chained audit log",
		Long: `Every issuance, renewal, revocation, token creation, denied request and
admin change is appended to an audit log in the store. Each record carries the
hash of the one before it, so an edited, inserted or deleted record breaks the
chain. These commands open the store directly (on the CA host).`,
	}
	cmd.AddCommand(newAuditVerifyCommand(s), newAuditTailCommand(s))
	return cmd
}

type storeFlags struct {
	dataDir, storeURL string
}

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data", "", "data directory (its SQLite store is used unless --store is given)")
	cmd.Flags().StringVar(&f.storeURL, "store", "", "store URL: postgres://… (default $"+StoreEnv+", else SQLite in --data)")
}

func (f *storeFlags) open(cmd *cobra.Command) (*sqlstore.Store, error) {
	storeURL := storeURLOrEnv(f.storeURL)
	if f.dataDir == "" && storeURL == "" {
		return nil, usageError{fmt.Errorf("--data DIR or --store URL is required")}
	}
	// Reading never creates: a mistyped --data is an error, not an empty
	// store that verifies.
	return sqlstore.OpenExisting(contextOf(cmd), storeURL, f.dataDir)
}

func newAuditVerifyCommand(s *streams) *cobra.Command {
	var sf storeFlags
	var asJSON bool
	var keyFile, head string
	cmd := &cobra.Command{
		Use:   "verify --data DIR [--store URL] [--checkpoint-key FILE] [--head HASH]",
		Short: "Check the whole audit chain and name every record that was tampered with",
		Long: `Walk the audit log from the first record, recompute every hash and check
every link. Prints "audit log OK" with the record count, or each problem with
its record number, and exits 3 when there is any (1 when the log cannot be
read at all; a --data without a store is an error, never an empty log).

Someone who can write the database can rewrite the whole chain consistently.
Two checks catch that. The server signs the chain's head every 10 minutes
and at shutdown (an audit.checkpoint record) with a key the database does not
hold; each checkpoint's signature is checked with the public key in
DIR/ca/audit-checkpoint.pub (or --checkpoint-key), and the record it signed
must still have the hash it signed. And --head takes a record hash saved
elsewhere earlier ('audit tail -n 1 --json | jq -r .hash'), which must still
be in the log.`,
		Example: `  meshpki audit verify --data ./ca-data
  meshpki audit verify --data ./ca-data --head 9f2c…
  meshpki audit verify --store postgres://meshpki@db/meshpki --checkpoint-key audit-checkpoint.pub --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sf.open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			var opts audit.VerifyOptions
			if opts.CheckpointKey, err = checkpointKey(keyFile, sf.dataDir); err != nil {
				return err
			}
			if head != "" {
				if opts.Head, err = hex.DecodeString(head); err != nil || len(opts.Head) != audit.HashSize {
					return usageError{fmt.Errorf("--head %q is not a record hash (64 hexadecimal digits)", ca.Clip(head))}
				}
			}
			lastShown := time.Now()
			rep, err := audit.VerifyWith(contextOf(cmd), st, opts, func(n int64) {
				if !asJSON && time.Since(lastShown) > time.Second {
					fmt.Fprintf(s.err, "verified %d records…\n", n)
					lastShown = time.Now()
				}
			})
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(s.out, rep); err != nil {
					return err
				}
			} else if rep.OK() {
				fmt.Fprintf(s.out, "audit log OK: %d records, chain intact", rep.Records)
				if opts.CheckpointKey != nil {
					fmt.Fprintf(s.out, ", %d signed checkpoints verified", rep.Checkpoints)
				}
				if opts.Head != nil {
					fmt.Fprint(s.out, ", the saved head is in it")
				}
				fmt.Fprintln(s.out)
			} else {
				fmt.Fprintf(s.out, "audit log BROKEN: %d records, %d problems\n", rep.Records, len(rep.Problems))
				for _, p := range rep.Problems {
					fmt.Fprintf(s.out, "  %s\n", p)
				}
			}
			if !rep.OK() {
				return exitCodeError{code: exitChecked, err: fmt.Errorf("the audit log failed verification (%d problems)", len(rep.Problems))}
			}
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&keyFile, "checkpoint-key", "", "PEM `FILE` of the checkpoint public key (default DIR/ca/audit-checkpoint.pub when present)")
	cmd.Flags().StringVar(&head, "head", "", "a record `HASH` saved outside the database, which must still be in the log")
	return cmd
}

// checkpointKey reads the checkpoint public key from file, else from the
// data directory when it has one; nil when neither is there.
func checkpointKey(file, dataDir string) (crypto.PublicKey, error) {
	if file == "" {
		if dataDir == "" {
			return nil, nil
		}
		file = filepath.Join(dataDir, server.CheckpointKeyFile)
		if _, err := os.Stat(file); err != nil {
			return nil, nil
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("checkpoint key %s holds no PEM PUBLIC KEY", file)
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func newAuditTailCommand(s *streams) *cobra.Command {
	var sf storeFlags
	var asJSON bool
	var n int
	cmd := &cobra.Command{
		Use:   "tail --data DIR [-n 20] [--json]",
		Short: "Print the newest audit records",
		Example: `  meshpki audit tail --data ./ca-data
  meshpki audit tail --data ./ca-data -n 100 --json | jq 'select(.outcome=="denied")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 {
				return usageError{fmt.Errorf("-n must be at least 1")}
			}
			st, err := sf.open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := contextOf(cmd)
			head, _, err := st.AuditHead(ctx)
			if err != nil {
				return err
			}
			events, err := st.ListAudit(ctx, max(0, head-int64(n)), n)
			if err != nil {
				return err
			}
			for _, e := range events {
				if asJSON {
					b, _ := json.Marshal(auditJSON(e))
					fmt.Fprintln(s.out, string(b))
					continue
				}
				fmt.Fprintf(s.out, "%6d  %s  %-8s %-22s %-40s %s%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Outcome, e.Type, e.Actor, e.Subject, detailText(e.Detail))
			}
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many records")
	return cmd
}

func auditJSON(e audit.Event) map[string]any {
	return map[string]any{
		"seq": e.Seq, "time": e.Time.UTC(), "type": e.Type, "actor": e.Actor, "subject": e.Subject,
		"outcome": e.Outcome, "detail": e.Detail, "prev_hash": hex.EncodeToString(e.PrevHash), "hash": hex.EncodeToString(e.Hash),
	}
}

func detailText(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s=%q", k, d[k])
	}
	return b.String()
}
