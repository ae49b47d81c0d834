// Package container tells which container a process is in from its cgroup
// path (/proc/<pid>/cgroup), for the /proc reader and the kernel-side
// subject source alike.
package container

import (
	"bytes"
	"time"

	"github.com/auditns/auditns/internal/event"
)

// FromCgroup finds a container id in the contents of
// /proc/<pid>/cgroup. Layouts recognised (cgroup v1 and v2, cgroupfs and
// systemd drivers):
//
//	docker:      /docker/<id>, /system.slice/docker-<id>.scope
//	containerd:  /kubepods/.../<id>, .../cri-containerd-<id>.scope
//	CRI-O:       .../crio-<id>.scope, /crio/<id>
//	podman:      .../libpod-<id>.scope, /libpod_parent/libpod-<id>
//
// where <id> is 64 hex digits. The last matching path component wins: it
// is the innermost container.
func FromCgroup(data []byte) *event.Container {
	var found *event.Container
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		// hierarchy-ID:controllers:path
		if i := bytes.LastIndexByte(line, ':'); i >= 0 {
			line = line[i+1:]
		}
		if c := fromPath(line); c != nil {
			found = c
		}
	}
	return found
}

func fromPath(path []byte) *event.Container {
	var found *event.Container
	kube := bytes.Contains(path, []byte("kubepods"))
	var prev []byte
	for len(path) > 0 {
		comp := path
		if i := bytes.IndexByte(path, '/'); i >= 0 {
			comp, path = path[:i], path[i+1:]
		} else {
			path = nil
		}
		parent := prev
		prev = comp
		comp = bytes.TrimSuffix(comp, []byte(".scope"))
		runtime := ""
		for _, p := range prefixes {
			if bytes.HasPrefix(comp, []byte(p.prefix)) {
				comp, runtime = comp[len(p.prefix):], p.runtime
				break
			}
		}
		if !isContainerID(comp) {
			continue
		}
		if runtime == "" {
			runtime = parentRuntime(parent, kube)
		}
		found = &event.Container{ID: string(comp), Runtime: runtime}
	}
	return found
}

var prefixes = []struct{ prefix, runtime string }{
	{"docker-", "docker"},
	{"cri-containerd-", "containerd"},
	{"crio-", "cri-o"},
	{"libpod-", "podman"},
}

// parentRuntime names the runtime of a bare id from the directory it is in.
func parentRuntime(parent []byte, kube bool) string {
	switch {
	case bytes.Equal(parent, []byte("crio")):
		return "cri-o"
	case bytes.HasPrefix(parent, []byte("libpod")):
		return "podman"
	case bytes.Equal(parent, []byte("docker")):
		return "docker"
	case kube:
		return "containerd"
	}
	return ""
}

func isContainerID(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Cache remembers the container of cgroup v2 cgroups by cgroup id
// (PIDFD_GET_INFO), so that a new process in a known cgroup costs no read
// of /proc/<pid>/cgroup. It serves only hosts where that file has the
// cgroup v2 line alone: with cgroup v1 hierarchies the container may be in
// a v1 path (docker's cgroupfs driver on v1 leaves the v2 cgroup shared by
// every container), which the v2 id does not determine. A cgroup's path,
// hence its container, does not change (cgroup v2 directories cannot be
// renamed) and its id is never reused within a boot; still the cache is
// forgotten now and then, which also notices v1 hierarchies mounted since.
// Used by the observing goroutine only.
type Cache struct {
	m      map[uint64]*event.Container
	since  time.Time // when m was started or hybrid set
	hybrid bool      // a file read had cgroup v1 lines
}

const (
	cacheMax = 4096
	cacheTTL = 10 * time.Second
)

// Wanted reports whether a cgroup id could serve: not on a host with cgroup
// v1 hierarchies (until the cache is next forgotten).
func (cc *Cache) Wanted() bool {
	if (cc.m != nil || cc.hybrid) && time.Since(cc.since) > cacheTTL {
		cc.m, cc.hybrid = nil, false
	}
	return !cc.hybrid
}

// SawHybrid notes a /proc/<pid>/cgroup with cgroup v1 lines.
func (cc *Cache) SawHybrid() {
	cc.m, cc.hybrid, cc.since = nil, true, time.Now()
}

// Get returns the container of cgroup id, if known.
func (cc *Cache) Get(id uint64, ok bool) (*event.Container, bool) {
	if !ok || cc.m == nil {
		return nil, false
	}
	ct, ok := cc.m[id]
	return ct, ok
}

// Put remembers the container of cgroup id.
func (cc *Cache) Put(id uint64, ct *event.Container) {
	if cc.m == nil || len(cc.m) >= cacheMax {
		cc.m, cc.since = make(map[uint64]*event.Container), time.Now()
	}
	cc.m[id] = ct
}

// V2Only reports whether the contents of /proc/<pid>/cgroup are the
// single cgroup v2 line, "0::<path>".
func V2Only(data []byte) bool {
	if !bytes.HasPrefix(data, []byte("0::")) {
		return false
	}
	i := bytes.IndexByte(data, '\n')
	return i < 0 || i == len(data)-1
}
