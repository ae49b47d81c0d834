package enrich

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/elastic/go-libaudit/v2/aucoalesce"
)

// go-libaudit's normalization tables (what an event's action, category,
// object and actor are), loaded by go-libaudit's own loader from a copy of
// its file: aucoalesce keeps its tables unexported.
//
//go:embed normalizations.yaml
var normalizationsYAML []byte

type normTables struct {
	syscalls map[string]*aucoalesce.Normalization
	records  map[string][]*aucoalesce.Normalization
	star     *aucoalesce.Normalization
	// targets are, per normalization, its ECS mappings that write
	// user.target (the only ECS user field auditns publishes), in order.
	targets map[*aucoalesce.Normalization][]targetMapping
}

// targetMapping is an ECS mapping to user.target. from names the summary
// field it reads (1-4: subject primary, subject secondary, object primary,
// object secondary); 0 is a data or uid reference, read by calling read on
// an aucoalesce.Event.
type targetMapping struct {
	from int
	read func(*aucoalesce.Event) string
}

var norms = sync.OnceValue(func() *normTables {
	syscalls, records, err := aucoalesce.LoadNormalizationConfig(normalizationsYAML)
	if err != nil {
		panic(fmt.Errorf("go-libaudit's normalizations: %w", err))
	}
	t := &normTables{syscalls: syscalls, records: records, star: syscalls["*"],
		targets: map[*aucoalesce.Normalization][]targetMapping{}}
	probe := func(n *aucoalesce.Normalization) {
		if _, done := t.targets[n]; done {
			return
		}
		var ms []targetMapping
		for _, m := range n.ECS.Mappings {
			if m.From == nil || m.To == nil {
				continue
			}
			var w aucoalesce.Event
			m.To(&w, "1")
			if w.ECS.User.Target.ID != "1" {
				continue
			}
			var r aucoalesce.Event
			r.Summary.Actor.Primary, r.Summary.Actor.Secondary = "\x00 1", "\x00 2"
			r.Summary.Object.Primary, r.Summary.Object.Secondary = "\x00 3", "\x00 4"
			tm := targetMapping{read: m.From}
			if v := m.From(&r); strings.HasPrefix(v, "\x00 ") {
				tm.from, _ = strconv.Atoi(v[2:])
			}
			ms = append(ms, tm)
		}
		t.targets[n] = ms
	}
	for _, n := range syscalls {
		probe(n)
	}
	for _, ns := range records {
		for _, n := range ns {
			probe(n)
		}
	}
	return t
})

// normFor returns the normalization go-libaudit applies to an event of
// record type typ (its name) whose data has the syscall named sys (when
// hasSys) and fields for which has reports true, and the syscall's own
// normalization.
func normFor(typ uint16, typeName string, sys string, hasSys bool, has func(string) bool) (norm, sysNorm *aucoalesce.Normalization) {
	t := norms()
	if hasSys {
		var ok bool
		if sysNorm, ok = t.syscalls[sys]; !ok {
			sysNorm = t.star
		}
	}
	if typ == typeSyscall {
		return sysNorm, sysNorm
	}
	ns := t.records[typeName]
	switch len(ns) {
	case 0:
	case 1:
		norm = ns[0]
	default:
	next:
		for _, n := range ns {
			for _, f := range n.HasFields.Values {
				if !has(f) {
					continue next
				}
			}
			norm = n
		}
	}
	return norm, sysNorm
}

// ecsCats is the event.category and event.type of an event.
type ecsCats struct{ category, types []string }

// categories returns the event.category and event.type of an event
// normalized by norm (and sysNorm, the normalization of its syscall),
// as aucoalesce sets them, cached per pair.
func (e *Enricher) categories(norm, sysNorm *aucoalesce.Normalization) ecsCats {
	k := [2]*aucoalesce.Normalization{norm, sysNorm}
	if c, ok := e.cats[k]; ok {
		return c
	}
	c := append([]string(nil), norm.ECS.Category.Values...)
	t := append([]string(nil), norm.ECS.Type.Values...)
	if sysNorm != nil && sysNorm != norm {
		c = append(c, sysNorm.ECS.Category.Values...)
		t = append(t, sysNorm.ECS.Type.Values...)
	}
	if len(c) == 0 {
		c = nil
	}
	if len(t) == 0 {
		t = nil
	}
	e.cats[k] = ecsCats{c, t}
	return e.cats[k]
}
