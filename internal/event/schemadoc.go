package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The schema documents are generated from EventFields (TestSchemaDocs holds
// docs to them; go test ./internal/event -run TestSchemaDocs -update
// rewrites them).

// requiredObjects are the objects present whenever their parent is.
var requiredObjects = map[string]bool{
	"ecs": true, "agent": true, "event": true, "host": true, "host.boot": true, "host.os": true,
	"auditns": true, "process.tty.char_device": true,
}

// node is an object of the schema: its members by name, in Fields' order.
type node struct {
	names    []string
	children map[string]*node
	field    *Field // a leaf (or an open object)
}

func fieldTree() *node {
	root := &node{children: map[string]*node{}}
	for i := range EventFields {
		f := &EventFields[i]
		n := root
		parts := strings.Split(f.Name, ".")
		for j, p := range parts {
			c, ok := n.children[p]
			if !ok {
				c = &node{children: map[string]*node{}}
				n.children[p] = c
				n.names = append(n.names, p)
			}
			if j == len(parts)-1 {
				c.field = f
			}
			n = c
		}
	}
	return root
}

// ordered is a JSON object that keeps its members' order.
type ordered []member

type member struct {
	k string
	v any
}

func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func indent(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		panic(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// JSONSchemaID is the $id of the JSON Schema of events.
const JSONSchemaID = "urn:auditns:schema:event-2"

// JSONSchema returns the JSON Schema (draft 2020-12) of auditns.event/2:
// every object closed (a member the schema does not list is an error)
// but auditd.data and the items of auditd.paths.
func JSONSchema() []byte {
	var obj func(path string, n *node) ordered
	leaf := func(f *Field) ordered {
		var s ordered
		switch f.Type {
		case "keyword", "match_only_text":
			s = ordered{{"type", "string"}}
		case "long":
			s = ordered{{"type", "integer"}}
		case "boolean":
			s = ordered{{"type", "boolean"}}
		case "date":
			s = ordered{{"type", "string"}, {"format", "date-time"}}
		case "ip":
			s = ordered{{"type", "string"}, {"anyOf", []ordered{{{"format", "ipv4"}}, {{"format", "ipv6"}}}}}
		case "object":
			s = ordered{{"type", "object"}, {"additionalProperties", ordered{{"type", "string"}}}}
		default:
			panic("event: no JSON Schema type for " + f.Type)
		}
		if len(f.Values) > 0 {
			s = append(s, member{"enum", f.Values})
		}
		if f.Array {
			s = ordered{{"type", "array"}, {"items", s}}
		}
		return append(ordered{{"description", f.Doc}}, s...)
	}
	obj = func(path string, n *node) ordered {
		var props ordered
		var req []string
		for _, name := range n.names {
			c := n.children[name]
			p := name
			if path != "" {
				p = path + "." + name
			}
			if c.field != nil {
				props = append(props, member{name, leaf(c.field)})
				if c.field.Required {
					req = append(req, name)
				}
				continue
			}
			props = append(props, member{name, obj(p, c)})
			if requiredObjects[p] {
				req = append(req, name)
			}
		}
		s := ordered{{"type", "object"}, {"properties", props}}
		if len(req) > 0 {
			s = append(s, member{"required", req})
		}
		return append(s, member{"additionalProperties", false})
	}
	root := obj("", fieldTree())
	return indent(append(ordered{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"$id", JSONSchemaID},
		{"title", Schema},
		{"description", "An auditns audit event: an Elastic Common Schema " + ECSVersion + " document. Generated from the encoder's field table (internal/event/fields.go)."},
	}, root...))
}

// IndexTemplate returns a composable index template (PUT
// _index_template/auditns) for indices auditns-*: ECS's mappings of the
// ECS fields auditns writes and auditns's own fields. For OpenSearch,
// which has no match_only_text, message is text.
//
// The records' own fields (auditd.data, auditd.paths) are one field each,
// searchable by key (auditd.data.op:login): Elasticsearch's flattened,
// OpenSearch's flat_object. Mapped as objects, their keys, which the
// kernel and user space choose, would become fields: a key with a dot, or
// one that is also the prefix of another, would make the index reject
// the document.
func IndexTemplate(opensearch bool) []byte {
	var props func(n *node) ordered
	props = func(n *node) ordered {
		var p ordered
		for _, name := range n.names {
			c := n.children[name]
			if c.field == nil {
				p = append(p, member{name, ordered{{"properties", props(c)}}})
				continue
			}
			p = append(p, member{name, mapping(c.field, opensearch)})
		}
		return p
	}
	return indent(ordered{
		{"index_patterns", []string{"auditns-*"}},
		{"priority", 200},
		{"_meta", ordered{{"description", "auditns audit events (" + Schema + "), ECS " + ECSVersion}, {"ecs_version", ECSVersion}}},
		{"template", ordered{
			{"settings", ordered{{"index", ordered{{"mapping", ordered{{"total_fields", ordered{{"limit", 2000}}}}}}}}},
			{"mappings", ordered{
				// A field the template does not list is kept in
				// _source, not indexed.
				{"dynamic", false},
				{"properties", props(fieldTree())},
			}},
		}},
	})
}

// mapping is f's mapping.
func mapping(f *Field, opensearch bool) ordered {
	switch {
	case f.Name == "event.original":
		// As ECS: kept, not searchable.
		return ordered{{"type", "keyword"}, {"index", false}, {"doc_values", false}}
	case f.Type == "keyword":
		return ordered{{"type", "keyword"}, {"ignore_above", 1024}}
	case f.Type == "match_only_text" && opensearch:
		return ordered{{"type", "text"}}
	case f.Type == "object" && opensearch:
		return ordered{{"type", "flat_object"}}
	case f.Type == "object":
		return ordered{{"type", "flattened"}}
	}
	return ordered{{"type", f.Type}}
}

// FieldsMarkdown returns the field table of docs/SCHEMA.md.
func FieldsMarkdown() []byte {
	var b bytes.Buffer
	b.WriteString("| Field | Type | Owner | Description |\n|---|---|---|---|\n")
	for _, f := range EventFields {
		typ := f.Type
		if f.Array {
			typ += "[]"
		}
		owner := "auditns"
		if f.ECS {
			owner = "ECS"
		} else if strings.HasPrefix(f.Name, "auditd.") {
			owner = "auditd (as Auditbeat)"
		}
		doc := f.Doc
		if f.Required {
			doc += " Always present" + map[bool]string{true: ".", false: " in its object."}[!strings.Contains(f.Name, ".") || requiredObjects[f.Name[:strings.LastIndexByte(f.Name, '.')]]]
		}
		if len(f.Values) > 0 {
			doc += " Values: " + strings.Join(f.Values, ", ") + "."
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Name, typ, owner, strings.ReplaceAll(doc, "|", `\|`))
	}
	return b.Bytes()
}
