package serial

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Schema is the value of Record.Schema.
const Schema = "auditns.namespace/1"

// Record is one entry of the namespace registry (SPEC 2.5). encoding/json
// produces exactly the auditns.namespace/1 shape; every key is always present.
type Record struct {
	Schema     string     `json:"schema"`
	ID         string     `json:"id"` // <boot_id>/<serial>
	Host       Host       `json:"host"`
	Type       Type       `json:"type"`
	Serial     uint64     `json:"serial"`
	Inum       uint64     `json:"inum"`
	Dev        string     `json:"dev"`   // nsfs st_dev as "major:minor"
	NsID       *uint64    `json:"ns_id"` // NS_GET_ID; nil unless known
	IDSrc      IDSource   `json:"id_src"`
	IsInit     bool       `json:"is_init"`
	OwnerUser  *SerialRef `json:"owner_user"` // NS_GET_USERNS
	Parent     *SerialRef `json:"parent"`     // NS_GET_PARENT (pid, user)
	FirstSeen  Timestamp  `json:"first_seen"`
	FirstEvent EventRef   `json:"first_event"`
	CreatedBy  *CreatedBy `json:"created_by"`
	LastSeen   Timestamp  `json:"last_seen"`
	Gone       *Timestamp `json:"gone"`
}

// Host names the host and boot that issued a serial.
type Host struct {
	Name   string `json:"name"`
	BootID string `json:"boot_id"`
}

// SerialRef points at another namespace of the same boot.
type SerialRef struct {
	Serial uint64 `json:"serial"`
}

// CreatedBy is the syscall event that created a namespace.
type CreatedBy struct {
	Event string `json:"event"`
	Op    string `json:"op"`
	PID   int    `json:"pid"`
	Exe   string `json:"exe"`
}

// EventRef is an event id; the empty string encodes as JSON null (no event,
// e.g. the initial namespaces).
type EventRef string

// MarshalJSON encodes "" as null.
func (e EventRef) MarshalJSON() ([]byte, error) {
	if e == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(e))
}

// UnmarshalJSON accepts a string or null.
func (e *EventRef) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*e = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*e = EventRef(s)
	return nil
}

// TimeLayout is RFC 3339 in UTC with exactly microseconds.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Timestamp is a timestamp that encodes as TimeLayout (the zero time as null).
type Timestamp struct{ time.Time }

// MakeTime returns t in UTC truncated to microseconds, without a monotonic
// clock reading, so that it survives an encode/decode round trip unchanged.
func MakeTime(t time.Time) Timestamp {
	return Timestamp{t.UTC().Truncate(time.Microsecond).Round(0)}
}

// MarshalJSON encodes t as TimeLayout.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts any RFC 3339 time or null.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = Timestamp{}
		return nil
	}
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	*t = MakeTime(v)
	return nil
}

// clone returns a deep copy of r (the pointer fields are not shared).
func (r *Record) clone() Record {
	c := *r
	if r.NsID != nil {
		v := *r.NsID
		c.NsID = &v
	}
	if r.OwnerUser != nil {
		v := *r.OwnerUser
		c.OwnerUser = &v
	}
	if r.Parent != nil {
		v := *r.Parent
		c.Parent = &v
	}
	if r.CreatedBy != nil {
		v := *r.CreatedBy
		c.CreatedBy = &v
	}
	if r.Gone != nil {
		v := *r.Gone
		c.Gone = &v
	}
	return c
}
