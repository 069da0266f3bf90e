package policy

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshpki/meshpki/internal/duration"
)

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration, e.g. "24h0m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a JSON string such as "24h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a JSON string in any form UnmarshalText accepts,
// such as "90m", "24h0m0s" or "7d". Numbers are rejected: a bare 86400 could mean
// seconds or nanoseconds. JSON null leaves d unchanged.
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	if len(data) == 0 || data[0] != '"' {
		return fmt.Errorf("policy: duration must be a string such as \"24h0m0s\", got %s", data)
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("policy: duration: %w", err)
	}
	return d.UnmarshalText([]byte(s))
}

// MarshalText writes d as "24h0m0s", for configuration formats such as TOML.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText reads Go's syntax plus days and weeks ("7d", "1w"): what
// the CLI prints (duration.Parse).
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := duration.Parse(string(text))
	if err != nil {
		return fmt.Errorf("policy: duration %q: want a value such as \"24h\", \"90m\" or \"7d\"", clipText(string(text)))
	}
	*d = Duration(v)
	return nil
}

func clipText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
