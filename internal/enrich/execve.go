package enrich

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/elastic/go-libaudit/v2/auparse"
)

// execveArgs reads the arguments of an exec from its EXECVE records
// itself. The kernel splits what does not fit: a long argument becomes
// aN_len=LEN aN[0]=... aN[1]=..., and a long argv continues in further
// EXECVE records without argc; go-libaudit rejects both forms and would
// leave the event with no arguments at all. Values are "quoted" text or
// hex (when the argument holds spaces, quotes, control or non-ASCII bytes).
func execveArgs(msgs []*auparse.AuditMessage) (args []string, argc int, ok bool) {
	argc = -1
	var parts map[int]*strings.Builder
	var plain map[int]string
	for _, m := range msgs {
		if m.RecordType != auparse.AUDIT_EXECVE {
			continue
		}
		text := m.RawData
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
			if !quoted {
				if b, err := hex.DecodeString(val); err == nil {
					val = string(b)
				}
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
				if parts == nil {
					parts = map[int]*strings.Builder{}
				}
				if parts[n] == nil {
					parts[n] = &strings.Builder{}
				}
				parts[n].WriteString(val)
			case strings.HasPrefix(key, "a"):
				n, err := strconv.Atoi(key[1:])
				if err != nil {
					continue
				}
				if plain == nil {
					plain = map[int]string{}
				}
				plain[n] = val
			}
		}
	}
	if argc < 0 {
		return nil, 0, false
	}
	args = make([]string, 0, argc)
	for i := 0; i < argc; i++ {
		if b := parts[i]; b != nil {
			args = append(args, b.String())
		} else if v, ok := plain[i]; ok {
			args = append(args, v)
		} else {
			// The kernel could not log every argument (its limit); the
			// args present are kept and args_count says how many there were.
			break
		}
	}
	return args, argc, true
}

// decodeHexField undoes the kernel's hex encoding of a SYSCALL record
// field (comm, exe) when go-libaudit left it encoded: the kernel writes
// the value unquoted, as hex, when it holds a space, quote, control
// character or non-ASCII byte.
func decodeHexField(msgs []*auparse.AuditMessage, key, val string) string {
	if val == "" || len(val)%2 != 0 {
		return val
	}
	for _, m := range msgs {
		if m.RecordType != auparse.AUDIT_SYSCALL {
			continue
		}
		if strings.Contains(m.RawData, " "+key+"="+val) {
			if b, err := hex.DecodeString(val); err == nil {
				return string(b)
			}
		}
	}
	return val
}
