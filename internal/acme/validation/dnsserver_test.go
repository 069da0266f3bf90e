package validation

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// testDNS is a real DNS server on loopback (UDP and TCP on one port) that
// answers like a recursive resolver from the records a test gives it:
// CNAME chains are followed within the answer, a name with no records is
// NXDOMAIN, and a name with records of other types is NODATA.
type testDNS struct {
	addr string

	mu       sync.Mutex
	addrs    map[string][]netip.Addr
	txt      map[string][]string
	cname    map[string]string
	servFail map[string]bool
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{
		addrs:    map[string][]netip.Addr{},
		txt:      map[string][]string{},
		cname:    map[string]string{},
		servFail: map[string]bool{},
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // find a port free for both UDP and TCP
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for both UDP and TCP: %v", err)
	}
	d.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)},
		{Listener: ln, Handler: dns.HandlerFunc(d.serve)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe() // returns at Shutdown
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return d
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// A adds A or AAAA records for name.
func (d *testDNS) A(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range addrs {
		d.addrs[key(name)] = append(d.addrs[key(name)], netip.MustParseAddr(a))
	}
}

// TXT adds one TXT record per value for name.
func (d *testDNS) TXT(name string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[key(name)] = append(d.txt[key(name)], values...)
}

// CNAME makes name an alias of target.
func (d *testDNS) CNAME(name, target string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cname[key(name)] = key(target)
}

// ServFail makes every query for name fail with SERVFAIL.
func (d *testDNS) ServFail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servFail[key(name)] = true
}

func (d *testDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if len(req.Question) == 1 {
		d.answer(resp, req.Question[0])
	} else {
		resp.Rcode = dns.RcodeFormatError
	}
	_ = w.WriteMsg(resp) // on failure the client retries or times out
}

func (d *testDNS) answer(resp *dns.Msg, q dns.Question) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := key(q.Name)
	for range 8 {
		if d.servFail[name] {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		target, ok := d.cname[name]
		if !ok || q.Qtype == dns.TypeCNAME {
			break
		}
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: header(name, dns.TypeCNAME), Target: target})
		name = target
	}
	_, hasAddrs := d.addrs[name]
	_, hasTXT := d.txt[name]
	_, hasCNAME := d.cname[name]
	if !hasAddrs && !hasTXT && !hasCNAME {
		resp.Rcode = dns.RcodeNameError
		return
	}
	switch q.Qtype {
	case dns.TypeA, dns.TypeAAAA:
		for _, a := range d.addrs[name] {
			switch {
			case q.Qtype == dns.TypeA && a.Is4():
				resp.Answer = append(resp.Answer, &dns.A{Hdr: header(name, dns.TypeA), A: a.AsSlice()})
			case q.Qtype == dns.TypeAAAA && a.Is6():
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: header(name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
	case dns.TypeTXT:
		for _, value := range d.txt[name] {
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: header(name, dns.TypeTXT), Txt: splitTXT(value)})
		}
	}
}

func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: 60}
}

// splitTXT cuts value into the 255-byte character-strings of one TXT record.
func splitTXT(value string) []string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	return append(parts, value)
}
