package event

// The identity members of an event (the process object's ids, the user
// object, auditns's own), and the Encoder's memo of the last ones.

import "unsafe"

// appendProcIDs appends the process object's id members.
func appendProcIDs(b []byte, u *User, g *Group) []byte {
	if u != nil {
		b = entity(b, `,"user":`, u.Effective)
		b = idName(b, `,"real_user":`, u.ID, u.Name)
		b = entity(b, `,"saved_user":`, u.Saved)
	}
	if g != nil {
		b = entity(b, `,"group":`, g.Effective)
		b = idName(b, `,"real_group":`, g.ID, g.Name)
		b = entity(b, `,"saved_group":`, g.Saved)
	}
	return b
}

// appendUserObject appends the user object, if it has a member.
func appendUserObject(b []byte, u *User, g *Group) []byte {
	start := len(b)
	b = append(b, `,"user":`...)
	m := len(b)
	if u != nil {
		b = kstrOpt(b, `,"id":`, u.ID)
		b = kstrOpt(b, `,"name":`, u.Name)
		b = entity(b, `,"effective":`, u.Effective)
		b = entity(b, `,"target":`, u.Target)
	}
	if g != nil {
		b = idName(b, `,"group":`, g.ID, g.Name)
	}
	if len(b) == m {
		return b[:start]
	}
	return openAt(b, m)
}

// appendOwnIDs appends the auditns object's id members.
func appendOwnIDs(b []byte, u *User, g *Group) []byte {
	if u != nil && (u.Audit != nil || u.FS != nil) {
		b = append(b, `,"user":`...)
		m := len(b)
		b = entity(b, `,"audit":`, u.Audit)
		b = entity(b, `,"filesystem":`, u.FS)
		b = openAt(b, m)
	}
	if g != nil && g.FS != nil {
		b = append(b, `,"group":{"filesystem":`...)
		m := len(b)
		b = kstrOpt(b, `,"id":`, g.FS.ID)
		b = kstrOpt(b, `,"name":`, g.FS.Name)
		b = openAt(b, m)
		b = append(b, '}')
	}
	return b
}

// idName appends k and {id, name} when either is set.
func idName(b []byte, k, id, name string) []byte {
	if id == "" && name == "" {
		return b
	}
	b = append(b, k...)
	m := len(b)
	b = kstrOpt(b, `,"id":`, id)
	b = kstrOpt(b, `,"name":`, name)
	return openAt(b, m)
}

// An Encoder appends events as AppendJSON does, byte for byte, and keeps
// what it wrote of the last event's identities to copy it for the next
// event with the same (a process's events come one after another). It is
// not safe for concurrent use.
type Encoder struct {
	users usersMemo
}

// AppendJSON appends e as one JSON object (no trailing newline).
func (c *Encoder) AppendJSON(b []byte, e *Event) []byte { return e.appendJSON(b, c) }

// usersMemo is the id members last encoded (the process object's, the
// user object, the auditns object's: json[:ends[0]], json[ends[0]:ends[1]],
// json[ends[1]:]), and what they were encoded from: the strings (copied
// into buf) and which entities were set.
type usersMemo struct {
	ok   bool
	set  uint16 // bit i: entity i of usersKey is not nil
	key  [20]string
	buf  []byte
	json []byte
	ends [2]int
}

// usersKey is what e's ids are encoded from: key[0:2] the real uid,
// key[2:4] the real gid, key[4+2i:6+2i] entity i (User's Audit,
// Effective, Saved, FS, Target, Group's Effective, Saved, FS).
func usersKey(e *Event) (set uint16, key [20]string) {
	var ents [8]*Entity
	if u := e.User; u != nil {
		set = 1 << 8
		key[0], key[1] = u.ID, u.Name
		ents[0], ents[1], ents[2], ents[3], ents[4] = u.Audit, u.Effective, u.Saved, u.FS, u.Target
	}
	if g := e.Group; g != nil {
		set |= 1 << 9
		key[2], key[3] = g.ID, g.Name
		ents[5], ents[6], ents[7] = g.Effective, g.Saved, g.FS
	}
	for i, x := range ents {
		if x != nil {
			set |= 1 << i
			key[4+2*i], key[5+2*i] = x.ID, x.Name
		}
	}
	return set, key
}

// ids returns e's id members (see usersMemo), encoded now or copied.
func (m *usersMemo) ids(e *Event) (proc, user, own []byte) {
	set, key := usersKey(e)
	if !m.ok || set != m.set || key != m.key {
		m.json = appendProcIDs(m.json[:0], e.User, e.Group)
		m.ends[0] = len(m.json)
		m.json = appendUserObject(m.json, e.User, e.Group)
		m.ends[1] = len(m.json)
		m.json = appendOwnIDs(m.json, e.User, e.Group)
		var ends [20]int
		m.buf = m.buf[:0]
		for i, k := range key {
			m.buf = append(m.buf, k...)
			ends[i] = len(m.buf)
		}
		from := 0
		for i, end := range ends {
			m.key[i] = ""
			if end > from {
				// A view of buf, which only the next miss rewrites.
				m.key[i] = unsafe.String(&m.buf[from], end-from)
			}
			from = end
		}
		m.set, m.ok = set, true
	}
	return m.json[:m.ends[0]], m.json[m.ends[0]:m.ends[1]], m.json[m.ends[1]:]
}
