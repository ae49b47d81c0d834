package netlink

import (
	"fmt"

	libaudit "github.com/elastic/go-libaudit/v2"
)

// KernelStatus is the kernel's audit state, for `auditns status`.
type KernelStatus struct {
	Enabled         uint32 `json:"enabled"` // 0 off, 1 on, 2 immutable
	PID             uint32 `json:"pid"`     // the audit daemon's pid, 0 for none
	Failure         uint32 `json:"failure_mode"`
	RateLimit       uint32 `json:"rate_limit"`
	BacklogLimit    uint32 `json:"backlog_limit"`
	Lost            uint32 `json:"lost"`
	Backlog         uint32 `json:"backlog"`
	BacklogWaitTime uint32 `json:"backlog_wait_time"`
	Rules           int    `json:"rules"`
}

// ReadKernelStatus asks the kernel for its audit status and rule count. It
// needs CAP_AUDIT_CONTROL (reading the rules) but changes nothing.
func ReadKernelStatus() (*KernelStatus, error) {
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	s, err := c.GetStatus()
	if err != nil {
		return nil, permissionHint(fmt.Errorf("read kernel audit status: %w", err))
	}
	ks := &KernelStatus{Enabled: s.Enabled, PID: s.PID, Failure: s.Failure, RateLimit: s.RateLimit,
		BacklogLimit: s.BacklogLimit, Lost: s.Lost, Backlog: s.Backlog, BacklogWaitTime: s.BacklogWaitTime, Rules: -1}
	if rules, err := c.GetRules(); err == nil {
		ks.Rules = len(rules)
	}
	return ks, nil
}
