package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

// The ACME transitions (RFC 8555, section 7.1.6) are conditional UPDATEs:
// each names the status it moves from and reports, by the rows it changed,
// whether another request moved the object first. On PostgreSQL, where
// replicas write at once, a transition that reads before it writes locks
// what it reads, always in one order — the order row, then the
// authorization row (whose challenges it holds) — so that two transitions
// cannot deadlock, and so that of two authorizations of one order finishing
// at once, the second to commit sees the first and moves the order to ready.
// On SQLite every write transaction holds the database's write lock.

const acmeAccountColumns = `id, provisioner, thumbprint, key_jwk, status, contact, eab_key_id, created_at`

// CreateACMEAccount adds an account, binding a.EABKeyID to it when set, and
// appends ev. An empty Status records a valid account and a zero CreatedAt
// now; the key is bound at CreatedAt.
func (s *Store) CreateACMEAccount(ctx context.Context, a store.ACMEAccount, ev audit.Event) error {
	if a.ID == "" || a.Provisioner == "" || a.Thumbprint == "" {
		return errors.New("sqlstore: create acme account: empty id, provisioner or thumbprint")
	}
	if a.Status == "" {
		a.Status = store.ACMEValid
	}
	if err := checkAccountStatus(a.Status); err != nil {
		return fmt.Errorf("sqlstore: create acme account %s: %w", a.ID, err)
	}
	contact, err := json.Marshal(a.Contact)
	if err != nil {
		return fmt.Errorf("sqlstore: create acme account %s: encode contact: %w", a.ID, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create acme account %s: %w", a.ID, err)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now()
	}
	return s.lockedTx(ctx, "create acme account "+a.ID, func(w writer, emit emitFunc) error {
		res, err := w.exec(ctx, `INSERT INTO acme_accounts (`+acmeAccountColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			a.ID, a.Provisioner, a.Thumbprint, nonNil(a.KeyJWK), a.Status, string(contact), a.EABKeyID, micros(a.CreatedAt))
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrConflict); err != nil {
			return err
		}
		if a.EABKeyID != "" {
			if err := bindEABKey(ctx, w, a); err != nil {
				return err
			}
		}
		emit(events...)
		return nil
	})
}

// bindEABKey binds the unbound key a.EABKeyID of a's provisioner to a.
func bindEABKey(ctx context.Context, w writer, a store.ACMEAccount) error {
	res, err := w.exec(ctx, `UPDATE acme_eab_keys SET bound_account = $1, bound_at = $2
		WHERE id = $3 AND provisioner = $4 AND bound_account = ''`,
		a.ID, micros(a.CreatedAt), a.EABKeyID, a.Provisioner)
	if err != nil {
		return fmt.Errorf("bind external account key %s: %w", a.EABKeyID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("bind external account key %s: %w", a.EABKeyID, err)
	} else if n == 1 {
		return nil
	}
	var one int64
	err = w.queryRow(ctx, `SELECT 1 FROM acme_eab_keys WHERE id = $1 AND provisioner = $2`,
		[]any{a.EABKeyID, a.Provisioner}, &one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("external account key %s: %w", a.EABKeyID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("bind external account key %s: %w", a.EABKeyID, err)
	default:
		return fmt.Errorf("external account key %s is bound already: %w", a.EABKeyID, store.ErrStateChanged)
	}
}

// GetACMEAccount returns the account or store.ErrNotFound.
func (s *Store) GetACMEAccount(ctx context.Context, id string) (store.ACMEAccount, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+acmeAccountColumns+` FROM acme_accounts WHERE id = $1`, id)
	return getOne(row, scanACMEAccount, "acme account "+id)
}

// GetACMEAccountByThumbprint returns the provisioner's account with this key
// thumbprint or store.ErrNotFound.
func (s *Store) GetACMEAccountByThumbprint(ctx context.Context, provisioner, thumbprint string) (store.ACMEAccount, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+acmeAccountColumns+` FROM acme_accounts
		WHERE provisioner = $1 AND thumbprint = $2`, provisioner, thumbprint)
	return getOne(row, scanACMEAccount, "acme account of "+provisioner+" with key "+thumbprint)
}

