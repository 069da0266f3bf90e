package cli

import (
	"fmt"
	"time"
)

// humanDuration writes d (its absolute value) in at most its two largest
// units, truncated: "2d4h", "3h12m", "12m30s", "45s". A zero second unit is
// left out ("2d", "3h").
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	const day = 24 * time.Hour
	days := d / day
	hours := d % day / time.Hour
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

// expiresPhrase says when notAfter is, seen from now: "expires in 3h12m" or
// "expired 2d4h ago".
func expiresPhrase(notAfter, now time.Time) string {
	left := notAfter.Sub(now)
	if left > 0 {
		return "expires in " + humanDuration(left)
	}
	return "expired " + humanDuration(left) + " ago"
}

// agoPhrase says how long ago something happened: "3h12m ago".
func agoPhrase(d time.Duration) string { return humanDuration(d) + " ago" }
