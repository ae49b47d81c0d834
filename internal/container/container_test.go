package container

import (
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
)

func TestContainerFromCgroup(t *testing.T) {
	id := strings.Repeat("ab12", 16)
	cases := map[string]*event.Container{
		"0::/system.slice/docker-" + id + ".scope\n": {ID: id, Runtime: "docker"},
		"12:pids:/docker/" + id + "\n0::/\n":         {ID: id, Runtime: "docker"},
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" + id + ".scope": {ID: id, Runtime: "containerd"},
		"0::/kubepods/besteffort/pod1/" + id:                  {ID: id, Runtime: "containerd"},
		"0::/machine.slice/libpod-" + id + ".scope/container": {ID: id, Runtime: "podman"},
		"0::/kubepods.slice/crio-" + id + ".scope":            {ID: id, Runtime: "cri-o"},
		"0::/user.slice/user-0.slice/session-1.scope\n":       nil,
	}
	for in, want := range cases {
		got := FromCgroup([]byte(in))
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("%q: got %+v want %+v", in, got, want)
		}
	}
}

func TestCgroupV2Only(t *testing.T) {
	for in, want := range map[string]bool{
		"0::/user.slice/session-1.scope\n": true,
		"0::/\n":                           true,
		"0::/":                             true,
		"":                                 false,
		"1:name=systemd:/\n0::/\n":         false,
		"0::/\n4:memory:/docker/x\n":       false,
		"12:pids:/docker/x\n":              false,
	} {
		if got := V2Only([]byte(in)); got != want {
			t.Errorf("V2Only(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestCgroupCache(t *testing.T) {
	var cc Cache
	ct := &event.Container{ID: strings.Repeat("a", 64), Runtime: "docker"}
	if !cc.Wanted() {
		t.Fatal("empty cache not wanted")
	}
	if _, ok := cc.Get(7, true); ok {
		t.Fatal("hit in an empty cache")
	}
	cc.Put(7, ct)
	cc.Put(8, nil) // no container: known too
	if got, ok := cc.Get(7, true); !ok || got != ct {
		t.Fatalf("get 7: %v %v", got, ok)
	}
	if got, ok := cc.Get(8, true); !ok || got != nil {
		t.Fatalf("get 8: %v %v", got, ok)
	}
	if _, ok := cc.Get(7, false); ok {
		t.Fatal("hit without a cgroup id")
	}
	cc.SawHybrid()
	if cc.Wanted() {
		t.Fatal("wanted on a host with cgroup v1 lines")
	}
	if _, ok := cc.Get(7, true); ok {
		t.Fatal("hit after a cgroup v1 file")
	}
	cc.since = time.Now().Add(-2 * cacheTTL)
	if !cc.Wanted() {
		t.Fatal("not wanted again after the TTL")
	}
	cc.Put(9, ct)
	cc.since = time.Now().Add(-2 * cacheTTL)
	if cc.Wanted(); cc.m != nil {
		t.Fatal("cache kept past its TTL")
	}
}
