package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// TypeCheckpoint is a record that signs the chain's head as it was when the
// checkpoint was made, with a key the database does not hold. Whoever can
// rewrite the database can rewrite the whole chain consistently, but not the
// signatures of the checkpoints in it: a rewritten record before a
// checkpoint no longer matches what the checkpoint signed.
const TypeCheckpoint = "audit.checkpoint"

// checkpointMessage is what a checkpoint signs.
func checkpointMessage(seq int64, hash []byte, at time.Time) []byte {
	return fmt.Appendf(nil, "meshpki audit checkpoint v1\n%d\n%x\n%d\n", seq, hash, at.UTC().UnixMicro())
}

// NewCheckpoint reads the head of r and returns the checkpoint record that
// signs it (to be appended with AppendAudit); ok is false when there is
// nothing new to sign: the log is empty or ends with a checkpoint.
func NewCheckpoint(ctx context.Context, r Reader, signer crypto.Signer, keyID string, now time.Time) (ev Event, ok bool, err error) {
	seq, hash, err := r.AuditHead(ctx)
	if err != nil {
		return Event{}, false, fmt.Errorf("audit: read head: %w", err)
	}
	if seq == 0 {
		return Event{}, false, nil
	}
	last, err := r.ListAudit(ctx, seq-1, 1)
	if err != nil {
		return Event{}, false, fmt.Errorf("audit: read head record: %w", err)
	}
	if len(last) == 1 && last[0].Type == TypeCheckpoint {
		return Event{}, false, nil
	}
	now = now.UTC().Truncate(time.Microsecond)
	digest := sha256.Sum256(checkpointMessage(seq, hash, now))
	var sig []byte
	if _, isEd := signer.Public().(ed25519.PublicKey); isEd {
		sig, err = signer.Sign(rand.Reader, checkpointMessage(seq, hash, now), crypto.Hash(0))
	} else {
		sig, err = signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
	if err != nil {
		return Event{}, false, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return Event{Time: now, Type: TypeCheckpoint, Actor: "system", Subject: strconv.FormatInt(seq, 10), Outcome: "success",
		Detail: map[string]string{"seq": strconv.FormatInt(seq, 10), "hash": hex.EncodeToString(hash), "key_id": keyID,
			"signed_at": strconv.FormatInt(now.UnixMicro(), 10), "signature": base64.StdEncoding.EncodeToString(sig)}}, true, nil
}

// checkpoint is a checkpoint record as read back.
type checkpoint struct {
	at         int64 // the checkpoint record's own seq
	seq        int64
	hash       []byte
	signedAt   time.Time
	signature  []byte
	parseError string
}

func parseCheckpoint(e *Event) checkpoint {
	c := checkpoint{at: e.Seq}
	var err error
	if c.seq, err = strconv.ParseInt(e.Detail["seq"], 10, 64); err != nil {
		c.parseError = "checkpoint names no sequence number"
		return c
	}
	if c.hash, err = hex.DecodeString(e.Detail["hash"]); err != nil || len(c.hash) != HashSize {
		c.parseError = "checkpoint names no hash"
		return c
	}
	micros, err := strconv.ParseInt(e.Detail["signed_at"], 10, 64)
	if err != nil {
		c.parseError = "checkpoint has no signing time"
		return c
	}
	c.signedAt = time.UnixMicro(micros).UTC()
	if c.signature, err = base64.StdEncoding.DecodeString(e.Detail["signature"]); err != nil {
		c.parseError = "checkpoint signature is not base64"
	}
	return c
}

func verifySignature(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	}
	return false
}

// checkCheckpoints verifies each checkpoint's signature with key and that
// the record it signed still has the hash it signed.
func checkCheckpoints(ctx context.Context, r Reader, cps []checkpoint, key crypto.PublicKey) ([]Problem, error) {
	var problems []Problem
	for _, c := range cps {
		if c.parseError != "" {
			problems = append(problems, Problem{c.at, c.parseError})
			continue
		}
		if !verifySignature(key, checkpointMessage(c.seq, c.hash, c.signedAt), c.signature) {
			problems = append(problems, Problem{c.at, "the checkpoint's signature does not verify with the checkpoint key (forged or edited)"})
			continue
		}
		events, err := r.ListAudit(ctx, c.seq-1, 1)
		if err != nil {
			return nil, fmt.Errorf("audit: read record %d: %w", c.seq, err)
		}
		if len(events) == 0 || events[0].Seq != c.seq || !bytes.Equal(events[0].Hash, c.hash) {
			problems = append(problems, Problem{c.seq, fmt.Sprintf("the log up to this record is not the one checkpoint %d signed (rewritten)", c.at)})
		}
	}
	return problems, nil
}
