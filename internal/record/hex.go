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

// hexVal is the value of a hex digit, 0xff for other bytes; upper-case
// digits have 0x10 set too.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c-'0') | 0x10
	}
	for c := 'A'; c <= 'F'; c++ {
		t[c] = byte(c-'A'+10) | 0x10
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

func unhex(c byte) byte {
	if v := hexVal[c]; v != 0xff {
		return v & 0xf
	}
	return 0xff
}

// AppendUpperUnhex appends the bytes that h encodes when h is what
// IsUpperHex accepts; ok is false, and dst unchanged, otherwise.
func AppendUpperUnhex[T ~string | ~[]byte](dst []byte, h T) (out []byte, ok bool) {
	if len(h)%2 != 0 {
		return dst, false
	}
	n := len(dst)
	for i := 0; i+1 < len(h); i += 2 {
		a, b := hexVal[h[i]], hexVal[h[i+1]]
		if a&b&0x10 == 0 || a == 0xff || b == 0xff {
			return dst[:n], false
		}
		dst = append(dst, a<<4|b&0xf)
	}
	return dst, true
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
