package kafkaauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The error cases, the warnings and the redaction are tested through the
// Kafka sink's options in internal/publish (kafka_config_test.go) and
// against a broker with SASL and TLS (kafka_secure_test.go); here: the
// zero settings, and a nil logger.

func TestZeroIsOff(t *testing.T) {
	cfg, err := TLS{}.Build(nil)
	if cfg != nil || err != nil {
		t.Fatalf("TLS{}: %v %v, want nil, nil", cfg, err)
	}
	m, s, err := SASL{Mechanism: " None "}.Build(nil, false)
	if m != nil || err != nil || s.Mechanism != "" {
		t.Fatalf("SASL{none}: %v %+v %v, want nil", m, s, err)
	}
}

// A nil logger drops the warnings: insecure TLS, plain in clear text, a
// password file readable by others.
func TestNilLogger(t *testing.T) {
	cfg, err := TLS{Enabled: true, InsecureSkipVerify: true}.Build(nil)
	if err != nil || cfg == nil || !cfg.InsecureSkipVerify {
		t.Fatalf("insecure TLS: %+v %v", cfg, err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cr3t\r\n"), 0o644)
	m, s, err := SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: pw}.Build(nil, false)
	if err != nil || m == nil || m.Name() != "PLAIN" || s.Mechanism != "plain" || s.Password != "s3cr3t" {
		t.Fatalf("plain from file: %v %v %v", m, s, err)
	}
	if strings.Contains(s.String(), "s3cr3t") {
		t.Fatalf("String shows the password: %s", s)
	}
}
