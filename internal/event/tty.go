package event

import (
	"strconv"
	"strings"
)

// TTYDevice returns the character device of the terminal the kernel
// names name in audit records (pts3, tty1, ttyS0, console), for ECS's
// process.tty.char_device; ok is false for another name.
func TTYDevice(name string) (major, minor int, ok bool) {
	num := func(s string) (int, bool) {
		if s == "" || len(s) > 6 || len(s) > 1 && s[0] == '0' {
			return 0, false
		}
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int(s[i]-'0')
		}
		return n, true
	}
	switch {
	case strings.HasPrefix(name, "pts"):
		// Unix98 pty slaves: majors 136-143, 256 minors each.
		if n, ok := num(name[3:]); ok && n < 2048 {
			return 136 + n>>8, n & 0xff, true
		}
	case strings.HasPrefix(name, "ttyS"):
		if n, ok := num(name[4:]); ok && n < 192 {
			return 4, 64 + n, true
		}
	case strings.HasPrefix(name, "tty"):
		if name == "tty" {
			return 5, 0, true
		}
		if n, ok := num(name[3:]); ok && n < 64 {
			return 4, n, true
		}
	case name == "console":
		return 5, 1, true
	}
	return 0, 0, false
}

// TTYName is TTYDevice's inverse ("" for another device).
func TTYName(major, minor int) string {
	switch {
	case major >= 136 && major <= 143 && minor >= 0 && minor < 256:
		return "pts" + strconv.Itoa((major-136)<<8|minor)
	case major == 4 && minor >= 64 && minor < 256:
		return "ttyS" + strconv.Itoa(minor-64)
	case major == 4 && minor >= 0 && minor < 64:
		return "tty" + strconv.Itoa(minor)
	case major == 5 && minor == 0:
		return "tty"
	case major == 5 && minor == 1:
		return "console"
	}
	return ""
}
