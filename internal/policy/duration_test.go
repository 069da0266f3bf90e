package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{name: "canonical form", in: `"24h0m0s"`, want: 24 * time.Hour},
		{name: "short form", in: `"90m"`, want: 90 * time.Minute},
		{name: "fractional", in: `"1.5h"`, want: 90 * time.Minute},
		{name: "zero", in: `"0s"`, want: 0},
		{name: "number rejected", in: `86400`, wantErr: `must be a string such as "24h0m0s", got 86400`},
		{name: "bool rejected", in: `true`, wantErr: "must be a string"},
		{name: "unit missing", in: `"24"`, wantErr: `policy: duration "24"`},
		{name: "empty string", in: `""`, wantErr: `policy: duration ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal(%s) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || d.Std() != tt.want {
				t.Fatalf("Unmarshal(%s) = %v, %v; want %v", tt.in, d, err, tt.want)
			}
		})
	}
}

func TestDurationJSONRoundTrip(t *testing.T) {
	in := Policy{DefaultTTL: Duration(time.Hour), MaxTTL: Duration(168 * time.Hour)}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"default_ttl":"1h0m0s","max_ttl":"168h0m0s"}`; string(data) != want {
		t.Errorf("Marshal = %s, want %s", data, want)
	}
	var out Policy
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.DefaultTTL != in.DefaultTTL || out.MaxTTL != in.MaxTTL {
		t.Errorf("round trip gave %+v", out)
	}
}

func TestDurationJSONNullKeepsValue(t *testing.T) {
	d := Duration(time.Hour)
	if err := json.Unmarshal([]byte("null"), &d); err != nil || d != Duration(time.Hour) {
		t.Errorf("null gave %v, %v", d, err)
	}
}
