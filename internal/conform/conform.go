// Package conform checks auditns's JSON documents against the contracts
// a SIEM holds them to: events against Elastic Common Schema's field table
// (every field ECS defines has ECS's type and, where ECS lists them, one
// of its allowed values; every other field is auditns's own, under auditns
// or auditd, where no ECS field can be) and against the JSON Schema of
// auditns.event/2; registry records against theirs. The tests of every
// package that produces events use it.
package conform

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
)

// ecsFlat is ECS 9.4's field table (testdata/README.md).
//
//go:embed testdata/ecs_flat.yml
var ecsFlat []byte

// ECSField is what ECS's table says of one field.
type ECSField struct {
	Type          string `yaml:"type"`
	AllowedValues []struct {
		Name string `yaml:"name"`
	} `yaml:"allowed_values"`
}

// Allowed returns f's allowed values (nil: any).
func (f ECSField) Allowed() []string {
	var v []string
	for _, a := range f.AllowedValues {
		v = append(v, a.Name)
	}
	return v
}

// OwnRoots are the top-level objects of auditns's own fields.
var OwnRoots = []string{"auditns", "auditd"}

// Checker checks documents. It is safe for concurrent use.
type Checker struct {
	ECS       map[string]ECSField
	events    *jsonschema.Schema
	registry  *jsonschema.Schema
	ecsLeaves map[string]bool // ECS fields that are not objects
}

var (
	once    sync.Once
	checker *Checker
	err     error
)

// New returns the Checker (built once).
func New() (*Checker, error) {
	once.Do(func() { checker, err = build() })
	return checker, err
}

func build() (*Checker, error) {
	c := &Checker{ecsLeaves: map[string]bool{}}
	if err := yaml.Unmarshal(ecsFlat, &c.ECS); err != nil {
		return nil, fmt.Errorf("ECS field table: %w", err)
	}
	for name, f := range c.ECS {
		switch f.Type {
		case "object", "flattened", "nested":
		default:
			c.ecsLeaves[name] = true
		}
	}
	var err error
	if c.events, err = compile(event.JSONSchemaID, event.JSONSchema()); err != nil {
		return nil, err
	}
	if c.registry, err = compile("urn:auditns:schema:namespace-1", []byte(serial.JSONSchema)); err != nil {
		return nil, err
	}
	return c, nil
}

func compile(id string, schema []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	if err := comp.AddResource(id, doc); err != nil {
		return nil, err
	}
	return comp.Compile(id)
}

// Event returns what is wrong with the event doc (nil: nothing).
func (c *Checker) Event(doc []byte) []string {
	var v []string
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	if err := c.events.Validate(inst); err != nil {
		v = append(v, "JSON Schema: "+oneLine(err))
	}
	return append(v, c.ECSViolations(doc)...)
}

// Record returns what is wrong with the registry record doc.
func (c *Checker) Record(doc []byte) []string {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	if err := c.registry.Validate(inst); err != nil {
		return []string{"JSON Schema: " + oneLine(err)}
	}
	return nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(fmt.Sprintf("%v", err)), " ") }

// ECSViolations checks every field of doc against ECS's table.
func (c *Checker) ECSViolations(doc []byte) []string {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var root map[string]any
	if err := d.Decode(&root); err != nil {
		return []string{"not a JSON object: " + err.Error()}
	}
	var v []string
	for _, leaf := range Leaves(root) {
		v = append(v, c.checkField(leaf.Path, leaf.Value)...)
	}
	return v
}

// Leaf is a field of a document and its value: a scalar, or an array of
// scalars.
type Leaf struct {
	Path  string
	Value any
}

// Leaves are the fields of the decoded object m, sorted by path; an
// array of objects (auditd.paths) contributes the fields of each object
// under its own path.
func Leaves(m map[string]any) []Leaf {
	var out []Leaf
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out = append(out, Leaf{path, x})
			}
			for k, y := range x {
				walk(path+"."+k, y)
			}
		case []any:
			objects := false
			for _, y := range x {
				if o, ok := y.(map[string]any); ok {
					objects = true
					walk(path, o)
				}
			}
			if !objects {
				out = append(out, Leaf{path, x})
			}
		default:
			out = append(out, Leaf{path, x})
		}
	}
	for k, v := range m {
		walk(k, v)
	}
	for i := range out {
		out[i].Path = strings.TrimPrefix(out[i].Path, ".")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Own reports whether path is under one of OwnRoots.
func Own(path string) bool {
	for _, r := range OwnRoots {
		if path == r || strings.HasPrefix(path, r+".") {
			return true
		}
	}
	return false
}

func (c *Checker) checkField(path string, val any) []string {
	f, ok := c.ECS[path]
	if !ok {
		if !Own(path) {
			return []string{path + ": not an ECS field, and not under " + strings.Join(OwnRoots, " or ")}
		}
		for p := path; strings.Contains(p, "."); {
			p = p[:strings.LastIndexByte(p, '.')]
			if c.ecsLeaves[p] {
				return []string{path + ": inside ECS field " + p}
			}
		}
		return nil
	}
	vals := []any{val}
	if a, ok := val.([]any); ok {
		vals = a
	}
	var v []string
	allowed := f.Allowed()
	for _, x := range vals {
		if msg := typeError(f.Type, x); msg != "" {
			v = append(v, fmt.Sprintf("%s: %s, ECS type %s", path, msg, f.Type))
			continue
		}
		if s, ok := x.(string); ok && len(allowed) > 0 && !slices.Contains(allowed, s) {
			v = append(v, fmt.Sprintf("%s: %q is not one of ECS's %v", path, s, allowed))
		}
	}
	return v
}

// typeError says why x cannot be a value of an ECS field of type typ.
func typeError(typ string, x any) string {
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		if _, ok := x.(string); !ok {
			return fmt.Sprintf("%v is not a string", x)
		}
	case "long", "integer", "short", "byte", "unsigned_long":
		n, ok := x.(json.Number)
		if !ok {
			return fmt.Sprintf("%v is not a number", x)
		}
		if _, err := n.Int64(); err != nil {
			return fmt.Sprintf("%v is not an integer", x)
		}
	case "float", "double", "scaled_float", "half_float":
		if _, ok := x.(json.Number); !ok {
			return fmt.Sprintf("%v is not a number", x)
		}
	case "boolean":
		if _, ok := x.(bool); !ok {
			return fmt.Sprintf("%v is not a boolean", x)
		}
	case "date":
		s, ok := x.(string)
		if !ok {
			return fmt.Sprintf("%v is not a date string", x)
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Sprintf("%q is not an RFC 3339 date", s)
		}
	case "ip":
		s, ok := x.(string)
		if !ok {
			return fmt.Sprintf("%v is not a string", x)
		}
		if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
			return fmt.Sprintf("%q is not an IP address", s)
		}
	case "object", "flattened", "nested":
		if _, ok := x.(map[string]any); !ok {
			return fmt.Sprintf("%v is not an object", x)
		}
	case "geo_point":
	default:
		return "unknown ECS type"
	}
	return ""
}

// Lines checks each line of jsonl, an event per line, and returns how
// many events there were and what is wrong, each prefixed with its line
// number.
func (c *Checker) Lines(jsonl []byte) (n int, violations []string) {
	for i, line := range bytes.Split(jsonl, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n++
		for _, v := range c.Event(line) {
			violations = append(violations, fmt.Sprintf("line %d: %s", i+1, v))
		}
	}
	return n, violations
}
