package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Unknown commands and flags and wrong argument counts are bad input
// (exit 2) by their type, whatever cobra's wording.
func TestUsageErrorsAreTyped(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "auditns"`},
		{[]string{"config", "bogus"}, `unknown command "bogus" for "auditns config"`},
		{[]string{"convert", "a.log", "b.log"}, "accepts at most 1 arg(s)"},
		{[]string{"tail", "extra"}, `unknown command "extra" for "auditns tail"`},
		{[]string{"run", "--nope"}, "unknown flag: --nope"},
		{[]string{"replay", "--window", "soon"}, `invalid argument "soon" for "--window"`},
	} {
		root := newRootCmd()
		root.SetArgs(tc.args)
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want a usageError containing %q", tc.args, err, tc.want)
		}
	}
	// Bare, a command that only groups subcommands prints its help.
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs([]string{"config"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "Available Commands:") {
		t.Fatalf("auditns config: err %v, output %q", err, out.String())
	}
}
