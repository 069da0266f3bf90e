package store

import (
	"context"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
)

// Role is what an operator may do (package operator says which endpoint
// each role reaches).
type Role string

// The roles, least privilege first.
const (
	RoleViewer   Role = "viewer"   // reads certificates, inventory and configuration
	RoleAuditor  Role = "auditor"  // and the audit log
	RoleOperator Role = "operator" // mints tokens and manages entries for the provisioners granted
	RoleAdmin    Role = "admin"    // changes provisioners, roles and the CA
)

// Roles lists the roles in the order the CLI shows them.
var Roles = []Role{RoleAdmin, RoleOperator, RoleAuditor, RoleViewer}

// Operator is a person or system that administers the CA, identified by an
// admin credential carrying spiffe://TD/meshpki/admin/NAME, or by a
// certificate from another CA the server trusts for operators (Identity).
type Operator struct {
	Name string
	Role Role
	// Identity, when set, is the identity of the operator's certificate
	// from another CA: a SPIFFE ID ("spiffe://corp.example/ops/alice") or
	// "subject:" and a subject DN as Go prints it ("subject:CN=alice,O=Corp").
	Identity string
	// Provisioners are those an operator-role operator acts for (tokens,
	// EAB keys, entries, revocation); other roles ignore them.
	Provisioners []string
	CreatedAt    time.Time
	// RetiredAt, when set, is when the operator was retired: its
	// credentials are refused from then on.
	RetiredAt time.Time
}

// OperatorReader reads operators.
type OperatorReader interface {
	// GetOperator returns the operator, retired or not; ErrNotFound if
	// absent.
	GetOperator(ctx context.Context, name string) (Operator, error)
	// ListOperators returns every operator ordered by name.
	ListOperators(ctx context.Context) ([]Operator, error)
	// GetOperatorByIdentity returns the operator enrolled with identity,
	// retired or not; ErrNotFound if none.
	GetOperatorByIdentity(ctx context.Context, identity string) (Operator, error)
}

// Operators stores operators; each change appends its audit record in the
// same transaction. Only package operator writes them.
type Operators interface {
	OperatorReader
	// CreateOperator returns ErrConflict if the name, or the identity, is
	// taken (retired operators' are not reused).
	CreateOperator(ctx context.Context, op Operator, ev audit.Event) error
	// RetireOperator sets RetiredAt; ErrNotFound if absent or already
	// retired.
	RetireOperator(ctx context.Context, name string, at time.Time, ev audit.Event) error
}