// UpdateACMEAccount replaces the contact, status, key and thumbprint of a
// valid account and appends ev. store.ErrNotFound if absent,
// store.ErrStateChanged if it is no longer valid (deactivated and revoked
// accounts are final), store.ErrConflict if another account of the
// provisioner has the thumbprint. Provisioner, EABKeyID and CreatedAt are
// kept.
func (s *Store) UpdateACMEAccount(ctx context.Context, a store.ACMEAccount, ev audit.Event) error {
	if err := checkAccountStatus(a.Status); err != nil {
		return fmt.Errorf("sqlstore: update acme account %s: %w", a.ID, err)
	}
	if a.Thumbprint == "" {
		return fmt.Errorf("sqlstore: update acme account %s: empty thumbprint", a.ID)
	}
	contact, err := json.Marshal(a.Contact)
	if err != nil {
		return fmt.Errorf("sqlstore: update acme account %s: encode contact: %w", a.ID, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: update acme account %s: %w", a.ID, err)
	}
	// Under the write lock, like every writer of accounts: no other
	// account takes the thumbprint between the check and the update.
	return s.lockedTx(ctx, "update acme account "+a.ID, func(w writer, emit emitFunc) error {
		res, err := w.exec(ctx, `UPDATE acme_accounts SET contact = $2, status = $3, key_jwk = $4, thumbprint = $5
			WHERE id = $1 AND status = 'valid' AND NOT EXISTS (
				SELECT 1 FROM acme_accounts AS other
				WHERE other.provisioner = acme_accounts.provisioner AND other.thumbprint = $5 AND other.id <> $1)`,
			a.ID, string(contact), a.Status, nonNil(a.KeyJWK), a.Thumbprint)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var status string
			err := w.queryRow(ctx, `SELECT status FROM acme_accounts WHERE id = $1`, []any{a.ID}, &status)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return store.ErrNotFound
			case err != nil:
				return err
			case status != store.ACMEValid:
				return fmt.Errorf("account is %s: %w", status, store.ErrStateChanged)
			default:
				return fmt.Errorf("thumbprint %s: %w", a.Thumbprint, store.ErrConflict)
			}
		}
		emit(events...)
		return nil
	})
}

func checkAccountStatus(status string) error {
	switch status {
	case store.ACMEValid, store.ACMEDeactivated, store.ACMERevoked:
		return nil
	}
	return fmt.Errorf("account status %q cannot be recorded", status)
}

func scanACMEAccount(row scanner) (store.ACMEAccount, error) {
	var (
		a       store.ACMEAccount
		contact string
		created int64
	)
	if err := row.Scan(&a.ID, &a.Provisioner, &a.Thumbprint, &a.KeyJWK, &a.Status, &contact, &a.EABKeyID, &created); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(contact), &a.Contact); err != nil {
		return a, fmt.Errorf("acme account %s: decode contact: %w", a.ID, err)
	}
	a.CreatedAt = fromMicros(created)
	return a, nil
}

const acmeOrderColumns = `id, account_id, provisioner, status, expires, identifiers, not_before, not_after,
	authz_ids, error, cert_serial, replaces, created_at, updated_at`

const acmeAuthzColumns = `id, account_id, order_id, identifier_type, identifier_value, wildcard, status, expires, challenges`

// acmeChallenge is a store.ACMEChallenge as kept in its authorization's
// challenges column.
type acmeChallenge struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Token     string `json:"token"`
	Status    string `json:"status"`
	Validated int64  `json:"validated,omitempty"` // unix microseconds; 0 until valid
	Error     []byte `json:"error,omitempty"`
}

