package enrich

import (
	"strconv"
	"strings"

	"github.com/auditns/auditns/internal/record"
)

// argPart is one value of an EXECVE record: argument n whole (aN=) or one
// chunk of it (aN[i]=).
type argPart struct {
	n     int
	val   string
	chunk bool
	next  int32 // the next chunk of the same argument, -1 at the end
}

// execveArgs reads the arguments of an exec from its EXECVE records
// itself. The kernel splits what does not fit: a long argument becomes
// aN_len=LEN aN[0]=... aN[1]=..., and a long argv continues in further
// EXECVE records without argc; go-libaudit rejects both forms and would
// leave the event with no arguments at all. Values are "quoted" text or
// hex (when the argument holds spaces, quotes, control or non-ASCII bytes).
// The arguments are views of the records and of the event's buffer.
func (e *Enricher) execveArgs(recs []record.Record) (args []string, argc int, ok bool) {
	argc = -1
	parts := e.argParts[:0]
	for ri := range recs {
		if recs[ri].Type != typeExecve {
			continue
		}
		text := record.View(recs[ri].Text)
		if i := strings.Index(text, "): "); i >= 0 && strings.HasPrefix(text, "audit(") {
			text = text[i+3:]
		}
		for len(text) > 0 {
			text = strings.TrimLeft(text, " ")
			eq := strings.IndexByte(text, '=')
			if eq <= 0 {
				break
			}
			key := text[:eq]
			text = text[eq+1:]
			var val string
			quoted := strings.HasPrefix(text, `"`)
			if quoted {
				end := strings.IndexByte(text[1:], '"')
				if end < 0 {
					val, text = text[1:], ""
				} else {
					val, text = text[1:end+1], text[end+2:]
				}
			} else if sp := strings.IndexByte(text, ' '); sp >= 0 {
				val, text = text[:sp], text[sp:]
			} else {
				val, text = text, ""
			}
			if !quoted && record.IsHex(val) {
				start := len(e.sb)
				e.sb, _ = record.AppendUnhex(e.sb, val)
				val = record.View(e.sb[start:])
			}
			switch {
			case key == "argc":
				argc, _ = strconv.Atoi(val)
			case strings.HasPrefix(key, "a") && strings.HasSuffix(key, "_len"):
				// The total length; the chunks carry the bytes.
			case strings.HasPrefix(key, "a") && strings.Contains(key, "["):
				n, err := strconv.Atoi(key[1:strings.IndexByte(key, '[')])
				if err != nil {
					continue
				}
				parts = append(parts, argPart{n: n, val: val, chunk: true, next: -1})
			case strings.HasPrefix(key, "a"):
				n, err := strconv.Atoi(key[1:])
				if err != nil {
					continue
				}
				parts = append(parts, argPart{n: n, val: val, next: -1})
			}
		}
	}
	e.argParts = parts
	if argc < 0 {
		return nil, 0, false
	}
	// Index the parts by argument. An argument numbered past the number
	// of parts cannot be reached: every one before it must be there.
	slots := e.argSlots[:0]
	for range min(len(parts), argc) {
		slots = append(slots, argSlot{plain: -1, first: -1, last: -1})
	}
	for i := range parts {
		p := &parts[i]
		if p.n < 0 || p.n >= len(slots) {
			continue
		}
		s := &slots[p.n]
		switch {
		case !p.chunk:
			s.plain = int32(i) // the last one wins
		case s.first < 0:
			s.first, s.last = int32(i), int32(i)
		default:
			parts[s.last].next = int32(i)
			s.last = int32(i)
		}
	}
	e.argSlots = slots
	args = e.args[:0]
	for i := range slots {
		s := &slots[i]
		switch {
		case s.first >= 0:
			start := len(e.sb)
			for j := s.first; j >= 0; j = parts[j].next {
				e.sb = append(e.sb, parts[j].val...)
			}
			args = append(args, record.View(e.sb[start:]))
		case s.plain >= 0:
			args = append(args, parts[s.plain].val)
		default:
			// The kernel could not log every argument (its limit); the
			// args present are kept and args_count says how many there were.
			e.args = args
			return args, argc, true
		}
	}
	e.args = args
	return args, argc, true
}

type argSlot struct{ plain, first, last int32 }
