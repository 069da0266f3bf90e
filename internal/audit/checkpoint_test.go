package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

func (m *memLog) append(e Event) {
	Seal(&e, m.headSeq+1, m.headHash)
	m.events = append(m.events, e)
	m.headSeq, m.headHash = e.Seq, e.Hash
}

func TestCheckpoints(t *testing.T) {
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m := newLog(3)
	cp, ok, err := NewCheckpoint(ctx, m, key, "k1", time.Now())
	if err != nil || !ok || cp.Detail["seq"] != "3" {
		t.Fatalf("NewCheckpoint: %+v %v %v", cp, ok, err)
	}
	m.append(cp)
	if _, ok, _ := NewCheckpoint(ctx, m, key, "k1", time.Now()); ok {
		t.Error("a log ending with a checkpoint was checkpointed again")
	}
	rep, err := VerifyWith(ctx, m, VerifyOptions{CheckpointKey: key.Public()}, nil)
	if err != nil || !rep.OK() || rep.Checkpoints != 1 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// Another key: the checkpoint does not verify.
	rep, _ = VerifyWith(ctx, m, VerifyOptions{CheckpointKey: other.Public()}, nil)
	if rep.OK() || !strings.Contains(rep.Problems[0].Reason, "signature does not verify") {
		t.Fatalf("verify with another key: %+v", rep)
	}
	// A consistent rewrite of record 2 (and every hash after it).
	prev := GenesisHash
	for i := range m.events {
		if m.events[i].Seq == 2 {
			m.events[i].Actor = "admin:forged"
		}
		Seal(&m.events[i], m.events[i].Seq, prev)
		prev = m.events[i].Hash
	}
	m.headHash = prev
	if rep, _ := Verify(ctx, m, nil); !rep.OK() {
		t.Fatalf("the rewrite is not consistent: %+v", rep)
	}
	rep, _ = VerifyWith(ctx, m, VerifyOptions{CheckpointKey: key.Public()}, nil)
	if rep.OK() || !strings.Contains(rep.Problems[0].Reason, "rewritten") {
		t.Fatalf("verify after a consistent rewrite: %+v", rep)
	}
}
