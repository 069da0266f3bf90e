package duration

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"90m", 90 * time.Minute},
		{"24h0m0s", 24 * time.Hour},
		{"7d", 7 * Day},
		{"2d4h", 2*Day + 4*time.Hour},
		{"1w", Week},
		{"1w2d", 9 * Day},
		{"1.5d", 36 * time.Hour},
		{"3h12m", 3*time.Hour + 12*time.Minute},
		{"-1d", -Day},
		{"0", 0},
		{"500ms", 500 * time.Millisecond},
	} {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "d", "7", "7x", "1d2", "h1", "..d", "1e5d", "9999999999w"} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", bad, got)
		}
	}
}

// TestFormatParsesBack: whatever Format prints, Parse reads.
func TestFormatParsesBack(t *testing.T) {
	for _, d := range []time.Duration{45 * time.Second, 12*time.Minute + 30*time.Second, 3*time.Hour + 12*time.Minute, 2*Day + 4*time.Hour, 30 * Day, 400 * Day} {
		s := Format(d)
		got, err := Parse(s)
		if err != nil || got != d {
			t.Errorf("Parse(Format(%v) = %q) = %v, %v", d, s, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"7d", "1w2d", "90m", "-1.5d", "0", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if d >= time.Second || d <= -time.Second {
			// Format's two-unit form reads back within its precision.
			back, err := Parse(Format(d))
			if err != nil {
				t.Fatalf("Parse(Format(%v)) = %v", d, err)
			}
			if back < 0 || (d > 0 && back > d) || (d < 0 && back > -d) {
				t.Fatalf("Parse(Format(%v)) = %v", d, back)
			}
		}
	})
}
