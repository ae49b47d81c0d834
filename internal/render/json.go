package render

import (
	"encoding/json"
	"unicode/utf8"
)

// TerminalJSON appends the JSON value raw for display on a terminal,
// followed by '\n'. A value with nothing a terminal could act on (the
// normal case: the daemon escapes C0 controls) is appended byte for byte.
// Otherwise, if raw is valid JSON, each such character is replaced by the
// same character escaped (\u007f, \u009b, a surrogate pair above U+FFFF;
// a byte that is not valid UTF-8 by \ufffd, which is what a JSON decoder
// reads it as) and whitespace control bytes between tokens by spaces: the
// result is the same JSON value. A value that is not valid JSON is
// appended as Escape text.
//
// Off a terminal `--json` writes the value unchanged instead.
func TerminalJSON(dst, raw []byte) []byte {
	if terminalSafe(raw) {
		dst = append(dst, raw...)
		return append(dst, '\n')
	}
	if !json.Valid(raw) {
		dst = Escape(dst, string(raw))
		return append(dst, '\n')
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf {
			switch {
			case c < 0x20: // only insignificant whitespace in valid JSON
				dst = append(dst, ' ')
			case c == 0x7f: // inside a string
				dst = append(dst, `\u007f`...)
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		// Bytes >= 0x80 are always inside a string in valid JSON.
		r, size := utf8.DecodeRune(raw[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case unsafeRune(r) && r > 0xffff:
			r -= 0x10000
			dst = appendU(dst, 0xd800+(r>>10))
			dst = appendU(dst, 0xdc00+(r&0x3ff))
		case unsafeRune(r):
			dst = appendU(dst, r)
		default:
			dst = append(dst, raw[i:i+size]...)
		}
		i += size
	}
	return append(dst, '\n')
}

// terminalSafe reports whether raw has no control byte, no invalid UTF-8
// and no rune that unsafeRune rejects.
func terminalSafe(raw []byte) bool {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		if (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			return false
		}
		i += size
	}
	return true
}
