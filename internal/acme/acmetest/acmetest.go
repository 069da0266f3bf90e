// Package acmetest holds what ACME tests and benchmarks need around a real
// meshpki server: a DNS server on loopback that resolves every name to
// 127.0.0.1 and serves the dns-01 TXT records, and lego challenge providers
// that answer http-01 and tls-alpn-01 from one shared loopback server each,
// so that many clients can solve challenges at once on ports of the test's
// choosing.
package acmetest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/miekg/dns"
)

// DNS is an authoritative-for-everything DNS server on 127.0.0.1: A records
// answer 127.0.0.1 for every name unless the name is in NXDomain; TXT
// records come from SetTXT.
type DNS struct {
	Addr string // host:port, UDP and TCP

	mu  sync.Mutex
	txt map[string][]string // lower-case FQDN → values
	nx  map[string]bool
}

// StartDNS starts the server until the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	d := &DNS{txt: map[string][]string{}, nx: map[string]bool{}}
	// UDP and TCP on one port number: the UDP port the kernel picks may
	// be taken for TCP by another process, so try a few.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for both UDP and TCP: %v", err)
	}
	d.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: ln, Handler: d}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return d
}

// SetTXT adds a TXT value at name.
func (d *DNS) SetTXT(name, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dns.CanonicalName(name)
	d.txt[k] = append(d.txt[k], value)
}

// ClearTXT removes the TXT value at name.
func (d *DNS) ClearTXT(name, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dns.CanonicalName(name)
	vals := d.txt[k][:0]
	for _, v := range d.txt[k] {
		if v != value {
			vals = append(vals, v)
		}
	}
	d.txt[k] = vals
}

// NXDomain makes name not exist.
func (d *DNS) NXDomain(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nx[dns.CanonicalName(name)] = true
}

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	d.mu.Lock()
	nx := d.nx[name]
	txt := append([]string(nil), d.txt[name]...)
	d.mu.Unlock()
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
	switch {
	case nx:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
	case q.Qtype == dns.TypeTXT:
		hdr.Rrtype = dns.TypeTXT
		for _, v := range txt {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
		}
	}
	_ = w.WriteMsg(m)
}

// DNS01 is a lego dns-01 provider that publishes on a DNS.
type DNS01 struct{ DNS *DNS }

// Present implements challenge.Provider.
func (p DNS01) Present(ctx context.Context, domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	p.DNS.SetTXT(info.FQDN, info.Value)
	return nil
}

// CleanUp implements challenge.Provider.
func (p DNS01) CleanUp(ctx context.Context, domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	p.DNS.ClearTXT(info.FQDN, info.Value)
	return nil
}

// HTTP01 is a lego http-01 provider served by one HTTP server on loopback
// for every client.
type HTTP01 struct {
	Port int

	mu     sync.Mutex
	tokens map[string]string // token → key authorization
}

// StartHTTP01 starts the challenge server until the test ends.
func StartHTTP01(t testing.TB) *HTTP01 {
	t.Helper()
	p := &HTTP01{tokens: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// ServeHTTP answers /.well-known/acme-challenge/TOKEN.
func (p *HTTP01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	p.mu.Lock()
	ka, found := p.tokens[token]
	p.mu.Unlock()
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(ka))
}

// Present implements challenge.Provider.
func (p *HTTP01) Present(_ context.Context, _, token, keyAuth string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[token] = keyAuth
	return nil
}

// CleanUp implements challenge.Provider.
func (p *HTTP01) CleanUp(_ context.Context, _, token, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.tokens, token)
	return nil
}

// TLSALPN01 is a lego tls-alpn-01 provider served by one TLS server on
// loopback, choosing the challenge certificate by SNI.
type TLSALPN01 struct {
	Port int

	mu    sync.Mutex
	certs map[string]*tls.Certificate // lower-case SNI → challenge certificate
}

// StartTLSALPN01 starts the challenge server until the test ends.
func StartTLSALPN01(t testing.TB) *TLSALPN01 {
	t.Helper()
	p := &TLSALPN01{certs: map[string]*tls.Certificate{}}
	cfg := &tls.Config{
		NextProtos: []string{tlsalpn01.ACMETLS1Protocol},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if c, ok := p.certs[strings.ToLower(hello.ServerName)]; ok {
				return c, nil
			}
			return nil, errors.New("no challenge certificate for " + hello.ServerName)
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Port = ln.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return p
}

// Present implements challenge.Provider.
func (p *TLSALPN01) Present(_ context.Context, domain, _, keyAuth string) error {
	cert, err := tlsalpn01.ChallengeCert(domain, keyAuth)
	if err != nil {
		return err
	}
	sni := domain
	if ip := net.ParseIP(domain); ip != nil {
		sni = reverseName(ip)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.certs[strings.ToLower(sni)] = cert
	return nil
}

// CleanUp implements challenge.Provider.
func (p *TLSALPN01) CleanUp(_ context.Context, domain, _, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.certs, strings.ToLower(domain))
	return nil
}

// reverseName is the RFC 8738 SNI for an IP identifier.
func reverseName(ip net.IP) string {
	name, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return ip.String()
	}
	return strings.TrimSuffix(name, ".")
}
