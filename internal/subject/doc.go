// Package subject tells, for each audit event, which process its subject
// was and which namespaces it was in when the kernel wrote the event's
// records: captured in the kernel by eBPF, joined on the audit serial.
//
// # How the kernel side works
//
// The kernel writes every record of a syscall's event in the subject's own
// context and frees the record's audit_buffer there, at the end of
// audit_log_end(), with the event's serial still in it. A program on the
// kmem_cache_free tracepoint (tp_btf, no kprobes or trampolines needed)
// returns after one comparison for every other slab cache; for the first
// record of each event it reads the current thread's namespaces (ipc uts
// user pid cgroup time net mnt: inode number and, on Linux >= 6.18, the
// 64-bit namespace id) and puts into a ring buffer:
//
//   - a join (serial, tgid, state version) for every event, and
//   - a state (the namespaces, their owning user namespaces, the parents of
//     the pid and user namespaces, the process's start time and its
//     parent's, its pid inside its own pid namespace) when the thread is
//     new to the program or its namespaces differ from the last ones sent.
//
// A second program on sched_process_exit reports the exit of processes the
// first one has seen, so the registry learns when members leave.
//
// # The ordering rule
//
// An event's namespaces are those its subject thread had when the kernel
// finished writing the event's first record. Records of one syscall are
// written at its exit, after the syscall did its work, so:
//
//   - an execve event has the namespaces the process had when execve
//     returned (the time namespace it entered at exec included);
//   - the event of an unshare or setns that succeeded has the new
//     namespaces (ns_change names the types it changed); every event of
//     the process after it has them too, and every event before it the old
//     ones, however soon after each other they happen;
//   - a child has the namespaces it was created with (clone3 with
//     CLONE_NEW* flags included, though audit cannot see clone3's flags)
//     from its first event on, however short its life.
//
// The rule is exact because the join is made in the subject's context and
// keyed by the event's serial; nothing depends on when auditns reads the
// event. The reader drains the ring before it handles each batch of
// records: a syscall event's join is in the ring before the event's last
// record (EOE) is queued to auditns. A record written outside a syscall
// (a user-space message, for example) is queued a moment before its join:
// for such an event the reader waits up to Options.JoinWait for the join.
//
// # When the kernel side cannot say
//
// A join that could not be put in the ring (it was full: counted in
// Stats.Dropped), or an event whose subject pid is not the join's (records
// written on behalf of another process), is answered by the fallback, the
// /proc reader, whose ns_src then says what it could do (observed, cached,
// inherited, unknown). Nothing is ever guessed from a stale state.
package subject
