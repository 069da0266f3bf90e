package monitor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
	"unicode"

	"software.sslmate.com/src/go-pkcs12"
)

// MaxFileSize is the largest certificate file read.
const MaxFileSize = 16 << 20

// ErrNoCertificate is a file's error when it holds no certificate in any
// format read.
var ErrNoCertificate = errors.New("no certificate in it (not PEM, DER or PKCS#12)")

// dialChain connects to t, speaks its STARTTLS protocol if any, completes
// a TLS handshake and returns the chain the server presented, unverified.
// Everything, connect included, ends by ctx's deadline.
func dialChain(ctx context.Context, d *net.Dialer, t Target) ([]*x509.Certificate, error) {
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, dialError(ctx, "connect", err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline) // on a fresh TCP connection it cannot fail
	}
	// A context canceled (not timed out) ends the exchange too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if t.StartTLS != "" {
		if err := startTLS(conn, t.StartTLS); err != nil {
			return nil, dialError(ctx, t.StartTLS+" STARTTLS", err)
		}
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName: t.ServerName,
		// The chain is only read here; Check verifies it, and nothing is
		// sent over the connection.
		InsecureSkipVerify: true, //nolint:gosec
		MinVersion:         tls.VersionTLS10,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, dialError(ctx, "TLS handshake", err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("the server presented no certificate")
	}
	return certs, nil
}

// stepError is a failure at one step of reaching an endpoint: "connect",
// "smtp STARTTLS", "TLS handshake".
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// dialError says what went wrong in a step of reaching an endpoint, in
// words an operator acts on.
func dialError(ctx context.Context, step string, err error) error {
	var recordErr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case errors.As(err, &recordErr):
		err = fmt.Errorf("the server does not speak TLS (it answered %q)", printable(recordErr.RecordHeader[:]))
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		err = errors.New("no answer before the timeout")
	case errors.Is(ctx.Err(), context.Canceled):
		err = context.Canceled
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = errors.New("the server closed the connection")
	}
	return &stepError{step: step, err: err}
}

// printable renders bytes a server sent for a message: printable ASCII as
// is, anything else as '.'.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x80 && unicode.IsPrint(rune(c)) {
			out[i] = c
		} else {
			out[i] = '.'
		}
	}
	return string(out)
}

// startTLS speaks proto on conn up to the point where the TLS handshake
// begins.
func startTLS(conn net.Conn, proto string) error {
	r := bufio.NewReaderSize(conn, 1024)
	switch proto {
	case StartTLSSMTP:
		// RFC 3207: greeting, EHLO, STARTTLS, 220.
		if _, err := smtpReply(r, "220"); err != nil {
			return fmt.Errorf("greeting: %w", err)
		}
		if _, err := io.WriteString(conn, "EHLO meshpki-scan\r\n"); err != nil {
			return err
		}
		if _, err := smtpReply(r, "250"); err != nil {
			return fmt.Errorf("EHLO: %w", err)
		}
		if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
			return err
		}
		if _, err := smtpReply(r, "220"); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	case StartTLSIMAP:
		// RFC 3501 6.2.1: untagged OK greeting, a tagged STARTTLS, its OK.
		line, err := readLine(r)
		if err != nil {
			return fmt.Errorf("greeting: %w", err)
		}
		if !strings.HasPrefix(line, "* OK") {
			return fmt.Errorf("greeting: %q is not an IMAP greeting", clip(line))
		}
		if _, err := io.WriteString(conn, "a1 STARTTLS\r\n"); err != nil {
			return err
		}
		for {
			line, err := readLine(r)
			if err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
			if strings.HasPrefix(line, "a1 ") {
				if !strings.HasPrefix(line, "a1 OK") {
					return fmt.Errorf("STARTTLS refused: %q", clip(line))
				}
				break
			}
		}
	case StartTLSPostgres:
		// PostgreSQL protocol 53.2.9: SSLRequest, then 'S' (or 'N': no TLS).
		var req [8]byte
		binary.BigEndian.PutUint32(req[0:4], 8)
		binary.BigEndian.PutUint32(req[4:8], 80877103)
		if _, err := conn.Write(req[:]); err != nil {
			return err
		}
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		if b != 'S' {
			return fmt.Errorf("the server refused TLS (answered %q)", printable([]byte{b}))
		}
	default:
		return fmt.Errorf("unknown STARTTLS protocol %q", proto)
	}
	if r.Buffered() > 0 {
		return errors.New("the server sent data before the TLS handshake")
	}
	return nil
}