// CreateACMEOrder adds an order and its authorizations in one transaction.
// Empty statuses record pending objects; an authorization's empty OrderID
// and AccountID are the order's; a zero CreatedAt records now and a zero
// UpdatedAt CreatedAt. o.Authorizations, when empty, is set to the ids of
// authzs; otherwise it must list exactly them, in order.
// store.ErrConflict if an id is taken, or if another order that is not
// invalid replaces o.Replaces.
func (s *Store) CreateACMEOrder(ctx context.Context, o store.ACMEOrder, authzs []store.ACMEAuthorization) error {
	what := "create acme order " + o.ID
	if o.ID == "" || o.AccountID == "" {
		return errors.New("sqlstore: create acme order: empty id or account id")
	}
	if o.Status == "" {
		o.Status = store.ACMEPending
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = s.now()
	}
	if o.UpdatedAt.IsZero() {
		o.UpdatedAt = o.CreatedAt
	}
	ids := make([]string, len(authzs))
	for i, az := range authzs {
		ids[i] = az.ID
	}
	if len(o.Authorizations) == 0 {
		o.Authorizations = ids
	} else if !slices.Equal(o.Authorizations, ids) {
		return fmt.Errorf("sqlstore: %s: Authorizations %v are not the ids of the authorizations given %v", what, o.Authorizations, ids)
	}
	identifiers, err := json.Marshal(o.Identifiers)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: encode identifiers: %w", what, err)
	}
	authzIDs, err := json.Marshal(o.Authorizations)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: encode authorization ids: %w", what, err)
	}
	rows := make([][]any, len(authzs))
	for i, az := range authzs {
		row, err := authzRow(az, o)
		if err != nil {
			return fmt.Errorf("sqlstore: %s: authorization %d: %w", what, i, err)
		}
		rows[i] = row
	}
	return s.writeTx(ctx, what, func(w writer) error {
		res, err := w.exec(ctx, `INSERT INTO acme_orders (`+acmeOrderColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING`,
			o.ID, o.AccountID, o.Provisioner, o.Status, micros(o.Expires), string(identifiers),
			nullMicros(o.NotBefore), nullMicros(o.NotAfter), string(authzIDs), nullBytes(o.Error),
			string(o.CertSerial), o.Replaces, micros(o.CreatedAt), micros(o.UpdatedAt))
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrConflict); err != nil {
			if o.Replaces != "" {
				return fmt.Errorf("order id taken, or certificate %s replaced by another order: %w", o.Replaces, err)
			}
			return fmt.Errorf("order id taken: %w", err)
		}
		for i, row := range rows {
			res, err := w.exec(ctx, `INSERT INTO acme_authzs (`+acmeAuthzColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`, row...)
			if err != nil {
				return fmt.Errorf("authorization %s: %w", authzs[i].ID, err)
			}
			if err := expectOneRow(res, store.ErrConflict); err != nil {
				return fmt.Errorf("authorization id %s taken: %w", authzs[i].ID, err)
			}
		}
		return nil
	})
}

// authzRow encodes az, an authorization of o, as the values of
// acmeAuthzColumns.
func authzRow(az store.ACMEAuthorization, o store.ACMEOrder) ([]any, error) {
	if az.ID == "" {
		return nil, errors.New("empty id")
	}
	if az.OrderID == "" {
		az.OrderID = o.ID
	} else if az.OrderID != o.ID {
		return nil, fmt.Errorf("%s is of order %s", az.ID, az.OrderID)
	}
	if az.AccountID == "" {
		az.AccountID = o.AccountID
	} else if az.AccountID != o.AccountID {
		return nil, fmt.Errorf("%s is of account %s", az.ID, az.AccountID)
	}
	if az.Status == "" {
		az.Status = store.ACMEPending
	}
	chs := make([]acmeChallenge, len(az.Challenges))
	for i, ch := range az.Challenges {
		if ch.ID == "" {
			return nil, fmt.Errorf("%s: challenge %d has no id", az.ID, i)
		}
		if ch.Status == "" {
			ch.Status = store.ACMEPending
		}
		chs[i] = acmeChallenge{ID: ch.ID, Type: ch.Type, Token: ch.Token, Status: ch.Status, Error: ch.Error}
		if !ch.Validated.IsZero() {
			chs[i].Validated = micros(ch.Validated)
		}
	}
	challenges, err := json.Marshal(chs)
	if err != nil {
		return nil, fmt.Errorf("%s: encode challenges: %w", az.ID, err)
	}
	wildcard := 0
	if az.Wildcard {
		wildcard = 1
	}
	return []any{az.ID, az.AccountID, az.OrderID, az.Identifier.Type, az.Identifier.Value, wildcard,
		az.Status, micros(az.Expires), string(challenges)}, nil
}

