package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/auditns/auditns/internal/buildinfo"
)

func TestBuildInfoMetric(t *testing.T) {
	rec := httptest.NewRecorder()
	New(Source{}).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	b := buildinfo.Get()
	want := `auditns_build_info{commit="` + b.ShortCommit() + `",go_version="` + b.GoVersion + `",version="` + b.Version + `"} 1`
	if !strings.Contains(string(body), want+"\n") {
		t.Fatalf("scrape lacks %s:\n%s", want, body)
	}
}
