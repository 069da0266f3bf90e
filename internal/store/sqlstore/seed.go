package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/meshpki/meshpki/internal/store"
)

// SeedInventory writes scanned certificates as a scan at at saw them, each
// current at its location, without RecordScan's bookkeeping of which
// certificate a location presents: for benchmarks and load tests of what
// reads the inventory (listings, metrics, alert evaluation) at sizes
// RecordScan would take minutes to reach. next returns the i-th
// observation; observations must not repeat a fingerprint or a location.
// It commits every 10,000 rows.
func (s *Store) SeedInventory(ctx context.Context, at time.Time, n int, next func(i int) store.Observation) error {
	const chunk = 10_000
	for start := 0; start < n; start += chunk {
		err := s.sqlTx(ctx, func(tx *sql.Tx) error {
			cert, err := tx.PrepareContext(ctx, `INSERT INTO inventory_certs (fingerprint, serial, subject, issuer_dn, names, not_before, not_after,
				chain, findings, issued_serial, labels, active, first_seen, last_seen)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, 1, $11, $11) RETURNING id`)
			if err != nil {
				return err
			}
			defer cert.Close()
			name, err := tx.PrepareContext(ctx, insertInventoryName)
			if err != nil {
				return err
			}
			defer name.Close()
			sighting, err := tx.PrepareContext(ctx, `INSERT INTO inventory_sightings (location, cert_id, scope, findings, current, first_seen, last_seen)
				VALUES ($1, $2, $3, $4, 1, $5, $5)`)
			if err != nil {
				return err
			}
			defer sighting.Close()
			for i := start; i < min(start+chunk, n); i++ {
				o := next(i)
				names, _ := json.Marshal(nonNil(o.Names))
				findings, _ := json.Marshal(nonNil(o.Findings))
				labels, err := encodeLabels(o.Labels)
				if err != nil {
					return err
				}
				var id int64
				if err := cert.QueryRowContext(ctx, o.Fingerprint, string(o.Serial), o.Subject, o.IssuerDN, string(names),
					micros(o.NotBefore), micros(o.NotAfter), slices.Concat(o.Chain...), string(findings), string(o.IssuedSerial), micros(at), labels).Scan(&id); err != nil {
					return fmt.Errorf("observation %d: %w", i, err)
				}
				for _, nm := range lookupNames(&store.Certificate{Subject: commonName(o.Subject), Names: o.Names}) {
					if _, err := name.ExecContext(ctx, nm, id); err != nil {
						return err
					}
				}
				if _, err := sighting.ExecContext(ctx, o.Location, id, o.Scope, string(findings), micros(at)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sqlstore: seed inventory: %w", err)
		}
	}
	return nil
}
