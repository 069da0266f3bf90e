package policy

import (
	"encoding/json"
	"fmt"
	"time"
)

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration, e.g. "24h0m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a JSON string such as "24h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a JSON string in any form time.ParseDuration accepts,
// such as "90m" or "24h0m0s". Numbers are rejected: a bare 86400 could mean
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

// UnmarshalText reads any form time.ParseDuration accepts.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("policy: duration %q: want a value such as \"24h\" or \"90m\"", text)
	}
	*d = Duration(v)
	return nil
}
