// Package filter selects auditns events (auditns.event/2 and /1) for `auditns tail` and
// `auditns replay` (SPEC section 6). It has one job: turn the filter flags
// into a predicate on event.Event.
//
// Semantics: each flag may be given several times (or, except --exe, as a
// comma-separated list); the values of one flag are alternatives (OR) and different flags
// must all match (AND). An event that lacks the field a flag tests does not
// match it. Events of kind "loss" always pass: they say that events may be
// missing, which matters whatever one is looking for.
package filter

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/auditns/auditns/internal/event"
)

// Spec holds the raw flag values. AddFlags fills it from a flag set.
type Spec struct {
	NS        []string // SERIAL | BOOT_ID/SERIAL | TYPE:SERIAL | TYPE:BOOT_ID/SERIAL
	Container []string // container id or a prefix of it
	PID       []string
	UID       []string // real or effective uid (number or name)
	AUID      []string // login uid (number, name, or "unset")
	Exe       []string // path.Match glob on process.executable
	Key       []string // audit rule key (tags)
	Syscall   []string // name or number
	Type      []string // event.type: SYSCALL, USER_LOGIN, ...
}

// AddFlags registers the filter flags on fs and returns the Spec they fill.
func AddFlags(fs *pflag.FlagSet) *Spec {
	s := &Spec{}
	fs.StringArrayVar(&s.NS, "ns", nil, "namespace: SERIAL, BOOT_ID/SERIAL or TYPE:SERIAL (e.g. net:13); any type unless TYPE is given")
	fs.StringArrayVar(&s.Container, "container", nil, "container id (a prefix is enough)")
	fs.StringArrayVar(&s.PID, "pid", nil, "process id (process.pid)")
	fs.StringArrayVar(&s.UID, "uid", nil, "real or effective user id or name")
	fs.StringArrayVar(&s.AUID, "auid", nil, "login (audit) user id or name; \"unset\" for none")
	fs.StringArrayVar(&s.Exe, "exe", nil, "executable glob (path.Match); without a '/' it matches the base name")
	fs.StringArrayVar(&s.Key, "key", nil, "audit rule key (event tags)")
	fs.StringArrayVar(&s.Syscall, "syscall", nil, "syscall name or number")
	fs.StringArrayVar(&s.Type, "type", nil, "record type of the event, e.g. SYSCALL, USER_LOGIN")
	return s
}

// Filter is a compiled Spec. The zero Filter (and a nil *Filter) matches
// every event.
type Filter struct {
	preds []func(*event.Event) bool
}

// unsetAUID is the login uid of a process that never logged in.
const unsetAUID = "4294967295"

