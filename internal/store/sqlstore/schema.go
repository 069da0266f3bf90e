package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// dialect holds what differs between SQLite and PostgreSQL in the schema and
// in locking. The rest of the SQL, including $n placeholders (SQLite accepts
// them too), is shared, but for the statements of the write paths fitted to
// one backend (CommitIssuances, the audit append).
type dialect struct {
	name string
	// bytes is the column type for byte strings.
	bytes string
	// keyText is the column type for text keys listed in order: byte order,
	// whatever the database's default collation.
	keyText string
	// rowID is the column definition of an integer primary key the database
	// assigns in increasing order, so that rows append to the table.
	rowID string
	// seqKey is the column definition of an integer primary key the store
	// assigns in increasing order.
	seqKey string
	// keyedTable ends a CREATE TABLE of small rows to be stored in the B-tree
	// of their primary key alone, not also in one of row ids.
	keyedTable string
	// genesis is an expression for audit.GenesisHash (32 zero bytes).
	genesis string
	// lockRow is appended to a SELECT to hold the row until commit.
	lockRow string
	// firstName is an expression for the first element of c.names, the
	// JSON array of a certificate's SANs.
	firstName string
	// migrateLock, run first in the migration transaction, serialises
	// migrations by concurrent processes ("" when the transaction itself
	// already does).
	migrateLock string
}

var sqliteDialect = &dialect{
	name:    "sqlite",
	bytes:   "BLOB",
	keyText: "TEXT COLLATE BINARY",
	// The rowid itself: a new row gets the largest id plus one.
	rowID: "INTEGER PRIMARY KEY",
	// Also the rowid: the table is its one B-tree.
	seqKey:     "INTEGER PRIMARY KEY",
	keyedTable: " WITHOUT ROWID",
	genesis:    "zeroblob(32)",
	firstName:  "json_extract(c.names, '$[0]')",
	// A write transaction begins IMMEDIATE and so already holds the
	// database's single write lock.
	lockRow:     "",
	migrateLock: "",
}

var postgresDialect = &dialect{
	name:       "postgres",
	bytes:      "BYTEA",
	keyText:    `TEXT COLLATE "C"`,
	rowID:      "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	seqKey:     "BIGINT PRIMARY KEY",
	keyedTable: "",
	genesis:    "decode(repeat('00', 32), 'hex')",
	firstName:  "(c.names::jsonb->>0)",
	lockRow:    " FOR UPDATE",
	// Transaction-scoped, keyed by "mesh" in ASCII and by schema, so that
	// stores in different schemas of one database migrate independently.
	migrateLock: "SELECT pg_advisory_xact_lock(1835365224, hashtext(coalesce(current_schema(), '')))",
}