// GetACMEOrder returns the order or store.ErrNotFound.
func (s *Store) GetACMEOrder(ctx context.Context, id string) (store.ACMEOrder, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+acmeOrderColumns+` FROM acme_orders WHERE id = $1`, id)
	return getOne(row, scanACMEOrder, "acme order "+id)
}

// GetACMEOrderByCertificate returns the order whose certificate has this
// serial, or store.ErrNotFound.
func (s *Store) GetACMEOrderByCertificate(ctx context.Context, sn store.Serial) (store.ACMEOrder, error) {
	serial := string(sn)
	// The second term lets the database use the partial index.
	row := s.read.QueryRowContext(ctx, `SELECT `+acmeOrderColumns+` FROM acme_orders
		WHERE cert_serial = $1 AND cert_serial <> ''`, serial)
	return getOne(row, scanACMEOrder, "acme order of certificate "+serial)
}

// Page sizes of ListACMEOrders.
const (
	defaultACMEOrderPage = 100
	maxACMEOrderPage     = 1000
)

// ListACMEOrders returns the ids of an account's orders, oldest first (by
// CreatedAt, then id), after the order after ("" for the first page; an id
// that is not one of the account's orders ends the listing). A limit of 0 or
// less means 100; it is capped at 1000.
func (s *Store) ListACMEOrders(ctx context.Context, accountID, after string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = defaultACMEOrderPage
	}
	limit = min(limit, maxACMEOrderPage)
	scanID := func(row scanner) (id string, err error) { return id, row.Scan(&id) }
	if after == "" {
		return queryAll(ctx, s.read, "list acme orders", scanID, `SELECT id FROM acme_orders WHERE account_id = $1
			ORDER BY created_at, id LIMIT $2`, accountID, limit)
	}
	return queryAll(ctx, s.read, "list acme orders", scanID, `SELECT id FROM acme_orders WHERE account_id = $1
		AND (created_at, id) > (SELECT created_at, id FROM acme_orders WHERE id = $2 AND account_id = $1)
		ORDER BY created_at, id LIMIT $3`, accountID, after, limit)
}

func scanACMEOrder(row scanner) (store.ACMEOrder, error) {
	var (
		o                         store.ACMEOrder
		identifiers, authzIDs     string
		certSerial                string
		expires, created, updated int64
		notBefore, notAfter       sql.NullInt64
	)
	err := row.Scan(&o.ID, &o.AccountID, &o.Provisioner, &o.Status, &expires, &identifiers, &notBefore, &notAfter,
		&authzIDs, &o.Error, &certSerial, &o.Replaces, &created, &updated)
	if err != nil {
		return o, err
	}
	o.CertSerial = store.Serial(certSerial)
	if err := json.Unmarshal([]byte(identifiers), &o.Identifiers); err != nil {
		return o, fmt.Errorf("acme order %s: decode identifiers: %w", o.ID, err)
	}
	if err := json.Unmarshal([]byte(authzIDs), &o.Authorizations); err != nil {
		return o, fmt.Errorf("acme order %s: decode authorization ids: %w", o.ID, err)
	}
	if len(o.Error) == 0 {
		o.Error = nil
	}
	o.Expires = fromMicros(expires)
	o.NotBefore = fromNullMicros(notBefore)
	o.NotAfter = fromNullMicros(notAfter)
	o.CreatedAt = fromMicros(created)
	o.UpdatedAt = fromMicros(updated)
	return o, nil
}

