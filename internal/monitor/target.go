package monitor

import (
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/meshpki/meshpki/internal/ca"
)

// Kind is what a target is.
type Kind string

const (
	KindEndpoint Kind = "endpoint" // a TLS server, host:port
	KindFile     Kind = "file"     // a certificate file
)

// StartTLS protocols: the plain-text exchange that precedes the TLS
// handshake on some ports.
const (
	StartTLSNone     = "none"
	StartTLSSMTP     = "smtp"
	StartTLSIMAP     = "imap"
	StartTLSPostgres = "postgres"
)

// startTLSByPort is the protocol spoken on a well-known port before TLS.
var startTLSByPort = map[string]string{
	"25": StartTLSSMTP, "587": StartTLSSMTP,
	"143":  StartTLSIMAP,
	"5432": StartTLSPostgres,
}

// Target is one thing to scan.
type Target struct {
	Kind Kind
	// Name is the target as reported: what the user wrote, or for a
	// target expanded from a CIDR or a directory, the address or path.
	Name string
	// Addr is an endpoint's host:port.
	Addr string
	// ServerName is sent as SNI (unless an IP address) and checked against
	// the leaf's names; "" for an IP address scanned without --sni.
	ServerName string
	// VerifyName is what the leaf must be valid for: ServerName, or the
	// endpoint's IP address.
	VerifyName string
	// StartTLS is the protocol spoken before the handshake ("" for none).
	StartTLS string
	// Path is a file's path.
	Path string
	// Scope is the argument the target came from, as given.
	Scope string
	// Expanded marks a target that stands for part of what the user named
	// (an address of a CIDR, a file of a directory): silence from it is
	// not an error, it is simply not there.
	Expanded bool
}

// TargetOptions shape how ParseTargets reads arguments.
type TargetOptions struct {
	// SNI overrides the server name of every endpoint.
	SNI string
	// StartTLS, if set, is used for every endpoint instead of the
	// protocol its port implies ("none" turns it off).
	StartTLS string
	// AllowLarge lifts MaxRangeAddresses.
	AllowLarge bool
	// NetworkOnly refuses files and directories: the server scans only
	// endpoints, and files are scanned on their own host.
	NetworkOnly bool
}

// MaxRangeAddresses is the most addresses a CIDR may expand to without
// AllowLarge (a /20 of IPv4); AbsoluteMaxAddresses the most with it.
const (
	MaxRangeAddresses    = 4096
	AbsoluteMaxAddresses = 1 << 20
)

// ParseTargets turns command-line arguments into targets, in order. An
// argument is a file or directory that exists, an https:// URL, a CIDR with
// ports ("10.0.0.0/28:443,8443"), or host:port. Directories are walked
// recursively.
func ParseTargets(args []string, opts TargetOptions) ([]Target, error) {
	if opts.StartTLS != "" && !slices.Contains([]string{StartTLSNone, StartTLSSMTP, StartTLSIMAP, StartTLSPostgres}, opts.StartTLS) {
		return nil, fmt.Errorf("--starttls %q: use smtp, imap, postgres or none", clip(opts.StartTLS))
	}
	var out []Target
	for _, arg := range args {
		ts, err := parseTarget(arg, opts)
		if err != nil {
			return nil, err
		}
		for i := range ts {
			ts[i].Scope = arg
		}
		out = append(out, ts...)
	}
	return out, nil
}

