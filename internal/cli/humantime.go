package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/meshpki/meshpki/internal/duration"
)

// humanDuration writes d as people read it: "2d4h", "3h12m", "45s"; every
// duration flag accepts what it prints.
func humanDuration(d time.Duration) string { return duration.Format(d) }

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

// durationValue is a flag holding a duration in duration.Parse's syntax
// ("90m", "36h", "7d", "1w"), so flags accept what the CLI prints.
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	v, err := duration.Parse(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string {
	if *d == 0 {
		return "0"
	}
	return duration.Format(time.Duration(*d))
}

func (d *durationValue) Type() string { return "duration" }

// durationVar defines a duration flag on fs that accepts days and weeks.
func durationVar(fs *pflag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}
