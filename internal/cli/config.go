package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshpki/meshpki/internal/ca"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// A long-running command's configuration file (meshpki server --config):
// a YAML mapping whose keys are the command's flag names and whose values
// are what the flag would take (a list for a repeatable flag). Flags on the
// command line win over the file; environment variables a command reads
// (MESHPKI_STORE, MESHPKI_PASSWORD) apply only where neither gives a value.

// configSources says where each setting's value came from, for
// --print-config: "flag", "FILE:LINE", "env NAME" or "default".
type configSources map[string]string

// notConfigurable are flags of the command itself, never keys of a file.
var notConfigurable = []string{"config", "print-config", "help"}

// applyConfigFile sets every flag the file names that the command line did
// not set. Unknown keys, keys given twice, and values a flag refuses are
// errors naming the file and line.
func applyConfigFile(cmd *cobra.Command, path string) (configSources, error) {
	sources := configSources{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			sources[f.Name] = "flag"
		}
	})
	if path == "" {
		return sources, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return sources, nil // an empty file sets nothing
		}
		return nil, fmt.Errorf("%s: malformed YAML: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return sources, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the configuration is a mapping of flag names to values", path, root.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		at := fmt.Sprintf("%s:%d", path, k.Line)
		key := k.Value
		f := cmd.Flags().Lookup(key)
		if f == nil || slices.Contains(notConfigurable, key) {
			return nil, fmt.Errorf("%s: unknown key %q (the keys are the flags of '%s --help', without the dashes)", at, ca.Clip(key), cmd.CommandPath())
		}
		if line, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s: key %q is given twice (first at line %d)", at, key, line)
		}
		seen[key] = k.Line
		values, err := configValues(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", at, key, err)
		}
		if f.Changed {
			continue // the command line wins
		}
		if len(values) > 1 && !strings.HasSuffix(f.Value.Type(), "Slice") {
			return nil, fmt.Errorf("%s: %s takes one value, not a list", at, key)
		}
		for _, val := range values {
			if err := f.Value.Set(val); err != nil {
				return nil, fmt.Errorf("%s: %s: %v", at, key, err)
			}
		}
		sources[key] = at
	}
	return sources, nil
}

// configValues reads a scalar or a list of scalars.
func configValues(v *yaml.Node) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		return []string{v.Value}, nil
	case yaml.SequenceNode:
		var out []string
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, errors.New("a list holds plain values")
			}
			out = append(out, item.Value)
		}
		return out, nil
	}
	return nil, errors.New("give a value or a list of values")
}

// printConfig writes the effective configuration as a configuration file,
// each value with its source; secrets in URLs are redacted.
func printConfig(w io.Writer, cmd *cobra.Command, sources configSources, env map[string]string) error {
	var b strings.Builder
	b.WriteString("# the effective configuration of '" + cmd.CommandPath() + "'; each value's source follows it\n")
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if slices.Contains(notConfigurable, f.Name) {
			return
		}
		src := sources[f.Name]
		val := f.Value.String()
		if src == "" {
			src = "default"
			if e, ok := env[f.Name]; ok && os.Getenv(e) != "" {
				src, val = "env "+e, os.Getenv(e)
			}
		}
		fmt.Fprintf(&b, "%s: %s  # %s\n", f.Name, configYAMLValue(f, redactValue(val)), src)
	})
	_, err := io.WriteString(w, b.String())
	return err
}

// configYAMLValue is a flag's value as YAML: a list for slice flags.
func configYAMLValue(f *pflag.Flag, val string) string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		items := sv.GetSlice()
		quoted := make([]string, len(items))
		for i, it := range items {
			quoted[i] = strconv.Quote(redactValue(it))
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	switch f.Value.Type() {
	case "int", "bool":
		return val
	}
	return strconv.Quote(val)
}

// redactValue hides a password in a URL.
func redactValue(v string) string {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return u.Redacted()
		}
	}
	return v
}
