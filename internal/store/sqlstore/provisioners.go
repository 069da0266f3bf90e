package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/store"
)

const provisionerColumns = `name, type, policy, require_eab, nodes, created_at, updated_at`

// CreateProvisioner stores p; store.ErrConflict if the name exists. Zero
// CreatedAt and UpdatedAt are set to now.
func (s *Store) CreateProvisioner(ctx context.Context, p store.Provisioner, ev audit.Event) error {
	if p.Name == "" {
		return errors.New("sqlstore: create provisioner: empty name")
	}
	policy, err := json.Marshal(p.Policy)
	if err != nil {
		return fmt.Errorf("sqlstore: create provisioner %s: encode policy: %w", p.Name, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: create provisioner %s: %w", p.Name, err)
	}
	nodes, err := encodeNames(p.Nodes)
	if err != nil {
		return fmt.Errorf("sqlstore: create provisioner %s: %w", p.Name, err)
	}
	now := s.now()
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = p.CreatedAt
	}
	return s.changeOneRow(ctx, "create provisioner "+p.Name, events, store.ErrConflict,
		`INSERT INTO provisioners (`+provisionerColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING`,
		p.Name, p.Type, string(policy), boolInt(p.RequireEAB), nodes, micros(p.CreatedAt), micros(p.UpdatedAt))
}

// UpdateProvisioner replaces the type and policy of p.Name and sets its
// UpdatedAt (now when zero); store.ErrNotFound if absent. CreatedAt is kept.
func (s *Store) UpdateProvisioner(ctx context.Context, p store.Provisioner, ev audit.Event) error {
	policy, err := json.Marshal(p.Policy)
	if err != nil {
		return fmt.Errorf("sqlstore: update provisioner %s: encode policy: %w", p.Name, err)
	}
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: update provisioner %s: %w", p.Name, err)
	}
	nodes, err := encodeNames(p.Nodes)
	if err != nil {
		return fmt.Errorf("sqlstore: update provisioner %s: %w", p.Name, err)
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = s.now()
	}
	return s.changeOneRow(ctx, "update provisioner "+p.Name, events, store.ErrNotFound,
		`UPDATE provisioners SET type = $2, policy = $3, require_eab = $4, nodes = $5, updated_at = $6 WHERE name = $1`,
		p.Name, p.Type, string(policy), boolInt(p.RequireEAB), nodes, micros(p.UpdatedAt))
}

// DeleteProvisioner removes a provisioner; store.ErrNotFound if absent.
func (s *Store) DeleteProvisioner(ctx context.Context, name string, ev audit.Event) error {
	events, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("sqlstore: delete provisioner %s: %w", name, err)
	}
	return s.changeOneRow(ctx, "delete provisioner "+name, events, store.ErrNotFound,
		`DELETE FROM provisioners WHERE name = $1`, name)
}

// GetProvisioner returns the named provisioner or store.ErrNotFound.
func (s *Store) GetProvisioner(ctx context.Context, name string) (store.Provisioner, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+provisionerColumns+` FROM provisioners WHERE name = $1`, name)
	p, err := scanProvisioner(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Provisioner{}, fmt.Errorf("sqlstore: provisioner %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Provisioner{}, fmt.Errorf("sqlstore: get provisioner %s: %w", name, err)
	}
	return p, nil
}

// ListProvisioners returns every provisioner ordered by name.
func (s *Store) ListProvisioners(ctx context.Context) ([]store.Provisioner, error) {
	return queryAll(ctx, s.read, "list provisioners", scanProvisioner, `SELECT `+provisionerColumns+` FROM provisioners ORDER BY name`)
}

func scanProvisioner(row scanner) (store.Provisioner, error) {
	var (
		p                store.Provisioner
		policy           string
		created, updated int64
	)
	var (
		requireEAB int
		nodes      string
	)
	if err := row.Scan(&p.Name, &p.Type, &policy, &requireEAB, &nodes, &created, &updated); err != nil {
		return p, err
	}
	p.RequireEAB = requireEAB != 0
	if err := json.Unmarshal([]byte(nodes), &p.Nodes); err != nil {
		return p, fmt.Errorf("provisioner %s: decode nodes: %w", p.Name, err)
	}
	if err := json.Unmarshal([]byte(policy), &p.Policy); err != nil {
		return p, fmt.Errorf("provisioner %s: decode policy: %w", p.Name, err)
	}
	p.CreatedAt = fromMicros(created)
	p.UpdatedAt = fromMicros(updated)
	return p, nil
}

// encodeNames is a list of names (a provisioner's node patterns, an
// operator's provisioners) as the JSON array stored.
func encodeNames(nodes []string) (string, error) {
	if len(nodes) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(nodes)
	if err != nil {
		return "", fmt.Errorf("encode nodes: %w", err)
	}
	return string(b), nil
}

// changeOneRow runs one write statement that must change exactly one row and,
// in the same transaction, appends events. It returns none (and writes
// nothing) when no row changed.
func (s *Store) changeOneRow(ctx context.Context, what string, events []pendingEvent, none error, query string, args ...any) error {
	return s.lockedTx(ctx, what, func(w writer, emit emitFunc) error {
		res, err := w.exec(ctx, query, args...)
		if err != nil {
			return err
		}
		if err := expectOneRow(res, none); err != nil {
			return err
		}
		emit(events...)
		return nil
	})
}

// expectOneRow returns none when res changed no row.
func expectOneRow(res sql.Result, none error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return none
	}
	return nil
}

// boolInt stores a bool as 0 or 1, which both backends take for INTEGER.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
