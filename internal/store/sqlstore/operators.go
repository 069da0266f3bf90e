package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

const operatorColumns = `name, role, provisioners, created_at, retired_at, identity`

// CreateOperator stores op; store.ErrConflict if the name exists.
func (s *Store) CreateOperator(ctx context.Context, op store.Operator, ev audit.Event) error {
	if op.Name == "" {
		return errors.New("sqlstore: create operator: empty name")
	}
	provs, err := encodeNames(op.Provisioners)
	if err != nil {
		return fmt.Errorf("sqlstore: create operator %s: %w", op.Name, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create operator %s: %w", op.Name, err)
	}
	if op.CreatedAt.IsZero() {
		op.CreatedAt = s.now()
	}
	return s.changeOneRow(ctx, "create operator "+op.Name, events, store.ErrConflict,
		`INSERT INTO operators (`+operatorColumns+`) VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT DO NOTHING`,
		op.Name, string(op.Role), provs, micros(op.CreatedAt), op.Identity)
}

// RetireOperator marks an operator retired at at.
func (s *Store) RetireOperator(ctx context.Context, name string, at time.Time, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: retire operator %s: %w", name, err)
	}
	return s.changeOneRow(ctx, "retire operator "+name, events, store.ErrNotFound,
		`UPDATE operators SET retired_at = $2 WHERE name = $1 AND retired_at IS NULL`, name, micros(at))
}

// GetOperator returns the named operator or store.ErrNotFound.
func (s *Store) GetOperator(ctx context.Context, name string) (store.Operator, error) {
	op, err := scanOperator(s.read.QueryRowContext(ctx, `SELECT `+operatorColumns+` FROM operators WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return op, fmt.Errorf("sqlstore: operator %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return op, fmt.Errorf("sqlstore: get operator %s: %w", name, err)
	}
	return op, nil
}

// GetOperatorByIdentity returns the operator enrolled with identity, or
// store.ErrNotFound.
func (s *Store) GetOperatorByIdentity(ctx context.Context, identity string) (store.Operator, error) {
	if identity == "" {
		return store.Operator{}, fmt.Errorf("sqlstore: operator with no identity: %w", store.ErrNotFound)
	}
	op, err := scanOperator(s.read.QueryRowContext(ctx, `SELECT `+operatorColumns+` FROM operators WHERE identity = $1`, identity))
	if errors.Is(err, sql.ErrNoRows) {
		return op, fmt.Errorf("sqlstore: operator %s: %w", identity, store.ErrNotFound)
	}
	if err != nil {
		return op, fmt.Errorf("sqlstore: get operator by identity: %w", err)
	}
	return op, nil
}

// ListOperators returns every operator ordered by name.
func (s *Store) ListOperators(ctx context.Context) ([]store.Operator, error) {
	return queryAll(ctx, s.read, "list operators", scanOperator, `SELECT `+operatorColumns+` FROM operators ORDER BY name`)
}

func scanOperator(row scanner) (store.Operator, error) {
	var (
		op      store.Operator
		role    string
		provs   string
		created int64
		retired sql.NullInt64
	)
	if err := row.Scan(&op.Name, &role, &provs, &created, &retired, &op.Identity); err != nil {
		return op, err
	}
	op.Role = store.Role(role)
	if err := json.Unmarshal([]byte(provs), &op.Provisioners); err != nil {
		return op, fmt.Errorf("operator %s: decode provisioners: %w", op.Name, err)
	}
	op.CreatedAt = fromMicros(created)
	if retired.Valid {
		op.RetiredAt = fromMicros(retired.Int64)
	}
	return op, nil
}
