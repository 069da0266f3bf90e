package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// checkStrict walks a JSON document against the Go type it will decode
// into, refusing what encoding/json would let through: an object key that
// matches a struct field only when case is ignored ("CSR" for "csr"), and an
// object with the same key twice (which one would win is a guess, and a
// front end and this server might guess differently). Objects decoded into
// maps, or by a type's own UnmarshalJSON, are checked for duplicates only.
// Syntax errors are left to the decoder that runs next.
func checkStrict(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkValue(dec, t, "", 0)
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// maxDepth bounds nesting, so a deeply nested body cannot exhaust the stack.
const maxDepth = 64

func walkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("the JSON is nested more than %d deep", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return errSyntax
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return checkScalar(t, tok, path)
	}
	t = plain(t)
	switch delim {
	case '{':
		fields := structFields(t)
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return errSyntax
			}
			key, _ := tok.(string)
			if seen[key] {
				return fmt.Errorf("field %q appears twice in %s", key, where(path))
			}
			seen[key] = true
			ft := elem
			if fields != nil {
				f, ok := fields[key]
				if !ok {
					return fmt.Errorf("unknown field %q in %s (field names are case-sensitive)", key, where(path))
				}
				ft = f
			}
			if err := walkValue(dec, ft, path+"."+clipKey(key), depth+1); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errSyntax
	}
	return nil
}

// checkScalar runs the decoder of a type that decodes itself (a duration, a
// key type) on one scalar, so that a bad value is refused with the name of
// its field rather than by the whole-body decoder that runs next.
func checkScalar(t reflect.Type, tok json.Token, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || tok == nil || !reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	raw, err := json.Marshal(tok)
	if err != nil {
		return nil
	}
	if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
		msg := err.Error()
		if _, after, ok := strings.Cut(msg, ": "); ok && !strings.Contains(msg[:len(msg)-len(after)], " ") {
			msg = after // drop a "package: " prefix
		}
		return fmt.Errorf("%s: %s", where(path), msg)
	}
	return nil
}

// errSyntax stops the walk; the decoder that runs next names the problem.
var errSyntax = errors.New("syntax")

func where(path string) string {
	if path == "" {
		return "the body"
	}
	return strings.TrimPrefix(path, ".")
}

// plain strips pointers, and returns nil for types that decode themselves
// (their objects are checked for duplicate keys only).
func plain(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	return t
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// structFields maps the exact JSON names of t's fields (embedded structs
// flattened) to their types, or returns nil when t is not a struct.
func structFields(t reflect.Type) map[string]reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addFields(t, m)
	fieldCache.Store(t, m)
	return m
}

func addFields(t reflect.Type, m map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(ft, m)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
}

// clipKey keeps error paths short whatever the keys.
func clipKey(k string) string {
	if len(k) > 32 {
		return k[:32] + "…"
	}
	return k
}
