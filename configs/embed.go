// Package configs holds the files auditns ships as its defaults: the
// documented configuration and the default audit rules, embedded so that
// `auditns run` works with no files installed.
package configs

import _ "embed"

// DefaultRules is audit.rules, loaded when audit.rules_file is not set.
//
//go:embed audit.rules
var DefaultRules string

// ExampleConfig is auditns.yaml: every key with its default.
//
//go:embed auditns.yaml
var ExampleConfig string