func parseTarget(arg string, opts TargetOptions) ([]Target, error) {
	if arg == "" {
		return nil, errors.New("an empty target")
	}
	if opts.NetworkOnly {
		if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
			return nil, fmt.Errorf("%s: the server scans endpoints only; scan files on their host with meshpki scan --report", clip(arg))
		}
	} else if info, err := os.Stat(arg); err == nil {
		if info.IsDir() {
			return walkDir(arg)
		}
		return []Target{{Kind: KindFile, Name: arg, Path: arg}}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", clip(arg), err)
	}
	switch {
	case strings.HasPrefix(arg, "https://"):
		return parseURL(arg, opts)
	case strings.Contains(arg, "://"):
		return nil, fmt.Errorf("%s: only https:// URLs are scanned (for other protocols give host:port)", clip(arg))
	case strings.Contains(arg, "/"):
		return parseRange(arg, opts)
	}
	host, port, err := net.SplitHostPort(arg)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%s is not a file, directory, https:// URL, CIDR:PORTS or HOST:PORT", clip(arg))
	}
	if !validPort(port) {
		return nil, fmt.Errorf("%s: %q is not a port", clip(arg), clip(port))
	}
	return []Target{endpoint(arg, host, port, opts)}, nil
}

func parseURL(arg string, opts TargetOptions) ([]Target, error) {
	u, err := url.Parse(arg)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("%s is not a valid URL", clip(arg))
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	if !validPort(port) {
		return nil, fmt.Errorf("%s: %q is not a port", clip(arg), clip(port))
	}
	return []Target{endpoint(arg, u.Hostname(), port, opts)}, nil
}

// parseRange expands "PREFIX/BITS:PORT,PORT…" to one endpoint per address
// and port, addresses first.
func parseRange(arg string, opts TargetOptions) ([]Target, error) {
	slash := strings.Index(arg, "/")
	colon := strings.Index(arg[slash:], ":")
	if colon < 0 {
		return nil, fmt.Errorf("%s: a CIDR needs its ports, e.g. 10.0.0.0/28:443,8443", clip(arg))
	}
	cidr, portList := arg[:slash+colon], arg[slash+colon+1:]
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not a CIDR: %v", clip(arg), clip(cidr), err)
	}
	prefix = prefix.Masked()
	var ports []string
	for _, p := range strings.Split(portList, ",") {
		p = strings.TrimSpace(p)
		if !validPort(p) {
			return nil, fmt.Errorf("%s: %q is not a port", clip(arg), clip(p))
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	count := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	limit := int64(MaxRangeAddresses)
	if opts.AllowLarge {
		limit = AbsoluteMaxAddresses
	}
	if count.Cmp(big.NewInt(limit)) > 0 {
		if opts.AllowLarge {
			return nil, fmt.Errorf("%s is %s addresses: at most %d can be scanned at once", clip(arg), count, AbsoluteMaxAddresses)
		}
		return nil, fmt.Errorf("%s is %s addresses, more than %d: pass --allow-large to scan it", clip(arg), count, MaxRangeAddresses)
	}
	n := int(count.Int64())
	out := make([]Target, 0, n*len(ports))
	addr := prefix.Addr()
	for range n {
		for _, port := range ports {
			t := endpoint(net.JoinHostPort(addr.String(), port), addr.String(), port, opts)
			t.Expanded = true
			out = append(out, t)
		}
		addr = addr.Next()
	}
	return out, nil
}

func endpoint(name, host, port string, opts TargetOptions) Target {
	t := Target{Kind: KindEndpoint, Name: name, Addr: net.JoinHostPort(host, port), ServerName: host, VerifyName: host}
	if opts.SNI != "" {
		t.ServerName, t.VerifyName = opts.SNI, opts.SNI
	} else if net.ParseIP(host) != nil {
		t.ServerName = "" // an IP address is not sent as SNI
	}
	switch {
	case opts.StartTLS == StartTLSNone:
	case opts.StartTLS != "":
		t.StartTLS = opts.StartTLS
	default:
		t.StartTLS = startTLSByPort[port]
	}
	return t
}

// walkDir lists the regular files below dir, in lexical order.
func walkDir(dir string) ([]Target, error) {
	var out []Target
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, Target{Kind: KindFile, Name: path, Path: path, Expanded: true})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", clip(dir), err)
	}
	return out, nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536 && strconv.Itoa(n) == s
}

// clip shortens what a user or a server sent before it is echoed, as the
// CA clips what clients send (on a rune boundary).
func clip(s string) string { return ca.Clip(s) }