// smtpReply reads one SMTP reply, which may span lines ("250-…" then
// "250 …"), and checks its code.
func smtpReply(r *bufio.Reader, code string) (string, error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return "", err
		}
		if len(line) < 3 || line[:3] != code {
			return "", fmt.Errorf("want %s, got %q", code, clip(line))
		}
		if len(line) == 3 || line[3] == ' ' {
			return line, nil
		}
	}
}

// readLine reads a CRLF- or LF-terminated line of at most 1 KiB.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("line too long")
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// ReadFile reads the certificates of the file at path (see
// ParseCertificates).
func ReadFile(path string, pkcs12Password string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d MiB", MaxFileSize>>20)
	}
	return ParseCertificates(data, pkcs12Password)
}

// ParseCertificates reads every certificate in data, in order: PEM
// CERTIFICATE blocks (other blocks, private keys among them, are skipped),
// else one DER certificate, else a PKCS#12 file (its certificate, then its
// CA certificates) opened with password.
func ParseCertificates(data []byte, pkcs12Password string) ([]*x509.Certificate, error) {
	if certs, found, err := parsePEM(data); found {
		return certs, err
	}
	if cert, err := x509.ParseCertificate(data); err == nil {
		return []*x509.Certificate{cert}, nil
	}
	if looksPKCS12(data) {
		return parsePKCS12(data, pkcs12Password)
	}
	return nil, ErrNoCertificate
}

func parsePEM(data []byte) (certs []*x509.Certificate, found bool, err error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		found = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, true, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if found && len(certs) == 0 {
		return nil, true, ErrNoCertificate
	}
	return certs, found, nil
}

// parsePKCS12 reads a PKCS#12 file: a certificate with its key and CA
// certificates, or a trust store of certificates alone.
func parsePKCS12(data []byte, password string) ([]*x509.Certificate, error) {
	_, cert, cas, err := pkcs12.DecodeChain(data, password)
	if err == nil {
		return append([]*x509.Certificate{cert}, cas...), nil
	}
	if certs, tsErr := pkcs12.DecodeTrustStore(data, password); tsErr == nil {
		return certs, nil
	}
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, errors.New("PKCS#12: wrong password (see --pkcs12-password)")
	}
	return nil, fmt.Errorf("PKCS#12: %v", err)
}

// looksPKCS12 reports whether data begins like a PKCS#12 PFX: a SEQUENCE
// whose first element is INTEGER 3 (the version).
func looksPKCS12(data []byte) bool {
	// SEQUENCE, a length of 1 to 5 bytes, then 02 01 03.
	if len(data) < 2 || data[0] != 0x30 {
		return false
	}
	i := 2
	if data[1]&0x80 != 0 {
		i += int(data[1] & 0x7f)
	}
	return len(data) >= i+3 && data[i] == 0x02 && data[i+1] == 0x01 && data[i+2] == 0x03
}

// SplitChains divides certs, as a file lists them, into chains: a
// certificate continues the chain before it when it issued that chain's
// last certificate, and starts a new one otherwise.
func SplitChains(certs []*x509.Certificate) [][]*x509.Certificate {
	var chains [][]*x509.Certificate
	for i, c := range certs {
		if i > 0 && bytes.Equal(certs[i-1].RawIssuer, c.RawSubject) && !selfIssued(certs[i-1]) {
			last := len(chains) - 1
			chains[last] = append(chains[last], c)
			continue
		}
		chains = append(chains, []*x509.Certificate{c})
	}
	return chains
}

// selfIssued reports whether cert names itself as its issuer.
func selfIssued(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject)
}
