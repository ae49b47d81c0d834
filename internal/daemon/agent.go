package daemon

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"github.com/auditns/auditns/internal/event"
)

// agentID is agent.id: a UUID derived from the host's machine id
// (/etc/machine-id), the same across restarts and reboots, and from the
// host name where there is no machine id. It is a hash, so the machine id
// itself (which systemd asks not to expose) does not leave the host.
func agentID(machineIDFile, hostName string) string {
	src := hostName
	if b, err := os.ReadFile(machineIDFile); err == nil && strings.TrimSpace(string(b)) != "" {
		src = strings.TrimSpace(string(b))
	}
	h := sha256.Sum256([]byte("auditns agent.id\x00" + src))
	h[6] = h[6]&0x0f | 0x80 // version 8: a custom, name-based UUID
	h[8] = h[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// setAgent makes the events name this auditns (agent.*).
func setAgent(hostName, version string) {
	event.SetAgent(event.Agent{Version: version, ID: agentID("/etc/machine-id", hostName)})
}
