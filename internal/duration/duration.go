// Package duration reads and writes lengths of time the way meshpki shows
// them to people: Go's syntax ("90m", "1h30m", "24h0m0s") plus days and weeks
// ("7d", "2d4h", "1w"). Whatever Format prints, Parse accepts, so a value
// copied from `cert list` or `agent status` can be given back as a flag or
// an API field.
package duration

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// Parse reads s: an optional sign, then one or more number-and-unit pairs
// with units ns, us (µs), ms, s, m, h, d (24h) and w (7d), as in "1w2d",
// "7d", "36h" or "1.5d". "0" alone is zero.
func Parse(s string) (time.Duration, error) {
	orig := s
	if s == "" {
		return 0, errors.New("duration: empty")
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	var total time.Duration
	var rest strings.Builder // the pairs time.ParseDuration reads itself
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || '0' <= s[i] && s[i] <= '9') {
			i++
		}
		j := i
		for j < len(s) && !(s[j] == '.' || '0' <= s[j] && s[j] <= '9') {
			j++
		}
		number, unit := s[:i], s[i:j]
		if number == "" || unit == "" {
			return 0, fmt.Errorf("duration: %q: want a number and a unit, such as \"90m\", \"36h\" or \"7d\"", clip(orig))
		}
		switch unit {
		case "d", "w":
			v, err := strconv.ParseFloat(number, 64)
			if err != nil {
				return 0, fmt.Errorf("duration: %q: bad number %q", clip(orig), number)
			}
			per := Day
			if unit == "w" {
				per = Week
			}
			f := v * float64(per)
			if f > math.MaxInt64 || float64(total)+f > math.MaxInt64 {
				return 0, fmt.Errorf("duration: %q is too long", clip(orig))
			}
			total += time.Duration(f)
		default:
			rest.WriteString(s[:j])
		}
		s = s[j:]
	}
	if rest.Len() > 0 {
		v, err := time.ParseDuration(rest.String())
		if err != nil {
			return 0, fmt.Errorf("duration: %q: want a value such as \"90m\", \"36h\" or \"7d\"", clip(orig))
		}
		if v > math.MaxInt64-total {
			return 0, fmt.Errorf("duration: %q is too long", clip(orig))
		}
		total += v
	}
	if neg {
		total = -total
	}
	return total, nil
}

// Format writes d (its absolute value) in at most its two largest units,
// truncated: "2d4h", "3h12m", "12m30s", "45s"; a zero second unit is left
// out ("2d", "3h"). Parse reads it back (to that precision).
func Format(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	days := d / Day
	hours := d % Day / time.Hour
	minutes := d % time.Hour / time.Minute
	seconds := d % time.Minute / time.Second
	twoUnits := func(major int64, majorUnit string, minor int64, minorUnit string) string {
		if minor == 0 {
			return fmt.Sprintf("%d%s", major, majorUnit)
		}
		return fmt.Sprintf("%d%s%d%s", major, majorUnit, minor, minorUnit)
	}
	switch {
	case days > 0:
		return twoUnits(int64(days), "d", int64(hours), "h")
	case hours > 0:
		return twoUnits(int64(hours), "h", int64(minutes), "m")
	case minutes > 0:
		return twoUnits(int64(minutes), "m", int64(seconds), "s")
	default:
		return fmt.Sprintf("%ds", seconds)
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
