// Package workload serves the SPIFFE Workload API over a Unix socket and
// attests each caller from the socket's peer credentials.
//
// The service is the one the SPIFFE Workload API specification
// (SPIFFE_Workload_API.md, and the Workload Endpoint specification for the
// transport) defines, with the generated protos shipped in go-spiffe
// (github.com/spiffe/go-spiffe/v2/proto/spiffe/workload), so go-spiffe's
// workloadapi client and any other SPIFFE client work unchanged. It serves
// from a [Source], the agent's SVID cache.
//
// # Calls
//
// Every call must carry the gRPC metadata "workload.spiffe.io: true";
// without it the call fails with InvalidArgument "security header missing
// from request", in the spec's words.
//
//   - FetchX509SVID streams the X.509-SVIDs the caller is entitled to, each
//     with its chain (leaf first), PKCS#8 key, the X.509 bundle of its trust
//     domain and its hint, plus the other trust domains' bundles as
//     federated_bundles. It sends again whenever a Source change alters what
//     this caller sees, and ends with PermissionDenied if the caller's
//     entitlement drops to nothing.
//   - FetchJWTSVID mints one JWT-SVID per entitled SVID (or for the requested
//     SPIFFE ID only) through [Source.MintJWTSVID]; the audience is required.
//   - FetchX509Bundles and FetchJWTBundles stream every trust domain's X.509
//     authorities (concatenated DER) and JWT keys (JWKS), keyed by the trust
//     domain's SPIFFE ID ("spiffe://example.org"), and send again on change.
//   - ValidateJWTSVID verifies a JWT-SVID against the JWT bundles for the
//     given audience and returns its SPIFFE ID and claims.
//   - FetchWITSVID and FetchWITBundles are Unimplemented.
//
// Bundles are public: the bundle calls and ValidateJWTSVID need no
// entitlement, and do not attest the caller. A caller entitled to no SVID gets
// PermissionDenied from FetchX509SVID and FetchJWTSVID, with a message naming
// its uid and pid.
//
// # Attestation
//
// When a client connects, the server reads the kernel's record of who
// connected (SO_PEERCRED: pid, uid, gid) and takes a pidfd of that process
// (SO_PEERPIDFD, or pidfd_open). [PeerCredentials] carries them to the
// handlers as the connection's peer.AuthInfo. Each FetchX509SVID and
// FetchJWTSVID call then attests the process afresh from those credentials,
// never from anything the client sends, and derives its selectors:
//
//	unix:uid:N        the effective uid of the process when it connected
//	                  (SO_PEERCRED)
//	unix:user:NAME    that uid's user name; omitted when the uid has none
//	unix:gid:N        the effective gid when it connected (SO_PEERCRED), and
//	                  one more for each supplementary group the process has
//	                  at attestation (/proc/PID/status "Groups:")
//	unix:group:NAME   the name of each of those gids; omitted when unknown
//	unix:path:PATH    the absolute path of the executing binary, symlinks
//	                  resolved (readlink /proc/PID/exe); omitted when that
//	                  file was deleted or replaced since the process started
//	unix:sha256:HEX   the SHA-256 of the executing binary, lowercase hex,
//	                  read through /proc/PID/exe so it is the file being
//	                  executed, not whatever the path names now
//
// The path and sha256 selectors are omitted when the server may not inspect
// the process (a server not running as root, calling a process of another
// user). User and group names are cached for a minute; binary hashes are
// cached by device, inode, size, mtime and ctime, so an unchanged binary is
// hashed once. If the process has exited by the time it is attested (its pid
// may already name another process), the call fails with Unauthenticated and
// the message of an [ExitedError]; so does a caller whose pid the kernel
// reports as 0 (it runs in a pid namespace the server cannot see into). The
// pidfd is what makes the exit check exact: without one (kernels before
// 5.3), a pid reused between connect and attestation goes unnoticed.
//
// # Entitlement
//
// A caller is entitled to an [SVID] when every selector of the SVID is among
// the caller's selectors. An SVID with no selectors is served to nobody.
// Responses keep the Source's order of SVIDs, so the first entitled SVID is
// the caller's default.
//
// Typical use, in the agent:
//
//	srv, err := workload.New(workload.Config{Socket: "/run/meshpki/agent.sock", Source: cache, Logger: log})
//	if err != nil {
//		return err
//	}
//	return srv.Serve(ctx) // until ctx ends
package workload
