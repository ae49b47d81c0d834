package record

// The kernel writes a value that holds a space, a quote, a control
// character or a byte above 0x7e (comm, exe, cwd, path names, proctitle,
// exec arguments, a key list...) unquoted, as upper-case hex digits.

// IsUpperHex reports whether b is an even number of 0-9 A-F digits: what
// go-libaudit accepts as a hex-encoded value (it decodes nothing else).
func IsUpperHex[T ~string | ~[]byte](b T) bool {
	if len(b)%2 != 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// IsHex reports whether b is an even number of hex digits of either case.
func IsHex[T ~string | ~[]byte](b T) bool {
	if len(b)%2 != 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if unhex(b[i]) > 0xf {
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0xff
}

// AppendUnhex appends the bytes that the hex digits h (either case) encode
// to dst. ok is false, and dst unchanged, when h is not an even number of
// hex digits.
func AppendUnhex[T ~string | ~[]byte](dst []byte, h T) (out []byte, ok bool) {
	if !IsHex(h) {
		return dst, false
	}
	for i := 0; i+1 < len(h); i += 2 {
		dst = append(dst, unhex(h[i])<<4|unhex(h[i+1]))
	}
	return dst, true
}
