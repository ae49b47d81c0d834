package event

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update", false, "rewrite the schema documents in docs/ from EventFields")

// leafPaths adds the dotted paths of the fields of the JSON value v to
// seen; the members of open objects (auditd.data, auditd.paths' items)
// count as the object.
func leafPaths(prefix string, v any, open map[string]bool, seen map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		if open[prefix] {
			seen[prefix] = true
			return
		}
		for k, y := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			leafPaths(p, y, open, seen)
		}
	case []any:
		scalar := true
		for _, y := range x {
			if _, ok := y.(map[string]any); ok {
				scalar = false
				leafPaths(prefix, y, open, seen)
			}
		}
		if scalar {
			seen[prefix] = true
		}
	default:
		seen[prefix] = true
	}
}

// Every field the encoder writes is in EventFields (a field added to the
// encoder and not to the table fails here), and every field of the table
// is one the encoder writes.
func TestEncoderWritesEventFields(t *testing.T) {
	known, open := map[string]bool{}, map[string]bool{}
	for _, f := range EventFields {
		if known[f.Name] {
			t.Errorf("%s twice in EventFields", f.Name)
		}
		known[f.Name] = true
		if f.Type == "object" {
			open[f.Name] = true
		}
	}
	seen := map[string]bool{}
	r := rand.New(rand.NewPCG(5, 6))
	defer agentJSON.Store(nil)
	for i := 0; i < 5000; i++ {
		if i == 2500 {
			SetAgent(Agent{Version: "1.2.3", ID: "0d5e3d2c-1f43-8b1a-9c55-5d2a6f0e4b7c"})
		}
		e := randomEvent(r)
		b := e.AppendJSON(nil)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		leafPaths("", v, open, seen)
	}
	var extra, missing []string
	for p := range seen {
		if !known[p] {
			extra = append(extra, p)
		}
	}
	for p := range known {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	if len(extra) > 0 {
		t.Errorf("the encoder writes fields EventFields does not have: %v", extra)
	}
	if len(missing) > 0 {
		t.Errorf("EventFields has fields the encoder never wrote: %v", missing)
	}
}

// The schema documents in docs are generated from EventFields (go test
// -run TestSchemaDocs -update rewrites them).
func TestSchemaDocs(t *testing.T) {
	docs := filepath.Join("..", "..", "docs")
	files := map[string][]byte{
		filepath.Join(docs, "schema", "auditns.event-2.schema.json"):    JSONSchema(),
		filepath.Join(docs, "schema", "index-template.json"):            IndexTemplate(false),
		filepath.Join(docs, "schema", "index-template-opensearch.json"): IndexTemplate(true),
	}
	for path, want := range files {
		check(t, path, want, nil)
	}
	// docs/SCHEMA.md is prose around the generated table.
	md := filepath.Join(docs, "SCHEMA.md")
	check(t, md, FieldsMarkdown(), func(file []byte) (before, section, after []byte) {
		const begin, end = "<!-- fields: generated from internal/event/fields.go -->\n", "<!-- fields end -->\n"
		i, j := bytes.Index(file, []byte(begin)), bytes.Index(file, []byte(end))
		if i < 0 || j < i {
			t.Fatalf("%s: no %q ... %q section", md, strings.TrimSpace(begin), strings.TrimSpace(end))
		}
		return file[:i+len(begin)], file[i+len(begin) : j], file[j:]
	})
}

// check holds the file at path (or the section of it split returns) to
// want, or rewrites it with -update.
func check(t *testing.T, path string, want []byte, split func([]byte) (before, section, after []byte)) {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil && !(*updateDocs && os.IsNotExist(err) && split == nil) {
		t.Fatal(err)
	}
	got := file
	var before, after []byte
	if split != nil {
		before, got, after = split(file)
	}
	if bytes.Equal(got, want) {
		return
	}
	if !*updateDocs {
		t.Errorf("%s is not what EventFields generates (go test ./internal/event -run TestSchemaDocs -update)", path)
		return
	}
	out := append(append(append([]byte(nil), before...), want...), after...)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
