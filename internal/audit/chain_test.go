package audit

import (
	"context"
	"strings"
	"testing"
	"time"
)

// memLog is an in-memory Reader for testing Verify.
type memLog struct {
	events   []Event
	headSeq  int64
	headHash []byte
}

func (m *memLog) ListAudit(_ context.Context, after int64, limit int) ([]Event, error) {
	var out []Event
	for _, e := range m.events {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *memLog) AuditHead(context.Context) (int64, []byte, error) { return m.headSeq, m.headHash, nil }

func newLog(n int) *memLog {
	m := &memLog{}
	prev := GenesisHash
	for i := 1; i <= n; i++ {
		e := Event{Time: time.Date(2026, 1, 1, 0, 0, i, 123456789, time.UTC), Type: TypeCertificateIssued, Actor: "token:x",
			Subject: "serial", Outcome: "success", Detail: map[string]string{"b": "2", "a": "1"}}
		Seal(&e, int64(i), prev)
		prev = e.Hash
		m.events = append(m.events, e)
	}
	m.headSeq, m.headHash = int64(n), prev
	return m
}

func TestVerifyNamesEachKindOfTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(m *memLog)
		want   string
	}{
		{"intact", func(*memLog) {}, ""},
		{"edited field", func(m *memLog) { m.events[2].Actor = "admin:evil" }, "record 3: contents do not match"},
		{"edited detail", func(m *memLog) { m.events[1].Detail = map[string]string{"a": "1"} }, "record 2: contents do not match"},
		{"deleted middle", func(m *memLog) { m.events = append(m.events[:2], m.events[3:]...) }, "records 3 to 3 are missing"},
		{"deleted tail", func(m *memLog) { m.events = m.events[:4] }, "records 5 to 5 are missing at the end"},
		{"inserted at end", func(m *memLog) {
			e := Event{Time: time.Now(), Type: "x"}
			Seal(&e, 6, m.events[4].Hash)
			m.events = append(m.events, e)
		}, "added outside the CA"},
		{"replaced and resealed", func(m *memLog) {
			e := m.events[2]
			e.Actor = "forged"
			Seal(&e, 3, m.events[1].Hash)
			m.events[2] = e
		}, "record 4: does not link to record 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newLog(5)
			tc.tamper(m)
			rep, err := Verify(context.Background(), m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !rep.OK() || rep.Records != 5 {
					t.Fatalf("intact log: %+v", rep)
				}
				return
			}
			var all []string
			for _, p := range rep.Problems {
				all = append(all, p.String())
			}
			if !strings.Contains(strings.Join(all, "; "), tc.want) {
				t.Fatalf("problems %q, want one containing %q", all, tc.want)
			}
		})
	}
}

func TestSealIsStableAcrossMicrosecondRoundTrip(t *testing.T) {
	e := Event{Time: time.Date(2026, 1, 1, 0, 0, 0, 999999999, time.FixedZone("x", 3600)), Type: "t"}
	Seal(&e, 1, GenesisHash)
	again := e
	again.Time = time.UnixMicro(e.Time.UnixMicro()).UTC()
	if string(digest(&again)) != string(e.Hash) {
		t.Fatal("hash changed after a microsecond round trip")
	}
}
