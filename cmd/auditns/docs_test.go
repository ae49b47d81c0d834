package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/cobra/doc"
)

//go:generate go test -run TestGeneratedDocs -update-docs .

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/man and packaging/completion from the command definitions")

// manDate is the date the man pages carry, fixed so that generating them
// again changes nothing unless a command changed.
var manDate = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// generateDocs writes the man pages to manDir and the shell completions to
// complDir.
func generateDocs(t *testing.T, manDir, complDir string) {
	t.Helper()
	root := newRootCmd()
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{Title: "AUDITNS", Section: "1", Date: &manDate, Source: "auditns", Manual: "auditns manual"}
	for _, d := range []string{manDir, complDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := doc.GenManTree(root, hdr, manDir); err != nil {
		t.Fatal(err)
	}
	for name, gen := range map[string]func(*bytes.Buffer) error{
		"auditns.bash": func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) },
		"auditns.zsh":  func(b *bytes.Buffer) error { return root.GenZshCompletion(b) },
		"auditns.fish": func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) },
	} {
		var b bytes.Buffer
		if err := gen(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(complDir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The committed man pages and completions are what the command definitions
// generate (go generate ./cmd/auditns rewrites them).
func TestGeneratedDocs(t *testing.T) {
	manDir, complDir := filepath.Join("..", "..", "docs", "man", "man1"), filepath.Join("..", "..", "packaging", "completion")
	if *updateDocs {
		for _, d := range []string{manDir, complDir} {
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
		}
		generateDocs(t, manDir, complDir)
		return
	}
	tmp := t.TempDir()
	genMan, genCompl := filepath.Join(tmp, "man1"), filepath.Join(tmp, "completion")
	generateDocs(t, genMan, genCompl)
	for _, pair := range [][2]string{{genMan, manDir}, {genCompl, complDir}} {
		want, _ := filepath.Glob(filepath.Join(pair[0], "*"))
		have, _ := filepath.Glob(filepath.Join(pair[1], "*"))
		if len(want) != len(have) {
			t.Errorf("%s has %d files, the commands generate %d: run go generate ./cmd/auditns", pair[1], len(have), len(want))
		}
		for _, w := range want {
			gen, _ := os.ReadFile(w)
			committed, err := os.ReadFile(filepath.Join(pair[1], filepath.Base(w)))
			if err != nil || !bytes.Equal(gen, committed) {
				t.Errorf("%s is not what the commands generate: run go generate ./cmd/auditns", filepath.Join(pair[1], filepath.Base(w)))
			}
		}
	}
}