// migrations are the schema versions in order: migrations[i] brings the
// schema to version i+1. Never edit one that has shipped; append a new one.
// The {…} parts are replaced per dialect, see render.
//
// Keys are chosen so that issuing appends, and a commit rewrites few pages: a
// certificate row, wide with its DER, goes at the end of its table under an
// increasing integer id, and only the narrow index on the random serial takes
// inserts all over; the names of a fleet's certificates, the same for many,
// append under (name, cert_id); token ids are time-ordered (the CA makes them
// so) and append too.
var migrations = [][]string{
	// 1: certificates, token ids, provisioners, the audit log.
	{
		`CREATE TABLE certificates (
			id                {rowid},
			serial            {keytext} NOT NULL UNIQUE,
			provisioner       TEXT NOT NULL,
			issuer            TEXT NOT NULL,
			subject           TEXT NOT NULL,
			names             TEXT NOT NULL, -- JSON array of the SANs, in certificate order
			not_before        BIGINT NOT NULL, -- unix microseconds, like every time
			not_after         BIGINT NOT NULL,
			der               {bytes} NOT NULL,
			status            TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
			revoked_at        BIGINT,
			revocation_reason INTEGER NOT NULL,
			renewed_from      TEXT NOT NULL,
			created_at        BIGINT NOT NULL
		)`,
		`CREATE INDEX certificates_not_after ON certificates (not_after)`,
		// The subject and every SAN of each certificate, for lookup by name.
		`CREATE TABLE cert_names (
			name    TEXT NOT NULL,
			cert_id BIGINT NOT NULL REFERENCES certificates (id),
			PRIMARY KEY (name, cert_id)
		){keyed}`,
		// No index on expires_at: each consumed token would pay for a
		// second B-tree insert, while PruneTokens runs rarely and finds
		// most rows expired, so scanning costs it little more.
		`CREATE TABLE tokens (
			id         TEXT PRIMARY KEY,
			expires_at BIGINT NOT NULL
		){keyed}`,
		`CREATE TABLE provisioners (
			name       {keytext} PRIMARY KEY,
			type       TEXT NOT NULL,
			policy     TEXT NOT NULL, -- policy.Policy as JSON
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE TABLE audit_events (
			seq        {seqkey},
			event_time BIGINT NOT NULL,
			event_type TEXT NOT NULL,
			actor      TEXT NOT NULL,
			subject    TEXT NOT NULL,
			outcome    TEXT NOT NULL,
			detail     TEXT, -- JSON object, NULL when empty
			prev_hash  {bytes} NOT NULL,
			hash       {bytes} NOT NULL
		)`,
		// The last record appended: what audit.Verify checks the log reaches.
		`CREATE TABLE audit_head (
			id   INTEGER PRIMARY KEY CHECK (id = 1),
			seq  BIGINT NOT NULL,
			hash {bytes} NOT NULL
		)`,
		`INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, {genesis})`,
	},
	// 2: ACME (RFC 8555) accounts, orders, authorizations with their
	// challenges, and external account binding keys. Ids are random text
	// chosen by the caller, so each table is its primary key's B-tree alone.
	// An authorization's challenges are a JSON array in its row: they are
	// always read and written with it, and the row is the unit every
	// challenge transition locks and updates.
	{
		// An acme provisioner may refuse accounts without external account
		// binding.
		`ALTER TABLE provisioners ADD COLUMN require_eab INTEGER NOT NULL DEFAULT 0`,
		`CREATE TABLE acme_accounts (
			id          {keytext} PRIMARY KEY,
			provisioner TEXT NOT NULL,
			thumbprint  TEXT NOT NULL, -- RFC 7638 SHA-256, base64url
			key_jwk     {bytes} NOT NULL,
			status      TEXT NOT NULL CHECK (status IN ('valid', 'deactivated', 'revoked')),
			contact     TEXT NOT NULL, -- JSON array of URLs
			eab_key_id  TEXT NOT NULL,
			created_at  BIGINT NOT NULL,
			UNIQUE (provisioner, thumbprint)
		){keyed}`,
		`CREATE TABLE acme_orders (
			id          {keytext} PRIMARY KEY,
			account_id  {keytext} NOT NULL REFERENCES acme_accounts (id),
			provisioner TEXT NOT NULL,
			status      TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'processing', 'valid', 'invalid')),
			expires     BIGINT NOT NULL,
			identifiers TEXT NOT NULL, -- JSON array of {"type", "value"}
			not_before  BIGINT,
			not_after   BIGINT,
			authz_ids   TEXT NOT NULL, -- JSON array, in identifier order
			error       {bytes}, -- RFC 7807 problem, NULL unless invalid
			cert_serial TEXT NOT NULL, -- "" until valid
			replaces    TEXT NOT NULL, -- RFC 9773 certificate id, or ""
			created_at  BIGINT NOT NULL,
			updated_at  BIGINT NOT NULL
		){keyed}`,
		// ListACMEOrders: an account's orders, oldest first.
		`CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at, id)`,
		`CREATE UNIQUE INDEX acme_orders_cert_serial ON acme_orders (cert_serial) WHERE cert_serial <> ''`,
		// A certificate is replaced by one order at most, not counting
		// orders that failed (RFC 9773, section 5), so that a client can
		// retry a failed replacement.
		`CREATE UNIQUE INDEX acme_orders_replaces ON acme_orders (replaces) WHERE replaces <> '' AND status <> 'invalid'`,
		`CREATE TABLE acme_authzs (
			id               {keytext} PRIMARY KEY,
			account_id       {keytext} NOT NULL REFERENCES acme_accounts (id),
			order_id         {keytext} NOT NULL REFERENCES acme_orders (id),
			identifier_type  TEXT NOT NULL,
			identifier_value TEXT NOT NULL,
			wildcard         INTEGER NOT NULL, -- 0 or 1
			status           TEXT NOT NULL CHECK (status IN ('pending', 'valid', 'invalid', 'deactivated', 'revoked', 'expired')),
			expires          BIGINT NOT NULL,
			challenges       TEXT NOT NULL -- JSON array, see acmeChallenge
		){keyed}`,
		// Whether every authorization of an order is valid, read from the
		// index alone.
		`CREATE INDEX acme_authzs_order ON acme_authzs (order_id, status)`,
		`CREATE TABLE acme_eab_keys (
			id            {keytext} PRIMARY KEY,
			provisioner   TEXT NOT NULL,
			hmac_key      {bytes} NOT NULL, -- as the caller sealed it
			bound_account TEXT NOT NULL, -- "" until bound
			created_at    BIGINT NOT NULL,
			bound_at      BIGINT
		){keyed}`,
		`CREATE INDEX acme_eab_keys_provisioner ON acme_eab_keys (provisioner, id)`,
	},
	// 3: SPIFFE registration entries, the deletions agents have yet to
	// learn of, the entry revision counter, and attested nodes. An entry's
	// revision is that of its last change, so the changes since revision R
	// are the entries with a higher revision (an index range scan) and the
	// deletions with a higher revision: the log keeps each entry's latest
	// change alone, and only deletions need rows of their own (see
	// EntryChanges).
	{
		`CREATE TABLE spiffe_entries (
			id         {keytext} PRIMARY KEY,
			spiffe_id  {keytext} NOT NULL,
			parent     {keytext} NOT NULL,
			selectors  TEXT NOT NULL, -- JSON array, sorted, no duplicates
			-- SHA-256 of (spiffe_id, parent, selectors): unique, and of fixed
			-- size however long the three are.
			identity   {bytes} NOT NULL UNIQUE,
			x509_ttl   BIGINT NOT NULL, -- microseconds
			jwt_ttl    BIGINT NOT NULL, -- microseconds
			dns_names  TEXT NOT NULL, -- JSON array, in the order given
			hint       TEXT NOT NULL,
			revision   BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		){keyed}`,
		// ListEntries by SPIFFE ID or by parent, in id order.
		`CREATE INDEX spiffe_entries_spiffe_id ON spiffe_entries (spiffe_id, id)`,
		`CREATE INDEX spiffe_entries_parent ON spiffe_entries (parent, id)`,
		// EntryChanges; unique since each change takes a new revision.
		`CREATE UNIQUE INDEX spiffe_entries_revision ON spiffe_entries (revision)`,
		// The last deletion of each entry id not since created again.
		`CREATE TABLE spiffe_entry_deletions (
			entry_id {keytext} PRIMARY KEY,
			parent   TEXT NOT NULL,
			revision BIGINT NOT NULL
		){keyed}`,
		`CREATE UNIQUE INDEX spiffe_entry_deletions_revision ON spiffe_entry_deletions (revision)`,
		// The revision of the last entry change, and the highest revision
		// of a deletion forgotten (0 while none is): changes since a
		// revision below it are no longer complete.
		`CREATE TABLE spiffe_revision (
			id       INTEGER PRIMARY KEY CHECK (id = 1),
			revision BIGINT NOT NULL,
			pruned   BIGINT NOT NULL
		)`,
		`INSERT INTO spiffe_revision (id, revision, pruned) VALUES (1, 0, 0)`,
		`CREATE TABLE spiffe_nodes (
			spiffe_id   {keytext} PRIMARY KEY,
			attestation TEXT NOT NULL,
			selectors   TEXT NOT NULL, -- JSON array, in the order given
			cert_serial TEXT NOT NULL,
			evicted     INTEGER NOT NULL, -- 0 or 1; never back to 0
			created_at  BIGINT NOT NULL,
			updated_at  BIGINT NOT NULL
		){keyed}`,
	},
	// 4: find the renewals of a certificate, to revoke them with it. Only
	// renewals are indexed, so first issuances pay nothing for it.
	{
		`CREATE INDEX certificates_renewed_from ON certificates (renewed_from) WHERE renewed_from <> ''`,
	},
	// 5: the inventory of scanned certificates, where each was seen, and
	// scan schedules. A certificate is one row however often and wherever
	// it is seen, appended under an increasing id like certificates;
	// listing goes by expiry through the not_after index, lookup by name
	// through inventory_names. A sighting is a (location, certificate)
	// pair; current marks the certificate a location presents now, active
	// a certificate current somewhere (see RecordScan).
	{
		`CREATE TABLE inventory_certs (
			id            {rowid},
			fingerprint   {keytext} NOT NULL UNIQUE, -- lowercase hex SHA-256 of the leaf
			serial        TEXT NOT NULL,
			subject       TEXT NOT NULL,
			issuer_dn     TEXT NOT NULL,
			names         TEXT NOT NULL, -- JSON array of the SANs
			not_before    BIGINT NOT NULL,
			not_after     BIGINT NOT NULL,
			chain         {bytes} NOT NULL, -- DER certificates one after another, leaf first
			findings      TEXT NOT NULL, -- JSON, of the latest sighting
			issued_serial TEXT NOT NULL, -- "" unless meshpki issued it
			labels        TEXT NOT NULL, -- JSON object, of the latest sighting
			active        INTEGER NOT NULL, -- 0 or 1
			first_seen    BIGINT NOT NULL,
			last_seen     BIGINT NOT NULL
		)`,
		`CREATE INDEX inventory_certs_not_after ON inventory_certs (not_after)`,
		// The few with findings that do not move with time, or that meshpki
		// issued, which alert evaluation reads whatever their expiry.
		`CREATE INDEX inventory_certs_notable ON inventory_certs (not_after) WHERE findings <> '[]' OR issued_serial <> ''`,
		`CREATE TABLE inventory_names (
			name    TEXT NOT NULL,
			cert_id BIGINT NOT NULL REFERENCES inventory_certs (id),
			PRIMARY KEY (name, cert_id)
		){keyed}`,
		`CREATE TABLE inventory_sightings (
			location   {keytext} NOT NULL,
			cert_id    BIGINT NOT NULL REFERENCES inventory_certs (id),
			scope      TEXT NOT NULL,
			findings   TEXT NOT NULL, -- JSON
			current    INTEGER NOT NULL, -- 0 or 1
			first_seen BIGINT NOT NULL,
			last_seen  BIGINT NOT NULL,
			PRIMARY KEY (location, cert_id)
		){keyed}`,
		`CREATE INDEX inventory_sightings_cert ON inventory_sightings (cert_id)`,
		`CREATE INDEX inventory_sightings_scope ON inventory_sightings (scope, last_seen)`,
		`CREATE TABLE scan_schedules (
			name       {keytext} PRIMARY KEY,
			targets    TEXT NOT NULL, -- JSON array
			every      BIGINT NOT NULL, -- microseconds
			options    TEXT NOT NULL, -- JSON object
			next_run   BIGINT NOT NULL,
			last_run   BIGINT,
			last_error TEXT NOT NULL,
			created_at BIGINT NOT NULL
		)`,
		`CREATE INDEX scan_schedules_next_run ON scan_schedules (next_run)`,
	},
	// 6: alerting: channels (their secrets sealed by the server), rules,
	// the state of each alert, the outbox of notifications (kept as
	// history once delivered), and leases that make one replica at a time
	// run a singleton job.
	{
		`CREATE TABLE alert_channels (
			name       {keytext} PRIMARY KEY,
			kind       TEXT NOT NULL,
			is_default INTEGER NOT NULL, -- 0 or 1
			public     TEXT NOT NULL, -- JSON, shown
			sealed     {bytes} NOT NULL, -- the whole configuration, sealed
			created_at BIGINT NOT NULL
		)`,
		`CREATE TABLE alert_rules (
			name       {keytext} PRIMARY KEY,
			channel    TEXT NOT NULL,
			spec       TEXT NOT NULL, -- JSON
			created_at BIGINT NOT NULL
		)`,
		`CREATE TABLE alerts (
			alert_key     {keytext} PRIMARY KEY,
			rule          TEXT NOT NULL,
			channel       TEXT NOT NULL,
			certificate   TEXT NOT NULL,
			check_id      TEXT NOT NULL,
			threshold     TEXT NOT NULL,
			severity      TEXT NOT NULL,
			summary       TEXT NOT NULL,
			labels        TEXT NOT NULL, -- JSON object
			state         TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
			fired_at      BIGINT NOT NULL,
			last_notified BIGINT,
			absent_since  BIGINT,
			resolved_at   BIGINT
		){keyed}`,
		`CREATE INDEX alerts_state ON alerts (state, alert_key)`,
		`CREATE TABLE alert_outbox (
			id           {rowid},
			channel      TEXT NOT NULL,
			status       TEXT NOT NULL,
			alerts       INTEGER NOT NULL,
			payload      TEXT NOT NULL, -- JSON
			attempts     INTEGER NOT NULL,
			next_attempt BIGINT NOT NULL,
			created_at   BIGINT NOT NULL,
			delivered_at BIGINT,
			failed_at    BIGINT,
			last_error   TEXT NOT NULL
		)`,
		`CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt) WHERE delivered_at IS NULL AND failed_at IS NULL`,
		`CREATE TABLE leases (
			name     {keytext} PRIMARY KEY,
			holder   TEXT NOT NULL,
			until_at BIGINT NOT NULL
		)`,
	},
	// 7: publishing revocation: which generation of its intermediate signed
	// each certificate and the CRL shard it is listed on, a covering index
	// of the revoked ones that CRLs are built from, a counter every
	// revocation moves, and the signed CRLs replicas share.
	{
		`ALTER TABLE certificates ADD COLUMN issuer_generation INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE certificates ADD COLUMN crl_shard INTEGER NOT NULL DEFAULT 0`,
		`CREATE INDEX certificates_revoked ON certificates
			(issuer, issuer_generation, not_after, serial, revoked_at, revocation_reason, crl_shard) WHERE status = 'revoked'`,
		`CREATE INDEX certificates_generation_unknown ON certificates (id) WHERE issuer_generation = 0`,
		`CREATE TABLE counters (
			name  {keytext} PRIMARY KEY,
			value BIGINT NOT NULL
		){keyed}`,
		`INSERT INTO counters (name, value) VALUES ('revocations', 0)`,
		`CREATE TABLE crls (
			scope       {keytext} PRIMARY KEY,
			number      BIGINT NOT NULL,
			this_update BIGINT NOT NULL,
			next_update BIGINT NOT NULL,
			revision    BIGINT NOT NULL,
			shards      INTEGER NOT NULL,
			der         {bytes} NOT NULL
		)`,
	},
	// 8: the covering index of revoked certificates by shard first, so
	// that one shard's CRL is a range of it.
	{
		`DROP INDEX certificates_revoked`,
		`CREATE INDEX certificates_revoked ON certificates
			(issuer, issuer_generation, crl_shard, not_after, serial, revoked_at, revocation_reason) WHERE status = 'revoked'`,
	},
	// 9: dashboard sign-ins (one-time) and sessions, by hashes of their
	// secrets.
	{
		`CREATE TABLE ui_logins (
			token_hash {keytext} PRIMARY KEY,
			admin      TEXT NOT NULL,
			expires_at BIGINT NOT NULL,
			used_at    BIGINT
		)`,
		`CREATE TABLE ui_sessions (
			id_hash    {keytext} PRIMARY KEY,
			admin      TEXT NOT NULL,
			csrf       TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL
		)`,
	},
	// 10: a certificate's audit trail for the dashboard. An issuance
	// records the sequence number of its first audit record in the
	// certificate's row (filled in below for the rows before), so the
	// records written at every issuance need no second index; the rare
	// ones that name a certificate later — revocations and refusals — are
	// indexed by subject.
	{
		`ALTER TABLE certificates ADD COLUMN audit_seq BIGINT NOT NULL DEFAULT 0`,
		`CREATE INDEX audit_events_issuance ON audit_events (subject, seq) WHERE ` + issuanceEvents,
		`UPDATE certificates SET audit_seq = COALESCE((SELECT min(seq) FROM audit_events
			WHERE audit_events.subject = certificates.serial AND ` + issuanceEvents + `), 0)`,
		`DROP INDEX audit_events_issuance`,
		`CREATE INDEX audit_events_later ON audit_events (subject, seq) WHERE ` + laterCertificateEvents,
	},
	// 11: node provisioners name the attested nodes that may request
	// certificates through them (declared certificates, manifests).
	{
		`ALTER TABLE provisioners ADD COLUMN nodes TEXT NOT NULL DEFAULT '[]'`, // a JSON array of patterns
	},
	// 12: operators — who administers the CA, with which role. A retired
	// operator's row stays, so its name is never reused.
	{
		`CREATE TABLE operators (
			name         TEXT PRIMARY KEY,
			role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'viewer')),
			provisioners TEXT NOT NULL, -- JSON array of names
			created_at   BIGINT NOT NULL,
			retired_at   BIGINT
		)`,
	},
	// 13: operators enrolled by the identity of a certificate from another
	// CA (a SPIFFE ID or a subject), each identity to one operator.
	{
		`ALTER TABLE operators ADD COLUMN identity TEXT NOT NULL DEFAULT ''`,
		`CREATE UNIQUE INDEX operators_identity ON operators (identity) WHERE identity <> ''`,
	},
	// 14: singleton jobs run on the elected leader (store.Leadership).
	// What a leader claimed and had not finished when it died is marked,
	// so that the next leader takes it back at once. (The leases table of
	// migration 6 is no longer used; it stays for replicas of the previous
	// version during a rolling upgrade.)
	{
		`ALTER TABLE alert_outbox ADD COLUMN claimed_at BIGINT`,
		`ALTER TABLE scan_schedules ADD COLUMN claimed_at BIGINT`,
		// When the authorization's challenge began processing (NULL when
		// none is): a validation whose replica died is found and run again.
		`ALTER TABLE acme_authzs ADD COLUMN processing_since BIGINT`,
		`CREATE INDEX acme_authzs_processing ON acme_authzs (processing_since) WHERE processing_since IS NOT NULL`,
	},
	// 15: intermediate generations the root revoked, which every replica
	// applies whatever its copy of ca.json says.
	{
		`CREATE TABLE issuer_revocations (
			serial TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			generation INTEGER NOT NULL,
			revoked_at BIGINT NOT NULL,
			reason INTEGER NOT NULL
		)`,
	},
}

