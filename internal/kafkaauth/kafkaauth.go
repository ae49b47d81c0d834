// Package kafkaauth turns the kafka.tls.* and kafka.sasl.* settings into
// what kafka-go needs to connect to the brokers: a *tls.Config and a
// sasl.Mechanism. The daemon's Kafka sink (internal/publish) and the readers
// of tail and replay (internal/consume) both build them here, so that they
// accept and refuse the same settings, with the same one-line errors naming
// the key, and never print a password.
package kafkaauth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// TLS configures TLS to the brokers (kafka.tls.*).
type TLS struct {
	// Enabled turns TLS on (kafka.tls.enabled). Default false. The other
	// TLS fields are an error while it is off, so that a half-done TLS
	// configuration never silently runs in clear text.
	Enabled bool
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates
	// (kafka.tls.ca_file). Default: the system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key for
	// mutual TLS (kafka.tls.cert_file, kafka.tls.key_file). Both or
	// neither.
	CertFile string
	KeyFile  string
	// ServerName is the name verified in the brokers' certificates
	// (kafka.tls.server_name). Default: each broker's host name.
	ServerName string
	// InsecureSkipVerify turns certificate verification off
	// (kafka.tls.insecure_skip_verify). Default false; logged as a warning
	// when true. For tests only.
	InsecureSkipVerify bool
}

// SASL configures SASL authentication (kafka.sasl.*). Its password is
// never logged or printed: String, GoString, LogValue and MarshalJSON
// redact it.
type SASL struct {
	// Mechanism is "" (no SASL), "plain", "scram-sha-256" or
	// "scram-sha-512" (kafka.sasl.mechanism; case-insensitive).
	Mechanism string
	// Username (kafka.sasl.username). Required with a mechanism.
	Username string
	// Password (kafka.sasl.password, or the environment variable
	// AUDITNS_KAFKA_SASL_PASSWORD through the config). Exactly one of
	// Password and PasswordFile is required with a mechanism.
	Password string
	// PasswordFile is a file whose content (one trailing newline removed)
	// is the password (kafka.sasl.password_file). A file readable by group
	// or others gets a warning.
	PasswordFile string
}

// String describes s without the password.
func (s SASL) String() string {
	if s.Mechanism == "" {
		return "sasl=none"
	}
	pw := "unset"
	switch {
	case s.Password != "":
		pw = "[redacted]"
	case s.PasswordFile != "":
		pw = "file:" + s.PasswordFile
	}
	return fmt.Sprintf("sasl=%s user=%q password=%s", s.Mechanism, s.Username, pw)
}

// GoString is String, so that %#v does not print the password either.
func (s SASL) GoString() string { return s.String() }