// GetACMEAuthorization returns the authorization with its challenges or
// store.ErrNotFound.
func (s *Store) GetACMEAuthorization(ctx context.Context, id string) (store.ACMEAuthorization, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+acmeAuthzColumns+` FROM acme_authzs WHERE id = $1`, id)
	return getOne(row, scanACMEAuthz, "acme authorization "+id)
}

// StaleACMEValidations returns up to limit pending authorizations whose
// challenge began processing before startedBefore, longest first.
func (s *Store) StaleACMEValidations(ctx context.Context, startedBefore time.Time, limit int) ([]store.ACMEAuthorization, error) {
	return queryAll(ctx, s.read, "stale acme validations", scanACMEAuthz, `SELECT `+acmeAuthzColumns+` FROM acme_authzs
		WHERE processing_since IS NOT NULL AND processing_since < $1 AND status = 'pending' ORDER BY processing_since, id LIMIT $2`,
		micros(startedBefore), limit)
}

func scanACMEAuthz(row scanner) (store.ACMEAuthorization, error) {
	var (
		az                store.ACMEAuthorization
		wildcard, expires int64
		challenges        string
	)
	err := row.Scan(&az.ID, &az.AccountID, &az.OrderID, &az.Identifier.Type, &az.Identifier.Value, &wildcard,
		&az.Status, &expires, &challenges)
	if err != nil {
		return az, err
	}
	chs, err := decodeChallenges(challenges)
	if err != nil {
		return az, fmt.Errorf("acme authorization %s: %w", az.ID, err)
	}
	az.Wildcard = wildcard != 0
	az.Expires = fromMicros(expires)
	if len(chs) > 0 {
		az.Challenges = make([]store.ACMEChallenge, len(chs))
	}
	for i, ch := range chs {
		az.Challenges[i] = store.ACMEChallenge{ID: ch.ID, Type: ch.Type, Token: ch.Token, Status: ch.Status, Error: ch.Error}
		if ch.Validated != 0 {
			az.Challenges[i].Validated = fromMicros(ch.Validated)
		}
	}
	return az, nil
}

func decodeChallenges(text string) ([]acmeChallenge, error) {
	var chs []acmeChallenge
	if err := json.Unmarshal([]byte(text), &chs); err != nil {
		return nil, fmt.Errorf("decode challenges: %w", err)
	}
	return chs, nil
}

// lockedAuthz is an authorization read, locked, inside a write transaction.
type lockedAuthz struct {
	status     string
	challenges string // as stored: the value a conditional update expects
	decoded    []acmeChallenge
}

// lockAuthz reads and locks the authorization id; sql.ErrNoRows if absent.
func (s *Store) lockAuthz(ctx context.Context, w writer, id string) (lockedAuthz, error) {
	var az lockedAuthz
	err := w.queryRow(ctx, `SELECT status, challenges FROM acme_authzs WHERE id = $1`+s.dialect.lockRow,
		[]any{id}, &az.status, &az.challenges)
	if err != nil {
		return az, err
	}
	az.decoded, err = decodeChallenges(az.challenges)
	return az, err
}

// challenge returns the index of the challenge id, or store.ErrNotFound.
func (az lockedAuthz) challenge(id string) (int, error) {
	i := slices.IndexFunc(az.decoded, func(ch acmeChallenge) bool { return ch.ID == id })
	if i < 0 {
		return 0, fmt.Errorf("challenge %s: %w", id, store.ErrNotFound)
	}
	return i, nil
}