// issuanceEvents and laterCertificateEvents select the audit records about
// a certificate: those committed with it, and the rarer ones after. Queries
// repeat them word for word, which is how SQLite knows a partial index
// applies.
const (
	issuanceEvents         = `event_type IN ('certificate.issued', 'certificate.renewed')`
	laterCertificateEvents = `event_type IN ('certificate.revoked', 'request.denied')`
)

// render fills in the dialect's parts of a migration statement.
func (d *dialect) render(stmt string) string {
	return strings.NewReplacer(
		"{bytes}", d.bytes,
		"{keytext}", d.keyText,
		"{genesis}", d.genesis,
		"{rowid}", d.rowID,
		"{seqkey}", d.seqKey,
		"{keyed}", d.keyedTable,
	).Replace(stmt)
}

// migrate brings the schema to the latest version in one transaction, so a
// failed migration leaves the previous version intact. Concurrent Opens are
// serialised by the write lock (SQLite) or an advisory lock (PostgreSQL).
func (s *Store) migrate(ctx context.Context) error {
	err := s.sqlTx(ctx, func(tx *sql.Tx) error {
		if s.dialect.migrateLock != "" {
			if _, err := tx.ExecContext(ctx, s.dialect.migrateLock); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current > len(migrations) {
			return fmt.Errorf("database schema is version %d, newer than this meshpki (%d): upgrade meshpki", current, len(migrations))
		}
		for i := current; i < len(migrations); i++ {
			version := i + 1
			for _, stmt := range migrations[i] {
				if _, err := tx.ExecContext(ctx, s.dialect.render(stmt)); err != nil {
					return fmt.Errorf("version %d: %w", version, err)
				}
			}
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				version, micros(s.now())); err != nil {
				return fmt.Errorf("version %d: %w", version, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: migrate schema: %w", err)
	}
	return nil
}
