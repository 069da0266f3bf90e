package api

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/meshpki/meshpki/internal/monitor"
	"github.com/meshpki/meshpki/internal/wire"
)

// FuzzScanReport feeds arbitrary report bodies through the decoder and the
// checks of each result: never a panic; a result is refused with an error
// or becomes a result naming its target.
func FuzzScanReport(f *testing.F) {
	f.Add([]byte(`{"results":[{"target":"a:443","kind":"endpoint","chain":["MAA="]}]}`))
	f.Add([]byte(`{"results":[{"target":"a:443","kind":"file","error":"x","silent":true}],"labels":{"team":"a"}}`))
	f.Add([]byte(`{"results":[{"scope":"10.0.0.0/30:443","target":"10.0.0.1:443","kind":"endpoint","verify_name":"x","chain":["MIIBkTCB+wIJAK"]}],"hold":"1h"}`))
	s := &Server{inventory: &monitor.Inventory{Policy: &monitor.Policy{}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/inventory/reports", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var report wire.ScanReport
		if err := decodeJSONUpTo(httptest.NewRecorder(), r, &report, maxReportBytes); err != nil {
			return
		}
		_ = monitor.CheckLabels(report.Labels)
		for _, rr := range report.Results {
			res, err := s.reportedResult(rr)
			if err == nil && (res.Target == "" || res.Scope == "") {
				t.Fatalf("accepted %+v as %+v", rr, res)
			}
		}
		_, _ = json.Marshal(report)
	})
}