// LogValue keeps the password out of slog output.
func (s SASL) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps the password out of JSON (a JSON log handler marshals
// nested structs).
func (s SASL) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// keyErr is a one-line configuration error naming the key.
func keyErr(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// discard is the logger of a nil log.
var discard = slog.New(slog.DiscardHandler)

// Build returns the tls.Config, or nil when TLS is off. Errors are one line
// and name the key. log receives the warning about InsecureSkipVerify; nil
// discards it.
func (t TLS) Build(log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = discard
	}
	if !t.Enabled {
		for _, f := range []struct{ key, val string }{
			{"kafka.tls.ca_file", t.CAFile},
			{"kafka.tls.cert_file", t.CertFile},
			{"kafka.tls.key_file", t.KeyFile},
			{"kafka.tls.server_name", t.ServerName},
		} {
			if f.val != "" {
				return nil, keyErr(f.key, "set but kafka.tls.enabled is false")
			}
		}
		if t.InsecureSkipVerify {
			return nil, keyErr("kafka.tls.insecure_skip_verify", "set but kafka.tls.enabled is false")
		}
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, warned about
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, keyErr("kafka.tls.ca_file", "%v", unwrapPathError(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, keyErr("kafka.tls.ca_file", "no PEM certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, keyErr("kafka.tls.key_file", "required with kafka.tls.cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		return nil, keyErr("kafka.tls.cert_file", "required with kafka.tls.key_file")
	case t.CertFile != "":
		if _, err := os.Stat(t.CertFile); err != nil {
			return nil, keyErr("kafka.tls.cert_file", "%v", unwrapPathError(err))
		}
		if _, err := os.Stat(t.KeyFile); err != nil {
			return nil, keyErr("kafka.tls.key_file", "%v", unwrapPathError(err))
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error names no file and never contains key material.
			return nil, keyErr("kafka.tls.cert_file", "with kafka.tls.key_file %s: %v", t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.InsecureSkipVerify {
		log.Warn("kafka: kafka.tls.insecure_skip_verify is true: broker certificates are NOT verified")
	}
	return cfg, nil
}

// unwrapPathError keeps "open /x: no such file or directory" on one line.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// Build returns the SASL mechanism (nil when off) and s with its mechanism
// lower-cased and the password read from PasswordFile. Errors are one line,
// name the key and never contain the password. tlsOn says whether the
// connection is encrypted (kafka.tls.enabled). log receives warnings (a
// password file readable by others, plain in clear text), never a secret;
// nil discards them.
func (s SASL) Build(log *slog.Logger, tlsOn bool) (sasl.Mechanism, SASL, error) {
	if log == nil {
		log = discard
	}
	s.Mechanism = strings.ToLower(strings.TrimSpace(s.Mechanism))
	if s.Mechanism == "" || s.Mechanism == "none" {
		s.Mechanism = ""
		for _, f := range []struct{ key, val string }{
			{"kafka.sasl.username", s.Username},
			{"kafka.sasl.password", s.Password},
			{"kafka.sasl.password_file", s.PasswordFile},
		} {
			if f.val != "" {
				return nil, s, keyErr(f.key, "set but kafka.sasl.mechanism is empty (expected plain, scram-sha-256 or scram-sha-512)")
			}
		}
		return nil, s, nil
	}
	switch s.Mechanism {
	case "plain", "scram-sha-256", "scram-sha-512":
	default:
		return nil, s, keyErr("kafka.sasl.mechanism", "expected plain, scram-sha-256 or scram-sha-512, got %q", s.Mechanism)
	}
	if s.Username == "" {
		return nil, s, keyErr("kafka.sasl.username", "required with kafka.sasl.mechanism=%s", s.Mechanism)
	}
	switch {
	case s.Password != "" && s.PasswordFile != "":
		return nil, s, keyErr("kafka.sasl.password_file", "set together with kafka.sasl.password: use one")
	case s.PasswordFile != "":
		fi, err := os.Stat(s.PasswordFile)
		if err != nil {
			return nil, s, keyErr("kafka.sasl.password_file", "%v", unwrapPathError(err))
		}
		if fi.Mode().Perm()&0o077 != 0 {
			log.Warn("kafka: kafka.sasl.password_file is readable by group or others", "path", s.PasswordFile, "mode", fi.Mode().Perm().String())
		}
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, s, keyErr("kafka.sasl.password_file", "%v", unwrapPathError(err))
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return nil, s, keyErr("kafka.sasl.password_file", "%s is empty", s.PasswordFile)
		}
		s.Password = pw
	case s.Password == "":
		return nil, s, keyErr("kafka.sasl.password", "required with kafka.sasl.mechanism=%s (or kafka.sasl.password_file)", s.Mechanism)
	}
	if s.Mechanism == "plain" && !tlsOn {
		log.Warn("kafka: kafka.sasl.mechanism=plain without kafka.tls.enabled sends the password in clear text")
	}
	var m sasl.Mechanism
	switch s.Mechanism {
	case "plain":
		m = plain.Mechanism{Username: s.Username, Password: s.Password}
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if s.Mechanism == "scram-sha-512" {
			algo = scram.SHA512
		}
		var err error
		if m, err = scram.Mechanism(algo, s.Username, s.Password); err != nil {
			// SASLprep failures name neither the password nor its bytes.
			return nil, s, keyErr("kafka.sasl.password", "not usable with %s: %v", s.Mechanism, err)
		}
	}
	return m, s, nil
}
