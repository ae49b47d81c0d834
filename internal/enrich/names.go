package enrich

import (
	"os/user"
	"strings"
	"time"
)

// nameCache resolves user or group ids to names (and user names to ids)
// with the semantics of go-libaudit's EntityCache: "" and "unset" resolve
// to nothing, 0 is root for good, and every other answer, a failure
// included, is kept for the cache's lifetime before it is asked again.
// Keys are looked up without copying; only a new entry copies its key.
type nameCache struct {
	m      map[string]nameEntry
	fixed  map[string]string
	ttl    int64
	lookup func(string) string
	// recent are the last answers, looked at before the map: an event
	// asks for the same few ids again and again.
	recent [4]nameEntry
	next   int
}

type nameEntry struct {
	key     string // owned
	value   string
	expires int64 // unix nanoseconds; 0 never
}

const nameCacheTTL = 5 * time.Minute

func newNameCache(fixed map[string]string, lookup func(string) string) *nameCache {
	c := &nameCache{m: make(map[string]nameEntry), fixed: fixed, ttl: int64(nameCacheTTL), lookup: lookup}
	c.reset()
	return c
}

func (c *nameCache) reset() {
	clear(c.m)
	for k, v := range c.fixed {
		c.m[k] = nameEntry{key: k, value: v}
	}
	c.recent = [4]nameEntry{}
}

// get resolves key; now is the current time in unix nanoseconds.
func (c *nameCache) get(key string, now int64) string {
	if key == "" || key == "unset" {
		return ""
	}
	for i := range c.recent {
		if r := &c.recent[i]; r.key == key && (r.expires == 0 || now <= r.expires) {
			return r.value
		}
	}
	e, ok := c.m[key]
	if !ok || e.expires != 0 && now > e.expires {
		if len(c.m) > 1<<16 {
			// Ids from the kernel's text are untrusted: bound the cache.
			c.reset()
		}
		e = nameEntry{key: strings.Clone(key), value: c.lookup(key), expires: now + c.ttl}
		c.m[e.key] = e
	}
	c.recent[c.next] = e
	c.next = (c.next + 1) % len(c.recent)
	return e.value
}

func lookupUserName(id string) string {
	u, err := user.LookupId(id)
	if err != nil {
		return ""
	}
	return u.Username
}

func lookupUserID(name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return ""
	}
	return u.Uid
}

func lookupGroupName(id string) string {
	g, err := user.LookupGroupId(id)
	if err != nil {
		return ""
	}
	return g.Name
}

// names are the Enricher's three caches.
type names struct {
	userByID, userByName, groupByID *nameCache
}

func newNames() names {
	return names{
		userByID:   newNameCache(map[string]string{"0": "root"}, lookupUserName),
		userByName: newNameCache(map[string]string{"root": "0"}, lookupUserID),
		groupByID:  newNameCache(map[string]string{"0": "root"}, lookupGroupName),
	}
}
