// Package declared owns the certificates a node declares in cert-manager
// Certificate manifests (docs/MANIFESTS.md): it reads a directory of them
// (package manifest) again whenever it changes, decides when each is due —
// missing, changed, or at renewBefore or two thirds of its lifetime, with
// jitter — has it issued by an Issuer (the node API's node provisioners, or
// any ACME server), switches its files in (package certfiles), runs its
// hooks (package hooks), and reports every certificate's state with
// Kubernetes-style conditions for 'meshpki agent status'.
//
// The Manager runs inside the agent (Run) and behind 'meshpki apply'
// (Apply); either way every issuance goes through the same steps.
package declared