// updateAuthz moves the authorization id, read as az, to status with
// challenges chs, provided neither changed since: store.ErrStateChanged
// otherwise. processingSince is when a challenge began processing (a
// unix-microsecond int64), or nil when none is.
func updateAuthz(ctx context.Context, w writer, id string, az lockedAuthz, status string, chs []acmeChallenge, processingSince any) error {
	text, err := json.Marshal(chs)
	if err != nil {
		return fmt.Errorf("encode challenges: %w", err)
	}
	res, err := w.exec(ctx, `UPDATE acme_authzs SET status = $2, challenges = $3, processing_since = $6
		WHERE id = $1 AND status = $4 AND challenges = $5`, id, status, string(text), az.status, az.challenges, processingSince)
	if err != nil {
		return err
	}
	return expectOneRow(res, store.ErrStateChanged)
}

// authzOrder returns the order of the authorization id (which never
// changes), or store.ErrNotFound.
func authzOrder(ctx context.Context, w writer, id string) (string, error) {
	var orderID string
	err := w.queryRow(ctx, `SELECT order_id FROM acme_authzs WHERE id = $1`, []any{id}, &orderID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("authorization %s: %w", id, store.ErrNotFound)
	}
	return orderID, err
}

// lockOrder locks the order id until the transaction ends.
func (s *Store) lockOrder(ctx context.Context, w writer, id string) error {
	var status string
	err := w.queryRow(ctx, `SELECT status FROM acme_orders WHERE id = $1`+s.dialect.lockRow, []any{id}, &status)
	if err != nil {
		return fmt.Errorf("lock order %s: %w", id, err)
	}
	return nil
}

