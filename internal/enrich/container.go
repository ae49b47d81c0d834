package enrich

import (
	"bytes"

	"github.com/auditns/auditns/internal/event"
)

// containerFromCgroup finds a container id in the contents of
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
func containerFromCgroup(data []byte) *event.Container {
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
		if c := containerFromPath(line); c != nil {
			found = c
		}
	}
	return found
}

func containerFromPath(path []byte) *event.Container {
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
