package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/netguard"
)

// DefaultSendTimeout bounds one delivery attempt.
const DefaultSendTimeout = 15 * time.Second

// Sender delivers a message to one channel. Every connection goes through
// the guard: no loopback or link-local address unless allowed.
type Sender struct {
	Guard netguard.Guard
	// Roots are what mail servers' certificates chain to (nil: the
	// system's); a channel's RootPEM adds to them.
	Roots *x509.CertPool
	// ExternalURL is the server's URL, for links in notifications.
	ExternalURL string
	// Timeout bounds one attempt (default DefaultSendTimeout).
	Timeout time.Duration
}

func (s *Sender) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultSendTimeout
}

// Send delivers m to the channel named name, of kind, configured by c.
func (s *Sender) Send(ctx context.Context, name, kind string, c Config, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	switch kind {
	case KindWebhook:
		return s.post(ctx, c.URL, m.Key, m.alertmanager(name, s.ExternalURL))
	case KindSlack:
		return s.post(ctx, c.URL, m.Key, m.slack())
	case KindEmail:
		return s.mail(ctx, c, m)
	}
	return fmt.Errorf("channel kind %q is not known", ca.Clip(kind))
}

// post sends body as JSON, with key (if any) as its Idempotency-Key
// (draft-ietf-httpapi-idempotency-key-header); any 2xx is success.
// Redirects are not followed: a receiver that moved is a configuration to
// fix, not a hop to take.
func (s *Sender) post(ctx context.Context, target, key string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "meshpki-alerts")
	if key != "" {
		req.Header.Set("Idempotency-Key", strconv.Quote(key))
	}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:         s.Guard.Dialer().DialContext,
			TLSHandshakeTimeout: s.timeout(),
			DisableKeepAlives:   true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) {
			err = uerr.Unwrap() // drop the URL, which may be a secret
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s: %s", resp.Status, ca.Clip(strings.TrimSpace(string(snippet))))
	}
	return nil
}

// mail sends m over SMTP. STARTTLS is required, with the server's
// certificate verified: an alert mail says what is weak in the PKI and
// which names expire, and is not sent in the clear.
func (s *Sender) mail(ctx context.Context, c Config, m Message) error {
	host, _, err := net.SplitHostPort(c.SMTP)
	if err != nil {
		return err
	}
	conn, err := s.Guard.Dialer().DialContext(ctx, "tcp", c.SMTP)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline) // on a fresh TCP connection it cannot fail
	}
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer cl.Close()
	if ok, _ := cl.Extension("STARTTLS"); !ok {
		return errors.New("smtp: the server does not offer STARTTLS; alerts are not mailed in the clear")
	}
	roots := s.Roots
	if c.RootPEM != "" {
		extra, err := c.roots()
		if err != nil {
			return err
		}
		if roots == nil {
			if roots, err = x509.SystemCertPool(); err != nil {
				roots = x509.NewCertPool()
			}
		} else {
			roots = roots.Clone()
		}
		for _, r := range extra {
			roots.AddCert(r)
		}
	}
	if err := cl.StartTLS(&tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}); err != nil {
		return fmt.Errorf("smtp STARTTLS: %w", err)
	}
	if c.Username != "" {
		if err := cl.Auth(smtp.PlainAuth("", c.Username, c.Password, host)); err != nil {
			return fmt.Errorf("smtp AUTH: %w", err)
		}
	}
	from, _ := mail.ParseAddress(c.From)
	if err := cl.Mail(from.Address); err != nil {
		return fmt.Errorf("smtp MAIL: %w", err)
	}
	var to []string
	for _, addr := range c.To {
		a, _ := mail.ParseAddress(addr)
		if err := cl.Rcpt(a.Address); err != nil {
			return fmt.Errorf("smtp RCPT %s: %w", a.Address, err)
		}
		to = append(to, a.String())
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	subject := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, m.Title())
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", from.String(), strings.Join(to, ", "),
		mime.QEncoding.Encode("utf-8", subject), time.Now().UTC().Format(time.RFC1123Z))
	if m.Key != "" {
		fmt.Fprintf(w, "Message-ID: <%s@meshpki>\r\n", m.Key)
	}
	fmt.Fprint(w, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprint(w, strings.ReplaceAll(m.Text(), "\n", "\r\n"))
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	return cl.Quit()
}
