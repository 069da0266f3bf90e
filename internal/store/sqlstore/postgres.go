package sqlstore

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/meshpki/meshpki/internal/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgresExisting reads which of the token ids ($1) and serials ($2) are
// recorded, each as a row of its kind ('t' or 's') and value.
const postgresExisting = `SELECT 't', id FROM tokens WHERE id = ANY($1::text[])
	UNION ALL
	SELECT 's', serial FROM certificates WHERE serial = ANY($2::text[])`

// postgresCommitIssued records token ids ($1, $2), certificates ($3 to $18,
// the values of certInsertColumns) and their names ($19, with the serial of
// each in $20), appends their audit records ($21 on) and moves the audit
// head, in one statement.
var postgresCommitIssued = postgresAppendAudit(`consumed AS (
		INSERT INTO tokens (id, expires_at) SELECT * FROM unnest($1::text[], $2::bigint[])
	), recorded AS (
		INSERT INTO certificates (`+certInsertColumns+`)
		SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
			$10::bytea[], $11::text[], $12::bigint[], $13::integer[], $14::text[], $15::bigint[], $16::integer[], $17::integer[],
			$18::bigint[])
		RETURNING id, serial
	), named AS (
		INSERT INTO cert_names (name, cert_id)
		SELECT n.name, recorded.id FROM unnest($19::text[], $20::text[]) AS n (name, serial)
		JOIN recorded ON recorded.serial = n.serial
	)`, 21)

// issuedArrays are the rows postgresCommitIssued writes, a slice per column.
type issuedArrays struct {
	tokenIDs                                        []string
	tokenExpires                                    []int64
	serials, provisioners, issuers, subjects, names []string
	notBefore, notAfter                             []int64
	ders                                            [][]byte
	statuses                                        []string
	revokedAt                                       []*int64
	revocationReasons                               []int32
	renewedFrom                                     []string
	createdAt                                       []int64
	generations, shards                             []int32
	auditSeqs                                       []int64
	lookupNames, lookupSerials                      []string
}

func (a *issuedArrays) addToken(id string, expires int64) {
	a.tokenIDs = append(a.tokenIDs, id)
	a.tokenExpires = append(a.tokenExpires, expires)
}

func (a *issuedArrays) addCert(c *pendingCert) {
	a.serials = append(a.serials, c.serial)
	a.provisioners = append(a.provisioners, c.provisioner)
	a.issuers = append(a.issuers, c.issuer)
	a.subjects = append(a.subjects, c.subject)
	a.names = append(a.names, c.names)
	a.notBefore = append(a.notBefore, c.notBefore)
	a.notAfter = append(a.notAfter, c.notAfter)
	a.ders = append(a.ders, c.der)
	a.statuses = append(a.statuses, c.status)
	var revokedAt *int64
	if c.revokedAt.Valid {
		revokedAt = &c.revokedAt.Int64
	}
	a.revokedAt = append(a.revokedAt, revokedAt)
	a.revocationReasons = append(a.revocationReasons, c.revocationReason)
	a.renewedFrom = append(a.renewedFrom, c.renewedFrom)
	a.createdAt = append(a.createdAt, c.createdAt)
	a.generations = append(a.generations, c.generation)
	a.shards = append(a.shards, c.shard)
	a.auditSeqs = append(a.auditSeqs, c.auditSeq)
	for _, name := range c.lookupNames {
		a.lookupNames = append(a.lookupNames, name)
		a.lookupSerials = append(a.lookupSerials, c.serial)
	}
}

func (a *issuedArrays) args() []any {
	return []any{
		a.tokenIDs, a.tokenExpires,
		a.serials, a.provisioners, a.issuers, a.subjects, a.names, a.notBefore, a.notAfter,
		a.ders, a.statuses, a.revokedAt, a.revocationReasons, a.renewedFrom, a.createdAt, a.generations, a.shards, a.auditSeqs,
		a.lookupNames, a.lookupSerials,
	}
}

