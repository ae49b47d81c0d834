package daemon

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// agent.id is a UUID that depends on the machine id only, or on the host
// name where there is none.
func TestAgentID(t *testing.T) {
	dir := t.TempDir()
	mid := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(mid, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := agentID(mid, "web-1"), agentID(mid, "web-2")
	if a != b || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) {
		t.Fatalf("%q %q", a, b)
	}
	none := filepath.Join(dir, "none")
	if x, y := agentID(none, "web-1"), agentID(none, "web-2"); x == y || x == a {
		t.Fatalf("without a machine id: %q %q (%q)", x, y, a)
	}
}
