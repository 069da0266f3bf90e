// Package notify owns alerting: channels (a generic webhook speaking
// Alertmanager's webhook format, a Slack-compatible incoming webhook, e-mail
// over SMTP with STARTTLS), the rules that say which certificates and
// findings alert which channel, the evaluator that turns the inventory's
// findings into alerts that fire once per certificate, check and threshold
// and resolve with hysteresis, and the deliverer that sends the store's
// outbox with retries. docs/ALERTS.md describes it.
package notify

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"

	"github.com/meshpki/meshpki/internal/ca"
)

// Channel kinds.
const (
	KindWebhook = "webhook"
	KindSlack   = "slack"
	KindEmail   = "email"
)

// Kinds lists the channel kinds.
var Kinds = []string{KindWebhook, KindSlack, KindEmail}

// Config is a channel's configuration, secrets included. It is stored
// sealed; Public is what may be shown.
type Config struct {
	// URL is where a webhook or Slack channel posts. A Slack URL is a
	// secret (its path is the token).
	URL string `json:"url,omitempty"`
	// SMTP is the mail server's host:port; the connection must offer
	// STARTTLS.
	SMTP     string   `json:"smtp,omitempty"`
	From     string   `json:"from,omitempty"`
	To       []string `json:"to,omitempty"`
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
	// RootPEM, if set, is what the mail server's certificate must chain
	// to, besides the system's roots and the CA's own.
	RootPEM string `json:"root_pem,omitempty"`
}

// Public is the part of a configuration that may be shown.
type Public struct {
	// Endpoint is the webhook URL without its query, or the Slack URL's
	// host alone, or the mail server.
	Endpoint string   `json:"endpoint"`
	From     string   `json:"from,omitempty"`
	To       []string `json:"to,omitempty"`
	Username string   `json:"username,omitempty"`
}

// Check validates a configuration for kind.
func (c Config) Check(kind string) error {
	switch kind {
	case KindWebhook, KindSlack:
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("a %s channel needs an http:// or https:// URL", kind)
		}
		if c.SMTP != "" || c.From != "" || len(c.To) > 0 || c.Username != "" || c.Password != "" {
			return fmt.Errorf("a %s channel takes a URL alone", kind)
		}
	case KindEmail:
		host, port, err := net.SplitHostPort(c.SMTP)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return fmt.Errorf("an email channel needs the mail server as HOST:PORT, not %q", ca.Clip(c.SMTP))
		}
		if _, err := mail.ParseAddress(c.From); err != nil {
			return fmt.Errorf("from %q is not an e-mail address", ca.Clip(c.From))
		}
		if len(c.To) == 0 {
			return errors.New("an email channel needs at least one recipient")
		}
		for _, to := range c.To {
			if _, err := mail.ParseAddress(to); err != nil {
				return fmt.Errorf("to %q is not an e-mail address", ca.Clip(to))
			}
		}
		if (c.Username == "") != (c.Password == "") {
			return errors.New("a username and a password go together")
		}
		if c.RootPEM != "" {
			if _, err := c.roots(); err != nil {
				return err
			}
		}
		if c.URL != "" {
			return errors.New("an email channel takes no URL")
		}
	default:
		return fmt.Errorf("channel kind %q: use webhook, slack or email", ca.Clip(kind))
	}
	return nil
}

// roots are the certificates of RootPEM.
func (c Config) roots() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(c.RootPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("root: %v", err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		return nil, errors.New("root: no PEM certificate")
	}
	return out, nil
}

// Public returns what may be shown of c.
func (c Config) Public(kind string) Public {
	switch kind {
	case KindEmail:
		return Public{Endpoint: c.SMTP, From: c.From, To: c.To, Username: c.Username}
	case KindSlack:
		if u, err := url.Parse(c.URL); err == nil {
			return Public{Endpoint: u.Scheme + "://" + u.Host + "/…"}
		}
	default:
		if u, err := url.Parse(c.URL); err == nil {
			u.RawQuery, u.User, u.Fragment = "", nil, ""
			return Public{Endpoint: u.String()}
		}
	}
	return Public{}
}

// encodeConfig and decodeConfig are a configuration as it is sealed.
func encodeConfig(c Config) ([]byte, error) { return json.Marshal(c) }

func decodeConfig(b []byte) (Config, error) {
	var c Config
	err := json.Unmarshal(b, &c)
	return c, err
}