// issuanceCall is one CommitIssuances call on PostgreSQL: its encoded items
// and where their results go.
type issuanceCall struct {
	items   []pendingIssuance
	results []error
}

// commitPostgresCalls commits the CommitIssuances calls of one group-commit
// batch as one: their items, in the order the calls were queued, are
// decided and written in one transaction (commitPostgres), so a replayed
// token id or a taken serial is refused across calls as within one. A
// failure of the transaction fails every call in it.
func (s *Store) commitPostgresCalls(batch []*queuedWrite[issuanceCall]) {
	calls := takeAll(batch)
	var items []pendingIssuance
	var results []error
	switch len(calls) {
	case 0:
		return
	case 1:
		items, results = calls[0].value.items, calls[0].value.results
	default:
		for _, c := range calls {
			items = append(items, c.value.items...)
		}
		results = make([]error, len(items))
	}
	// Not a caller's context: once taken, the calls are committed or
	// rolled back whole, whichever caller stops waiting.
	err := s.commitPostgres(context.Background(), items, results)
	at := 0
	for _, c := range calls {
		c.err = err
		if len(calls) > 1 {
			copy(c.value.results, results[at:at+len(c.value.items)])
		}
		at += len(c.value.items)
	}
}

// commitPostgres runs CommitIssuances on PostgreSQL in two round trips,
// pipelining statements with pgx on the connection database/sql holds: one
// begins the transaction, takes the write lock (the audit head) and reads
// which of batch's token ids and serials exist; the items are decided in
// Go; the other writes the accepted items' rows and audit records with one
// statement and commits. Each statement of a pipeline takes its own
// snapshot, so the read sees every row committed before the lock was taken.
// The INSERTs are plain: under the write lock nothing else adds these rows,
// so a unique violation is a broken invariant and fails the whole batch.
func (s *Store) commitPostgres(ctx context.Context, batch []pendingIssuance, results []error) error {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer conn.Close() // no error worth reporting: Raw has settled the connection
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("begin: driver connection is a %T", dc)
		}
		pc := sc.Conn()
		err := s.commitPipelined(ctx, pc, batch, results)
		switch {
		case err == nil:
			return nil
		case pc.IsClosed():
			return fmt.Errorf("%w (%w)", err, driver.ErrBadConn)
		case pc.PgConn().TxStatus() != 'I':
			// Not the caller's context: a context that has ended is a reason
			// to roll back, not to skip it.
			if _, rbErr := pc.Exec(context.Background(), "ROLLBACK"); rbErr != nil {
				return fmt.Errorf("%w (rollback: %v; connection discarded: %w)", err, rbErr, driver.ErrBadConn)
			}
		}
		return err
	})
	return err
}

