package certlint

import (
	"crypto/ecdh"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
)

// smallKeyBits is the bound of the small-private-key check: a P-256 key
// whose private scalar d, or its negation modulo the group order, satisfies
// 0 < d <= 2^smallKeyBits can be recovered by anyone. It equals the default
// of zlint's e_ecdsa_small_private_key, which Linter.CheckLeaf's full lint
// runs, so the two checks agree.
const smallKeyBits = 16

// p256SmallKeys holds the first 8 bytes of the X coordinate of d*G for every
// 0 < d <= 2^smallKeyBits, sorted. d*G and (n-d)*G share their X
// coordinate, so one table covers both signs. It is built once, in the
// background (about a second of one core), after Warm is called; until it
// is ready isSmallP256Key reports "unknown" and the caller lints in full.
var (
	p256SmallKeys     atomic.Pointer[[]uint64]
	p256SmallKeysOnce sync.Once
)

// Warm starts building, in the background, what CheckLeaf needs to reuse
// the verdict of an earlier certificate of the same shape for a P-256 key.
// The server calls it at start; without it every leaf is linted in full.
func Warm() {
	p256SmallKeysOnce.Do(func() {
		go func() {
			t := buildSmallKeyTable()
			p256SmallKeys.Store(&t)
		}()
	})
}

func buildSmallKeyTable() []uint64 {
	curve := ecdh.P256()
	t := make([]uint64, 0, 1<<smallKeyBits)
	var scalar [32]byte
	for d := uint64(1); d <= 1<<smallKeyBits; d++ {
		binary.BigEndian.PutUint64(scalar[24:], d)
		k, err := curve.NewPrivateKey(scalar[:])
		if err != nil {
			continue // not reached: every such d is a valid scalar
		}
		t = append(t, binary.BigEndian.Uint64(k.PublicKey().Bytes()[1:9]))
	}
	slices.Sort(t)
	return t
}

// Ready reports whether what Warm builds is ready, so that leaves with P-256
// keys can have a shape.
func Ready() bool { return p256SmallKeys.Load() != nil }

// isSmallP256Key looks up the uncompressed P-256 point pt (65 bytes). It
// returns small=true when the point's X coordinate starts like that of a
// small key (which the full lint then decides exactly), and ready=false when
// the table is not built yet.
func isSmallP256Key(pt []byte) (small, ready bool) {
	t := p256SmallKeys.Load()
	if t == nil {
		return false, false
	}
	if len(pt) != 65 || pt[0] != 4 {
		return true, true // not a point this check understands: lint in full
	}
	_, found := slices.BinarySearch(*t, binary.BigEndian.Uint64(pt[1:9]))
	return found, true
}
