package workload

import (
	"crypto/x509"
	"encoding/binary"
	"log/slog"
	"slices"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// snapshot is the Source's content at one moment, prepared for serving: keys
// marshalled, bundles concatenated, responses built once per distinct set of
// entitled SVIDs. It is immutable but for its response cache, and it is
// replaced as a whole when the Source changes.
type snapshot struct {
	svidsChanged   <-chan struct{}
	bundlesChanged <-chan struct{}

	svids []preparedSVID // the servable SVIDs, in Source order
	// byFirstSelector indexes svids by their first selector: a caller can
	// only be entitled to an SVID whose first selector it has.
	byFirstSelector map[string][]int

	ownTD       string            // "spiffe://td" of the first bundle
	x509Bundles map[string][]byte // "spiffe://td" → concatenated DER of its X.509 authorities
	federated   map[string][]byte // x509Bundles without ownTD
	jwtBundles  *jwtbundle.Set

	x509BundlesResp *workload.X509BundlesResponse
	jwtBundlesResp  *workload.JWTBundlesResponse

	mu        sync.Mutex
	responses map[string]*workload.X509SVIDResponse // key: entitled svids indexes
}

// maxCachedResponses bounds the distinct entitlement sets remembered per
// snapshot; beyond it responses are built per call.
const maxCachedResponses = 1024

type preparedSVID struct {
	entryID   string
	spiffeID  string
	td        string // "spiffe://td"
	selectors []string
	x509      *workload.X509SVID // with the bundle of its trust domain
}

// stale reports whether the Source has changed since s was taken.
func (s *snapshot) stale() bool {
	select {
	case <-s.svidsChanged:
		return true
	case <-s.bundlesChanged:
		return true
	default:
		return false
	}
}

// newSnapshot prepares what src holds now. SVIDs and bundles that cannot be
// served (a bad SPIFFE ID, a key PKCS#8 cannot hold) are logged and left out.
func newSnapshot(src Source, log *slog.Logger) *snapshot {
	// Read bundles first: if the SVIDs change in between, the snapshot is
	// stale at once and is rebuilt, never served with a missed change.
	bundles, bundlesChanged := src.Bundles()
	svids, svidsChanged := src.SVIDs()
	s := &snapshot{
		svidsChanged:    svidsChanged,
		bundlesChanged:  bundlesChanged,
		byFirstSelector: make(map[string][]int),
		x509Bundles:     make(map[string][]byte, len(bundles)),
		federated:       make(map[string][]byte, len(bundles)),
		jwtBundles:      jwtbundle.NewSet(),
		responses:       make(map[string]*workload.X509SVIDResponse),
	}

	jwks := make(map[string][]byte, len(bundles))
	for i, b := range bundles {
		td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
		if err != nil {
			log.Error("workload api: bundle skipped", "trust_domain", b.TrustDomain, "err", err)
			continue
		}
		tdID := td.IDString()
		if i == 0 {
			s.ownTD = tdID
		}
		var der []byte
		for _, c := range b.X509Authorities {
			der = append(der, c.Raw...)
		}
		s.x509Bundles[tdID] = der
		if tdID != s.ownTD {
			s.federated[tdID] = der
		}
		jb := jwtbundle.New(td)
		for kid, key := range b.JWTKeys {
			if err := jb.AddJWTAuthority(kid, key); err != nil {
				log.Error("workload api: JWT key skipped", "trust_domain", b.TrustDomain, "kid", kid, "err", err)
			}
		}
		doc, err := jb.Marshal()
		if err != nil {
			log.Error("workload api: JWT bundle skipped", "trust_domain", b.TrustDomain, "err", err)
			continue
		}
		jwks[tdID] = doc
		s.jwtBundles.Add(jb)
	}
	s.x509BundlesResp = &workload.X509BundlesResponse{Bundles: s.x509Bundles}
	s.jwtBundlesResp = &workload.JWTBundlesResponse{Bundles: jwks}

	for _, v := range svids {
		p, err := s.prepare(v)
		if err != nil {
			log.Error("workload api: SVID not served", "entry", v.EntryID, "spiffe_id", v.SPIFFEID, "err", err)
			continue
		}
		if len(p.selectors) == 0 {
			log.Warn("workload api: SVID has no selectors and is served to nobody", "entry", v.EntryID, "spiffe_id", v.SPIFFEID)
			continue
		}
		s.byFirstSelector[p.selectors[0]] = append(s.byFirstSelector[p.selectors[0]], len(s.svids))
		s.svids = append(s.svids, p)
	}
	return s
}

func (s *snapshot) prepare(v SVID) (preparedSVID, error) {
	id, err := spiffeid.FromString(v.SPIFFEID)
	if err != nil {
		return preparedSVID{}, err
	}
	if len(v.Chain) == 0 {
		return preparedSVID{}, errNoChain
	}
	key, err := x509.MarshalPKCS8PrivateKey(v.Key)
	if err != nil {
		return preparedSVID{}, err
	}
	var chain []byte
	for _, c := range v.Chain {
		chain = append(chain, c.Raw...)
	}
	td := id.TrustDomain().IDString()
	bundle, ok := s.x509Bundles[td]
	if !ok {
		bundle = s.x509Bundles[s.ownTD]
	}
	return preparedSVID{
		entryID:   v.EntryID,
		spiffeID:  id.String(),
		td:        td,
		selectors: slices.Compact(slices.Sorted(slices.Values(v.Selectors))),
		x509: &workload.X509SVID{
			SpiffeId:    id.String(),
			X509Svid:    chain,
			X509SvidKey: key,
			Bundle:      bundle,
			Hint:        v.Hint,
		},
	}, nil
}

// entitled returns the indexes (ascending, so in Source order) of the SVIDs
// whose selectors are all among the caller's. A hint names one SVID of a
// workload's set, so of several SVIDs with the same non-empty hint only the
// first is kept.
func (s *snapshot) entitled(caller map[string]struct{}) []int {
	var idx []int
	for sel := range caller {
		for _, i := range s.byFirstSelector[sel] {
			if hasAll(caller, s.svids[i].selectors[1:]) {
				idx = append(idx, i)
			}
		}
	}
	slices.Sort(idx)
	var hints map[string]bool
	return slices.DeleteFunc(idx, func(i int) bool {
		h := s.svids[i].x509.Hint
		if h == "" {
			return false
		}
		if hints[h] {
			return true
		}
		if hints == nil {
			hints = map[string]bool{}
		}
		hints[h] = true
		return false
	})
}

func hasAll(set map[string]struct{}, selectors []string) bool {
	for _, sel := range selectors {
		if _, ok := set[sel]; !ok {
			return false
		}
	}
	return true
}

// x509SVIDResponse returns the FetchX509SVID response for the SVIDs at idx,
// built once per snapshot and set of SVIDs. Callers must not modify it.
func (s *snapshot) x509SVIDResponse(idx []int) *workload.X509SVIDResponse {
	key := make([]byte, 0, 4*len(idx))
	for _, i := range idx {
		key = binary.LittleEndian.AppendUint32(key, uint32(i))
	}
	s.mu.Lock()
	resp, ok := s.responses[string(key)]
	s.mu.Unlock()
	if ok {
		return resp
	}
	resp = &workload.X509SVIDResponse{
		Svids:            make([]*workload.X509SVID, len(idx)),
		FederatedBundles: s.federated,
	}
	for n, i := range idx {
		resp.Svids[n] = s.svids[i].x509
	}
	s.mu.Lock()
	if len(s.responses) < maxCachedResponses {
		s.responses[string(key)] = resp
	}
	s.mu.Unlock()
	return resp
}
