package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// HashSize is the length of a record hash (SHA-256).
const HashSize = sha256.Size

// GenesisHash is the PrevHash of the first record in a log.
var GenesisHash = make([]byte, HashSize)

// Seal assigns e its place in the chain: sequence number seq, the previous
// record's hash, and its own hash over every field. Time is truncated to the
// microsecond in UTC first, so the record hashes the same after a round trip
// through any store.
func Seal(e *Event, seq int64, prev []byte) {
	e.Seq = seq
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.PrevHash = append([]byte(nil), prev...)
	e.Hash = digest(e)
}

// digest hashes the canonical encoding of e: each field length-prefixed, the
// detail map as JSON (which sorts keys), then the previous hash.
func digest(e *Event) []byte {
	h := sha256.New()
	var n [8]byte
	writeInt := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	writeBytes := func(b []byte) {
		writeInt(int64(len(b)))
		h.Write(b)
	}
	h.Write([]byte("meshpki-audit-v1"))
	writeInt(e.Seq)
	writeInt(e.Time.UTC().Truncate(time.Microsecond).UnixMicro())
	writeBytes([]byte(e.Type))
	writeBytes([]byte(e.Actor))
	writeBytes([]byte(e.Subject))
	writeBytes([]byte(e.Outcome))
	detail, _ := json.Marshal(e.Detail) // a map[string]string always marshals
	if len(e.Detail) == 0 {
		detail = nil
	}
	writeBytes(detail)
	writeBytes(e.PrevHash)
	return h.Sum(nil)
}

// Reader pages through a stored log in sequence order.
type Reader interface {
	// ListAudit returns up to limit records with Seq > afterSeq, in Seq order.
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]Event, error)
	// AuditHead returns the sequence number and hash of the last record the
	// store believes it appended (0 and GenesisHash for an empty log).
	AuditHead(ctx context.Context) (int64, []byte, error)
}

// Problem describes one place where a log fails verification.
type Problem struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

func (p Problem) String() string { return fmt.Sprintf("record %d: %s", p.Seq, p.Reason) }

// Report is the outcome of Verify.
type Report struct {
	Records int64 `json:"records"`
	// Checkpoints counts the signed checkpoints checked (with a key).
	Checkpoints int       `json:"checkpoints"`
	Problems    []Problem `json:"problems,omitempty"`
}

// OK reports whether the log verified with no problem.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify walks the whole log and reports every record that was edited,
// inserted or deleted: an edited record no longer matches its own hash; an
// inserted or deleted record breaks the sequence and the link to its
// neighbour; a deleted tail no longer reaches the stored head.
// progress, if not nil, is called after each page with the records read so far.
func Verify(ctx context.Context, r Reader, progress func(read int64)) (Report, error) {
	return VerifyWith(ctx, r, VerifyOptions{}, progress)
}

// VerifyOptions add checks to Verify's.
type VerifyOptions struct {
	// CheckpointKey, if set, is the public key that signs checkpoints: every
	// checkpoint record must verify with it and match the record it signed,
	// and Report.Checkpoints counts them.
	CheckpointKey crypto.PublicKey
	// Head, if set, is a record hash saved outside the database (audit tail
	// --json): it must still be in the log.
	Head []byte
}

// VerifyWith is Verify with the checks opts asks for.
func VerifyWith(ctx context.Context, r Reader, opts VerifyOptions, progress func(read int64)) (Report, error) {
	const page = 1000
	var (
		rep         Report
		checkpoints []checkpoint
		headFound   = opts.Head == nil
	)
	prevSeq := int64(0)
	prevHash := GenesisHash
	for {
		events, err := r.ListAudit(ctx, prevSeq, page)
		if err != nil {
			return rep, fmt.Errorf("audit: read log: %w", err)
		}
		for i := range events {
			e := &events[i]
			rep.Records++
			if want := digest(e); !bytes.Equal(want, e.Hash) {
				rep.Problems = append(rep.Problems, Problem{e.Seq, "contents do not match the record's hash (edited)"})
			}
			switch {
			case e.Seq != prevSeq+1 && e.Seq > prevSeq+1:
				rep.Problems = append(rep.Problems, Problem{e.Seq, fmt.Sprintf("records %d to %d are missing (deleted)", prevSeq+1, e.Seq-1)})
			case !bytes.Equal(e.PrevHash, prevHash):
				rep.Problems = append(rep.Problems, Problem{e.Seq, fmt.Sprintf("does not link to record %d (inserted or reordered)", prevSeq)})
			}
			prevSeq, prevHash = e.Seq, e.Hash
			if e.Type == TypeCheckpoint {
				checkpoints = append(checkpoints, parseCheckpoint(e))
			}
			if !headFound && bytes.Equal(e.Hash, opts.Head) {
				headFound = true
			}
		}
		if progress != nil {
			progress(rep.Records)
		}
		if len(events) < page {
			break
		}
	}
	headSeq, headHash, err := r.AuditHead(ctx)
	if err != nil {
		return rep, fmt.Errorf("audit: read head: %w", err)
	}
	switch {
	case headSeq > prevSeq:
		rep.Problems = append(rep.Problems, Problem{prevSeq + 1, fmt.Sprintf("records %d to %d are missing at the end of the log (deleted)", prevSeq+1, headSeq)})
	case headSeq < prevSeq:
		rep.Problems = append(rep.Problems, Problem{headSeq + 1, fmt.Sprintf("records after %d were added outside the CA (inserted)", headSeq)})
	case !bytes.Equal(headHash, prevHash):
		rep.Problems = append(rep.Problems, Problem{prevSeq, "last record does not match the stored head (edited)"})
	}
	if !headFound {
		rep.Problems = append(rep.Problems, Problem{0, fmt.Sprintf("no record has the hash %x saved outside the log: records were rewritten or deleted", opts.Head)})
	}
	if opts.CheckpointKey != nil {
		rep.Checkpoints = len(checkpoints)
		problems, err := checkCheckpoints(ctx, r, checkpoints, opts.CheckpointKey)
		if err != nil {
			return rep, err
		}
		rep.Problems = append(rep.Problems, problems...)
	}
	return rep, nil
}
