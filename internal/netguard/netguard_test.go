package netguard

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	for addr, want := range map[string]Class{
		"8.8.8.8": Public, "2606:4700::1": Public,
		"10.1.2.3": Private, "192.168.0.1": Private, "172.16.0.1": Private, "100.64.0.1": Private, "fd12::1": Private,
		"127.0.0.1": Loopback, "127.9.9.9": Loopback, "::1": Loopback, "0.0.0.0": Loopback, "::": Loopback, "::ffff:127.0.0.1": Loopback,
		"169.254.169.254": LinkLocal, "fe80::1": LinkLocal, "fd00:ec2::254": LinkLocal, "224.0.0.1": LinkLocal,
	} {
		if got := Classify(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Classify(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestGuardCheck(t *testing.T) {
	g := Guard{}
	for _, ok := range []string{"8.8.8.8", "10.0.0.1"} {
		if err := g.Check(netip.MustParseAddr(ok)); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"127.0.0.1", "169.254.169.254", "0.0.0.0", "::ffff:169.254.169.254"} {
		err := g.Check(netip.MustParseAddr(bad))
		if err == nil || !strings.Contains(err.Error(), "does not connect") {
			t.Errorf("%s: %v, want a refusal", bad, err)
		}
	}
	allow, err := ParsePrefixes([]string{"127.0.0.0/8", "169.254.169.254"})
	if err != nil {
		t.Fatal(err)
	}
	g = Guard{Allow: allow}
	if err := g.Check(netip.MustParseAddr("127.0.0.2")); err != nil {
		t.Errorf("allowed loopback refused: %v", err)
	}
	if err := g.Check(netip.MustParseAddr("169.254.169.253")); err == nil {
		t.Error("a neighbour of the allowed address accepted")
	}
	if _, err := ParsePrefixes([]string{"not-a-net"}); err == nil {
		t.Error("garbage accepted")
	}
}

// The guard applies at connect time to a real dial.
func TestDialerRefusesLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := (Guard{}).Dialer().DialContext(context.Background(), "tcp", ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dial: %v, want a loopback refusal", err)
	}
	allowed := Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	c, err := allowed.Dialer().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("allowed dial: %v", err)
	}
	c.Close()
}