// StartACMEChallenge moves a pending challenge of a pending authorization to
// processing. store.ErrNotFound when either does not exist,
// store.ErrStateChanged when either is no longer pending.
func (s *Store) StartACMEChallenge(ctx context.Context, authzID, challengeID string) error {
	return s.writeTx(ctx, "start acme challenge "+challengeID, func(w writer) error {
		az, err := s.lockAuthz(ctx, w, authzID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("authorization %s: %w", authzID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		i, err := az.challenge(challengeID)
		if err != nil {
			return err
		}
		if az.status != store.ACMEPending || az.decoded[i].Status != store.ACMEPending {
			return fmt.Errorf("authorization %s, challenge %s: %w", az.status, az.decoded[i].Status, store.ErrStateChanged)
		}
		chs := slices.Clone(az.decoded)
		chs[i].Status = store.ACMEProcessing
		return updateAuthz(ctx, w, authzID, az, az.status, chs, micros(s.now()))
	})
}

// FinishACMEChallenges records validation results in one transaction, each
// item as the contract says. An item's zero At means now. Besides nil and
// store.ErrStateChanged (also when the challenge's authorization is no
// longer pending), results[i] is store.ErrNotFound when the authorization
// or challenge does not exist. An invalid authorization's problem is also
// the Error of the order it makes invalid.
//
// The items are taken in the order of their orders' ids, so that two
// batches lock the orders they share in the same order.
func (s *Store) FinishACMEChallenges(ctx context.Context, items []store.ChallengeResult) ([]error, error) {
	results := make([]error, len(items))
	if len(items) == 0 {
		return results, nil
	}
	now := s.now()
	err := s.writeTx(ctx, "finish acme challenges", func(w writer) error {
		orderIDs := make([]string, len(items))
		var todo []int
		for i, it := range items {
			orderID, err := authzOrder(ctx, w, it.AuthorizationID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				results[i] = fmt.Errorf("sqlstore: item %d: %w", i, err)
				continue
			case err != nil:
				return fmt.Errorf("item %d: %w", i, err)
			}
			orderIDs[i] = orderID
			todo = append(todo, i)
		}
		slices.SortStableFunc(todo, func(a, b int) int { return cmp.Compare(orderIDs[a], orderIDs[b]) })
		for _, i := range todo {
			err := s.finishChallenge(ctx, w, orderIDs[i], items[i], now)
			if errors.Is(err, store.ErrStateChanged) || errors.Is(err, store.ErrNotFound) {
				results[i] = fmt.Errorf("sqlstore: item %d: %w", i, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// finishChallenge records one validation result, it, for an authorization
// of order orderID. It writes nothing when it returns store.ErrStateChanged
// or store.ErrNotFound.
func (s *Store) finishChallenge(ctx context.Context, w writer, orderID string, it store.ChallengeResult, now time.Time) error {
	if err := s.lockOrder(ctx, w, orderID); err != nil {
		return err
	}
	az, err := s.lockAuthz(ctx, w, it.AuthorizationID)
	if err != nil {
		return fmt.Errorf("authorization %s: %w", it.AuthorizationID, err)
	}
	i, err := az.challenge(it.ChallengeID)
	if err != nil {
		return err
	}
	if az.status != store.ACMEPending || az.decoded[i].Status != store.ACMEProcessing {
		return fmt.Errorf("authorization %s %s, challenge %s %s: %w",
			it.AuthorizationID, az.status, it.ChallengeID, az.decoded[i].Status, store.ErrStateChanged)
	}
	at := it.At
	if at.IsZero() {
		at = now
	}
	chs := slices.Clone(az.decoded)
	status := store.ACMEValid
	if it.Valid {
		chs[i].Status, chs[i].Validated, chs[i].Error = store.ACMEValid, micros(at), nil
	} else {
		status = store.ACMEInvalid
		chs[i].Status, chs[i].Error = store.ACMEInvalid, it.Error
	}
	if err := updateAuthz(ctx, w, it.AuthorizationID, az, status, chs, nil); err != nil {
		return err
	}
	if !it.Valid {
		if _, err := w.exec(ctx, `UPDATE acme_orders SET status = 'invalid', error = $2, updated_at = $3
			WHERE id = $1 AND status = 'pending'`, orderID, nullBytes(it.Error), micros(at)); err != nil {
			return fmt.Errorf("invalidate order %s: %w", orderID, err)
		}
		return nil
	}
	// The order is locked: an authorization of it that another transaction
	// made valid has committed, and is seen here.
	var unfinished int64
	if err := w.queryRow(ctx, `SELECT count(*) FROM acme_authzs WHERE order_id = $1 AND status <> 'valid'`,
		[]any{orderID}, &unfinished); err != nil {
		return fmt.Errorf("count authorizations of order %s: %w", orderID, err)
	}
	if unfinished == 0 {
		if _, err := w.exec(ctx, `UPDATE acme_orders SET status = 'ready', updated_at = $2
			WHERE id = $1 AND status = 'pending'`, orderID, micros(at)); err != nil {
			return fmt.Errorf("ready order %s: %w", orderID, err)
		}
	}
	return nil
}

// DeactivateACMEAuthorization moves a pending or valid authorization to
// deactivated; store.ErrStateChanged otherwise, store.ErrNotFound if absent.
// Its order, if pending or ready, becomes invalid: an order whose
// authorizations are not all valid cannot be finalized.
func (s *Store) DeactivateACMEAuthorization(ctx context.Context, authzID string) error {
	now := s.now()
	return s.writeTx(ctx, "deactivate acme authorization "+authzID, func(w writer) error {
		orderID, err := authzOrder(ctx, w, authzID)
		if err != nil {
			return err
		}
		if err := s.lockOrder(ctx, w, orderID); err != nil {
			return err
		}
		res, err := w.exec(ctx, `UPDATE acme_authzs SET status = 'deactivated'
			WHERE id = $1 AND status IN ('pending', 'valid')`, authzID)
		if err != nil {
			return err
		}
		if err := expectOneRow(res, store.ErrStateChanged); err != nil {
			return err
		}
		if _, err := w.exec(ctx, `UPDATE acme_orders SET status = 'invalid', updated_at = $2
			WHERE id = $1 AND status IN ('pending', 'ready')`, orderID, micros(now)); err != nil {
			return fmt.Errorf("invalidate order %s: %w", orderID, err)
		}
		return nil
	})
}

// FailACMEOrder moves a ready or processing order to invalid with problem.
// store.ErrStateChanged in any other state, store.ErrNotFound if absent.
func (s *Store) FailACMEOrder(ctx context.Context, orderID string, problem []byte) error {
	return s.transitionOrder(ctx, "fail acme order "+orderID, orderID,
		`UPDATE acme_orders SET status = 'invalid', error = $2, updated_at = $3 WHERE id = $1 AND status IN ('ready', 'processing')`,
		orderID, nullBytes(problem), micros(s.now()))
}

// transitionOrder runs query, a conditional update of the order orderID.
// When it changes no row it returns store.ErrNotFound if the order does not
// exist, else store.ErrStateChanged.
func (s *Store) transitionOrder(ctx context.Context, what, orderID, query string, args ...any) error {
	return s.writeTx(ctx, what, func(w writer) error {
		res, err := w.exec(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var status string
		err = w.queryRow(ctx, `SELECT status FROM acme_orders WHERE id = $1`, []any{orderID}, &status)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		}
		return fmt.Errorf("order is %s: %w", status, store.ErrStateChanged)
	})
}

const acmeEABColumns = `id, provisioner, hmac_key, bound_account, created_at, bound_at`

// CreateACMEEABKey adds a key and appends ev; store.ErrConflict if the id
// exists. A zero CreatedAt records now.
func (s *Store) CreateACMEEABKey(ctx context.Context, k store.ACMEEABKey, ev audit.Event) error {
	if k.ID == "" || k.Provisioner == "" {
		return errors.New("sqlstore: create acme external account key: empty id or provisioner")
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create acme external account key %s: %w", k.ID, err)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	return s.changeOneRow(ctx, "create acme external account key "+k.ID, events, store.ErrConflict,
		`INSERT INTO acme_eab_keys (`+acmeEABColumns+`) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		k.ID, k.Provisioner, nonNil(k.Key), k.BoundAccount, micros(k.CreatedAt), nullMicros(k.BoundAt))
}

// GetACMEEABKey returns the key or store.ErrNotFound.
func (s *Store) GetACMEEABKey(ctx context.Context, id string) (store.ACMEEABKey, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+acmeEABColumns+` FROM acme_eab_keys WHERE id = $1`, id)
	return getOne(row, scanACMEEABKey, "acme external account key "+id)
}

// ListACMEEABKeys returns a provisioner's keys ordered by id (as text, in
// byte order).
func (s *Store) ListACMEEABKeys(ctx context.Context, provisioner string) ([]store.ACMEEABKey, error) {
	return queryAll(ctx, s.read, "list acme external account keys", scanACMEEABKey,
		`SELECT `+acmeEABColumns+` FROM acme_eab_keys WHERE provisioner = $1 ORDER BY id`, provisioner)
}

func scanACMEEABKey(row scanner) (store.ACMEEABKey, error) {
	var (
		k       store.ACMEEABKey
		created int64
		boundAt sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.Provisioner, &k.Key, &k.BoundAccount, &created, &boundAt); err != nil {
		return k, err
	}
	k.CreatedAt = fromMicros(created)
	k.BoundAt = fromNullMicros(boundAt)
	return k, nil
}

// getOne scans the one row of a lookup of what, returning store.ErrNotFound
// when there is none.
func getOne[T any](row *sql.Row, scan func(scanner) (T, error), what string) (T, error) {
	v, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		var zero T
		return zero, fmt.Errorf("sqlstore: %s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("sqlstore: get %s: %w", what, err)
	}
	return v, nil
}

// queryAll runs a query on the read pool and scans every row with scan;
// errors read "sqlstore: <what>: <cause>".
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return out, nil
}

// nonNil makes a nil slice empty: a nil byte string is stored in a NOT NULL
// column as an empty one, a nil list encodes as [] rather than null.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

// nullBytes stores an empty byte string as NULL.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