func (s *Store) commitPipelined(ctx context.Context, pc *pgx.Conn, batch []pendingIssuance, results []error) error {
	tokenIDs := make([]string, 0, len(batch))
	serials := make([]string, 0, len(batch))
	for _, it := range batch {
		if it.tokenID != "" {
			tokenIDs = append(tokenIDs, it.tokenID)
		}
		if it.cert != nil {
			serials = append(serials, it.cert.serial)
		}
	}
	var orderIDs, nodeIDs []string
	for _, it := range batch {
		if it.acmeOrder != "" {
			orderIDs = append(orderIDs, it.acmeOrder)
		}
		if it.node != nil {
			nodeIDs = append(nodeIDs, it.node.spiffeID)
		}
	}
	var (
		head     chainHead
		consumed = make(map[string]bool, len(tokenIDs))
		recorded = make(map[string]bool, len(serials))
		orders   = make(map[string]string, len(orderIDs)) // id → status
		evicted  = make(map[string]bool, len(nodeIDs))
		read     pgx.Batch
	)
	read.Queue("BEGIN")
	read.Queue(`SELECT seq, hash FROM audit_head WHERE id = 1` + s.dialect.lockRow).QueryRow(func(row pgx.Row) error {
		return row.Scan(&head.seq, &head.hash)
	})
	read.Queue(postgresExisting, tokenIDs, serials).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var kind, v string
			if err := rows.Scan(&kind, &v); err != nil {
				return err
			}
			if kind == "t" {
				consumed[v] = true
			} else {
				recorded[v] = true
			}
		}
		return rows.Err()
	})
	if len(orderIDs) > 0 {
		// Locked until the commit, so the status read is the one updated.
		read.Queue(`SELECT id, status FROM acme_orders WHERE id = ANY($1::text[]) FOR UPDATE`, orderIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id, st string
				if err := rows.Scan(&id, &st); err != nil {
					return err
				}
				orders[id] = st
			}
			return rows.Err()
		})
	}
	if len(nodeIDs) > 0 {
		read.Queue(`SELECT spiffe_id, evicted FROM spiffe_nodes WHERE spiffe_id = ANY($1::text[]) FOR UPDATE`, nodeIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var ev int
				if err := rows.Scan(&id, &ev); err != nil {
					return err
				}
				evicted[id] = ev != 0
			}
			return rows.Err()
		})
	}
	if err := pc.SendBatch(ctx, &read).Close(); err != nil {
		return fmt.Errorf("lock and read token ids and serials: %w", err)
	}

	var (
		rows                     issuedArrays
		events                   []pendingEvent
		finalized, finalizedWith []string // ACME orders and their serials
		finalizedAt              int64
		nodes                    [][]any // putNode arguments
	)
	for i, it := range batch {
		c := it.cert
		switch {
		case it.tokenID != "" && consumed[it.tokenID]:
			results[i] = replayed(it.index)
			continue
		case c != nil && recorded[c.serial]:
			results[i] = serialConflict(it.index, c.serial)
			continue
		case it.acmeOrder != "" && orders[it.acmeOrder] == "":
			results[i] = fmt.Errorf("item %d: acme order %s: %w", it.index, it.acmeOrder, store.ErrNotFound)
			continue
		case it.acmeOrder != "" && orders[it.acmeOrder] != store.ACMEReady:
			results[i] = fmt.Errorf("item %d: acme order %s is %s: %w", it.index, it.acmeOrder, orders[it.acmeOrder], store.ErrStateChanged)
			continue
		case it.node != nil && evicted[it.node.spiffeID]:
			results[i] = fmt.Errorf("item %d: node %s is evicted: %w", it.index, it.node.spiffeID, store.ErrStateChanged)
			continue
		}
		if it.node != nil {
			nodes = append(nodes, it.node.args(c.serial))
		}
		if it.acmeOrder != "" {
			orders[it.acmeOrder] = store.ACMEValid
			finalized, finalizedWith, finalizedAt = append(finalized, it.acmeOrder), append(finalizedWith, c.serial), it.at
		}
		if it.tokenID != "" {
			consumed[it.tokenID] = true
			rows.addToken(it.tokenID, it.tokenExpires)
		}
		if c != nil {
			recorded[c.serial] = true
			if len(it.events) > 0 {
				c.auditSeq = head.seq + int64(len(events)) + 1 // seal numbers events in order
			}
			rows.addCert(c)
		}
		events = append(events, it.events...)
	}
	var write pgx.Batch
	if len(rows.tokenIDs) > 0 || len(rows.serials) > 0 || len(events) > 0 {
		sealed, head := seal(head, events, s.now())
		write.Queue(postgresCommitIssued, append(rows.args(), postgresAuditArgs(sealed, events, head)...)...)
	}
	for _, args := range nodes {
		write.Queue(putNode, args...)
	}
	if len(finalized) > 0 {
		write.Queue(`UPDATE acme_orders SET status = 'valid', cert_serial = o.serial, error = NULL, updated_at = $3
			FROM unnest($1::text[], $2::text[]) AS o (id, serial) WHERE acme_orders.id = o.id`, finalized, finalizedWith, finalizedAt)
	}
	write.Queue("COMMIT")
	if err := pc.SendBatch(ctx, &write).Close(); err != nil {
		return fmt.Errorf("record issuances: %w", err)
	}
	return nil
}
