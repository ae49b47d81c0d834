package netlink

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/elastic/go-libaudit/v2/rule"
	"github.com/elastic/go-libaudit/v2/rule/flags"
)

// Rule is one audit rule, parsed and built into the kernel's wire format.
type Rule struct {
	// Text is the rule as written, in auditctl syntax.
	Text string
	// Source is where it came from, "FILE:LINE".
	Source string
	wire   []byte
}

// ControlLine is a line of an audit.rules file that sets a kernel option
// (-b, -f, -r, -e, --backlog_wait_time) or deletes rules (-D) rather than
// adding a rule. auditns takes kernel settings from its own configuration,
// so such lines are reported, not applied.
type ControlLine struct {
	Text, Source string
}

// ParseRulesFile reads rules in auditctl syntax from path.
func ParseRulesFile(path string) ([]Rule, []ControlLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("rules file: %w", err)
	}
	defer f.Close()
	return ParseRules(f, path)
}

// ParseRules reads rules in auditctl syntax, one per line; blank lines and
// lines starting with # are ignored. Errors name the source and line.
func ParseRules(r io.Reader, source string) ([]Rule, []ControlLine, error) {
	var rules []Rule
	var control []ControlLine
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", source, n)
		fields := strings.Fields(line)
		switch fields[0] {
		case "-D", "-b", "-f", "-r", "-e", "--backlog_wait_time", "--loginuid-immutable", "--reset-lost", "-c", "-i":
			control = append(control, ControlLine{Text: line, Source: where})
			continue
		}
		rl, err := BuildRule(line)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		rl.Source = where
		rules = append(rules, rl)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", source, err)
	}
	return rules, control, nil
}

// BuildRule parses one rule in auditctl syntax (-a, -A or -w).
func BuildRule(text string) (Rule, error) {
	r, err := flags.Parse(text)
	if err != nil {
		return Rule{}, fmt.Errorf("invalid rule %q: %w", text, err)
	}
	if r.TypeOf() == rule.DeleteAllRuleType {
		return Rule{}, fmt.Errorf("invalid rule %q: -D is not a rule", text)
	}
	wire, err := rule.Build(r)
	if err != nil {
		return Rule{}, fmt.Errorf("invalid rule %q: %w", text, err)
	}
	return Rule{Text: text, wire: wire}, nil
}

// SelfRuleKey marks the rules that exclude auditns's own syscalls. They
// name auditns's pid, so after a crash (kill -9) they would stay loaded,
// naming a dead pid, and no later rule would be equal to them: a new
// unicast instance removes every rule with this key before adding its own.
const SelfRuleKey = "auditns-self"

// selfExclusionRules keep the kernel from auditing auditns's own syscalls
// (its reads of /proc and writes to sinks would otherwise feed back into
// the stream, one event per event at worst).
func selfExclusionRules(pid int) ([]Rule, error) {
	var out []Rule
	for _, arch := range []string{"b64", "b32"} {
		text := fmt.Sprintf("-a never,exit -F arch=%s -S all -F pid=%d -F key=%s", arch, pid, SelfRuleKey)
		r, err := BuildRule(text)
		if err != nil {
			if arch == "b32" {
				continue // no 32-bit syscall table on this architecture
			}
			return nil, err
		}
		r.Source = "auditns (exclude itself)"
		out = append(out, r)
	}
	return out, nil
}