// Build checks the values and compiles them. Errors name the flag and what
// was expected, on one line.
func (s *Spec) Build() (*Filter, error) {
	f := &Filter{}
	if s == nil {
		return f, nil
	}
	add := func(flag string, vals []string, parse func(string) (func(*event.Event) bool, error)) error {
		if flag != "exe" { // a path may contain a comma
			var split []string
			for _, v := range vals {
				split = append(split, strings.Split(v, ",")...)
			}
			vals = split
		}
		var alts []func(*event.Event) bool
		for _, v := range vals {
			v = strings.TrimSpace(v)
			if v == "" {
				return fmt.Errorf("--%s: expected a value, got an empty one", flag)
			}
			p, err := parse(v)
			if err != nil {
				return fmt.Errorf("--%s %q: %v", flag, v, err)
			}
			alts = append(alts, p)
		}
		switch len(alts) {
		case 0:
		case 1:
			f.preds = append(f.preds, alts[0])
		default:
			f.preds = append(f.preds, func(e *event.Event) bool {
				for _, p := range alts {
					if p(e) {
						return true
					}
				}
				return false
			})
		}
		return nil
	}
	for _, x := range []struct {
		flag  string
		vals  []string
		parse func(string) (func(*event.Event) bool, error)
	}{
		{"ns", s.NS, parseNS},
		{"container", s.Container, parseContainer},
		{"pid", s.PID, parsePID},
		{"uid", s.UID, parseUID},
		{"auid", s.AUID, parseAUID},
		{"exe", s.Exe, parseExe},
		{"key", s.Key, func(v string) (func(*event.Event) bool, error) {
			return func(e *event.Event) bool {
				for _, t := range e.Tags {
					if t == v {
						return true
					}
				}
				return false
			}, nil
		}},
		{"syscall", s.Syscall, parseSyscall},
		{"type", s.Type, func(v string) (func(*event.Event) bool, error) {
			return func(e *event.Event) bool { return strings.EqualFold(e.MessageType(), v) }, nil
		}},
	} {
		if err := add(x.flag, x.vals, x.parse); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Empty reports whether f matches everything.
func (f *Filter) Empty() bool { return f == nil || len(f.preds) == 0 }

// Match reports whether e passes every filter.
func (f *Filter) Match(e *event.Event) bool {
	if f == nil || e.Event.Kind == event.KindLoss {
		return true
	}
	for _, p := range f.preds {
		if !p(e) {
			return false
		}
	}
	return true
}

func typeIndex(t string) int {
	for i, n := range event.NSTypes {
		if n == t {
			return i
		}
	}
	return -1
}

// parseNS accepts SERIAL, BOOT_ID/SERIAL, TYPE:SERIAL and
// TYPE:BOOT_ID/SERIAL.
func parseNS(v string) (func(*event.Event) bool, error) {
	typ := -1
	if t, rest, ok := strings.Cut(v, ":"); ok {
		typ = typeIndex(strings.ToLower(t))
		if typ < 0 {
			return nil, fmt.Errorf("unknown namespace type %q (expected one of %s)", t, strings.Join(event.NSTypes[:], ", "))
		}
		v = rest
	}
	boot := ""
	if i := strings.LastIndexByte(v, '/'); i >= 0 {
		boot, v = v[:i], v[i+1:]
		if boot == "" {
			return nil, errors.New("expected BOOT_ID/SERIAL with a boot id before the '/'")
		}
	}
	serial, err := strconv.ParseUint(v, 10, 64)
	if err != nil || serial == 0 {
		return nil, errors.New("expected SERIAL, BOOT_ID/SERIAL or TYPE:SERIAL with a serial >= 1 (e.g. 13, net:13)")
	}
	return func(e *event.Event) bool {
		if e.NS == nil || (boot != "" && !strings.EqualFold(e.Host.Boot.ID, boot)) {
			return false
		}
		if typ >= 0 {
			return e.NS.At(typ).Serial == serial
		}
		for i := range event.NSTypes {
			if e.NS.At(i).Serial == serial {
				return true
			}
		}
		return false
	}, nil
}

func parseContainer(v string) (func(*event.Event) bool, error) {
	v = strings.ToLower(v)
	return func(e *event.Event) bool {
		return e.Container != nil && strings.HasPrefix(strings.ToLower(e.Container.ID), v)
	}, nil
}

func parsePID(v string) (func(*event.Event) bool, error) {
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 0 {
		return nil, errors.New("expected a process id >= 1")
	}
	return func(e *event.Event) bool { return e.Process != nil && e.Process.PID == pid }, nil
}

// idMatch matches an Entity-like id/name pair against a number or a name.
func idMatch(v string) func(id, name string) bool {
	if _, err := strconv.ParseUint(v, 10, 32); err == nil {
		return func(id, _ string) bool { return id == v }
	}
	return func(_, name string) bool { return name == v }
}

func parseUID(v string) (func(*event.Event) bool, error) {
	m := idMatch(v)
	return func(e *event.Event) bool {
		u := e.User
		if u == nil {
			return false
		}
		if (u.ID != "" || u.Name != "") && m(u.ID, u.Name) {
			return true
		}
		return u.Effective != nil && m(u.Effective.ID, u.Effective.Name)
	}, nil
}

func parseAUID(v string) (func(*event.Event) bool, error) {
	if strings.EqualFold(v, "unset") || v == "-1" {
		v = unsetAUID
	}
	m := idMatch(v)
	return func(e *event.Event) bool {
		return e.User != nil && e.User.Audit != nil && m(e.User.Audit.ID, e.User.Audit.Name)
	}, nil
}

func parseExe(v string) (func(*event.Event) bool, error) {
	if _, err := path.Match(v, ""); err != nil {
		return nil, fmt.Errorf("expected a glob (path.Match syntax): %v", err)
	}
	base := !strings.Contains(v, "/")
	return func(e *event.Event) bool {
		if e.Process == nil || e.Process.Executable == "" {
			return false
		}
		exe := e.Process.Executable
		if base {
			exe = path.Base(exe)
		}
		ok, _ := path.Match(v, exe)
		return ok
	}, nil
}

func parseSyscall(v string) (func(*event.Event) bool, error) {
	if nr, err := strconv.Atoi(v); err == nil {
		if nr < 0 {
			return nil, errors.New("expected a syscall name or a number >= 0")
		}
		return func(e *event.Event) bool { return e.Syscall != nil && e.Syscall.Nr == nr }, nil
	}
	return func(e *event.Event) bool { return e.Syscall != nil && strings.EqualFold(e.Syscall.Name, v) }, nil
}
