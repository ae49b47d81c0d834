// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * auditns's kernel-side subject identity.
 *
 * The kernel writes each audit record in the context of the task it is
 * about, and frees the record's struct audit_buffer there, at the end of
 * audit_log_end(), with the record's serial still in the buffer. That free
 * is the one hook a stock kernel offers where the audit serial and the
 * subject task meet: the program on tp_btf/kmem_cache_free ignores every
 * other slab cache at once and, for the first record of each event, joins
 * the event's serial to the namespaces the task has at that moment.
 *
 * To keep the ring small the full identity (a "state": namespaces, their
 * owners, start times, vpid, cgroup) is sent only when a thread is first
 * seen or its namespaces changed; every event sends a 16-byte join
 * (serial, tgid, state version). Wake-ups are batched: the reader drains
 * the ring before it handles each batch of audit records.
 *
 * A full ring never blocks: a record that cannot be reserved is counted in
 * the drops map and the reader falls back for the events concerned.
 */
#include "types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NS_TYPES 8 /* ipc uts user pid cgroup time net mnt */
#define CG_LEVELS 4 /* the last components of the cgroup v2 path kept */
#define CG_NAME 96  /* "cri-containerd-<64 hex>.scope" fits */

enum rec_kind {
	REC_STATE = 1,
	REC_JOIN = 2,
	REC_EXIT = 3,
};

enum drop_kind {
	DROP_JOIN = 0,
	DROP_STATE = 1,
	DROP_EXIT = 2,
	DROP_KINDS = 3,
};

struct ns_key {
	u64 id; /* the kernel's 64-bit namespace id, 0 before Linux 6.18 */
	u32 inum;
	u32 _pad;
};

struct state {
	u32 kind; /* REC_STATE */
	u32 ver;
	u32 tgid;
	u32 tid;
	u32 ppid;
	u32 vpid; /* tgid in the process's own pid namespace; 0 if unknown */
	u64 start_ns;  /* the process's start, ns since boot (start_boottime) */
	u64 pstart_ns; /* its parent's */
	u64 cgroup_id; /* its cgroup v2 cgroup */
	struct ns_key ns[NS_TYPES];
	struct ns_key owner[NS_TYPES]; /* owning user namespace of each */
	struct ns_key parent_pid;      /* parent of the pid namespace */
	struct ns_key parent_user;     /* parent of the user namespace */
	/* The last CG_LEVELS components of the cgroup v2 path, leaf first:
	 * where container runtimes name their containers; and of the memory
	 * controller's cgroup, which is in a v1 hierarchy on hosts that have
	 * them (where docker's cgroupfs driver names containers). */
	char cgroup[CG_LEVELS][CG_NAME];
	char cgroup_v1[CG_LEVELS][CG_NAME];
};

struct join {
	u32 kind; /* REC_JOIN */
	u32 serial;
	u32 tgid;
	u32 ver;
};

struct exit {
	u32 kind; /* REC_EXIT */
	u32 tgid;
	u64 start_ns;
};

/* What is kept per thread: the namespaces and cgroups last sent and their
 * version. */
struct thread {
	struct ns_key ns[NS_TYPES];
	u64 cgroup_id;
	u64 cset; /* its css_set: changes when it moves in any hierarchy */
	u32 ver;
	u32 last_serial;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, struct thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_KINDS);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

u32 next_ver = 0;

/* Ring records as BTF types, for bpf2go's Go types of them. */
const struct state *unused_state __attribute__((unused));
const struct join *unused_join __attribute__((unused));
const struct exit *unused_exit __attribute__((unused));

/* The highest serial joined so far: the reader waits for a join that is
 * not in the ring yet only while this is below the event's serial. */
u32 last_serial = 0;

static __always_inline void count_drop(u32 kind)
{
	u64 *n = bpf_map_lookup_elem(&drops, &kind);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* Every read below is a probe read, which yields zeros for a NULL
 * pointer: no branch per pointer, which keeps the verifier's paths few. */
static __always_inline void read_ns(struct ns_key *k, const struct ns_common *ns)
{
	k->inum = BPF_CORE_READ(ns, inum);
	if (bpf_core_field_exists(ns->ns_id))
		k->id = BPF_CORE_READ(ns, ns_id);
	else
		k->id = 0;
	k->_pad = 0;
}

/* The pid namespace a thread is in is numbers[level].ns of its struct
 * pid; numbers[level].nr is its pid there. */
static __always_inline const struct upid *task_upid(const struct task_struct *t)
{
	const struct pid *p = BPF_CORE_READ(t, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(p, level) & 63;
	return (const struct upid *)((const char *)p + bpf_core_field_offset(p->numbers) +
				     (u64)level * bpf_core_type_size(struct upid));
}

/* read_ids fills the namespaces of t in type order. */
static __always_inline void read_ids(const struct task_struct *t, struct ns_key *ns)
{
	const struct nsproxy *nsp = BPF_CORE_READ(t, nsproxy);
	read_ns(&ns[0], &BPF_CORE_READ(nsp, ipc_ns)->ns);
	read_ns(&ns[1], &BPF_CORE_READ(nsp, uts_ns)->ns);
	read_ns(&ns[2], &BPF_CORE_READ(t, cred, user_ns)->ns);
	read_ns(&ns[3], &BPF_CORE_READ(task_upid(t), ns)->ns);
	read_ns(&ns[4], &BPF_CORE_READ(nsp, cgroup_ns)->ns);
	read_ns(&ns[5], &BPF_CORE_READ(nsp, time_ns)->ns);
	read_ns(&ns[6], &BPF_CORE_READ(nsp, net_ns)->ns);
	read_ns(&ns[7], &BPF_CORE_READ(nsp, mnt_ns)->ns);
}

static __always_inline const struct kernfs_node *kn_parent(const struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((const struct kernfs_node___old *)kn, parent);
}

static __always_inline void read_path(const struct kernfs_node *kn, char (*out)[CG_NAME])
{
#pragma unroll
	for (int i = 0; i < CG_LEVELS; i++) {
		bpf_probe_read_kernel_str(out[i], CG_NAME, BPF_CORE_READ(kn, name));
		kn = kn_parent(kn);
	}
}

static __always_inline void read_cgroup(const struct task_struct *t, struct state *st)
{
	const struct css_set *cs = BPF_CORE_READ(t, cgroups);
	read_path(BPF_CORE_READ(cs, dfl_cgrp, kn), st->cgroup);
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)) {
		u32 id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		const struct cgroup_subsys_state *css = 0;
		bpf_probe_read_kernel(&css, sizeof(css), (const char *)cs + bpf_core_field_offset(cs->subsys) + (id & 31) * sizeof(css));
		read_path(BPF_CORE_READ(css, cgroup, kn), st->cgroup_v1);
	} else {
#pragma unroll
		for (int i = 0; i < CG_LEVELS; i++)
			st->cgroup_v1[i][0] = 0;
	}
}

/* read_state fills what a state record says beyond the namespaces. */
static __always_inline void read_state(const struct task_struct *t, struct state *st)
{
	const struct nsproxy *nsp = BPF_CORE_READ(t, nsproxy);
	const struct user_namespace *user = BPF_CORE_READ(t, cred, user_ns);
	const struct upid *u = task_upid(t);
	const struct pid_namespace *pidns = BPF_CORE_READ(u, ns);

	st->vpid = BPF_CORE_READ(u, nr);
	read_ns(&st->owner[0], &BPF_CORE_READ(nsp, ipc_ns, user_ns)->ns);
	read_ns(&st->owner[1], &BPF_CORE_READ(nsp, uts_ns, user_ns)->ns);
	read_ns(&st->owner[2], &BPF_CORE_READ(user, parent)->ns); /* a user namespace's owner is its parent */
	read_ns(&st->owner[3], &BPF_CORE_READ(pidns, user_ns)->ns);
	read_ns(&st->owner[4], &BPF_CORE_READ(nsp, cgroup_ns, user_ns)->ns);
	read_ns(&st->owner[5], &BPF_CORE_READ(nsp, time_ns, user_ns)->ns);
	read_ns(&st->owner[6], &BPF_CORE_READ(nsp, net_ns, user_ns)->ns);
	read_ns(&st->owner[7], &BPF_CORE_READ(nsp, mnt_ns, user_ns)->ns);
	read_ns(&st->parent_pid, &BPF_CORE_READ(pidns, parent)->ns);
	read_ns(&st->parent_user, &BPF_CORE_READ(user, parent)->ns);
}

static __always_inline bool same_ns(const struct ns_key *a, const struct ns_key *b)
{
#pragma unroll
	for (int i = 0; i < NS_TYPES; i++) {
		if (a[i].inum != b[i].inum || a[i].id != b[i].id)
			return false;
	}
	return true;
}

static __always_inline u32 record_serial(const struct audit_buffer *ab, const struct audit_context *ctx)
{
	if (bpf_core_field_exists(ab->stamp))
		return BPF_CORE_READ(ab, stamp.serial);
	if (bpf_core_field_exists(ctx->stamp))
		return BPF_CORE_READ(ctx, stamp.serial);
	return BPF_CORE_READ((const struct audit_context___old *)ctx, serial);
}

/* The slab cache audit_buffers come from, learnt from the first record
 * freed: every other cache's frees (most of the host's) return after one
 * comparison. The kernel may merge the cache with others of the same
 * size, so a free from it is a record's only if the object's ctx is the
 * current task's audit context. (The free cannot be recognised by its
 * call site: audit_log_end() tail-calls kmem_cache_free.) */
const struct kmem_cache *audit_cache = 0;

SEC("tp_btf/kmem_cache_free")
int BPF_PROG(audit_record_freed, unsigned long call_site, const void *ptr, const struct kmem_cache *s)
{
	if (audit_cache && s != audit_cache)
		return 0;
	const struct audit_buffer *ab = ptr;
	const struct task_struct *t = bpf_get_current_task_btf();
	const struct audit_context *actx = BPF_CORE_READ(ab, ctx);
	/* Records written for another task (or outside a task's audit
	 * context: softirq, kernel threads) have no subject here. */
	if (!actx || actx != BPF_CORE_READ(t, audit_context))
		return 0;
	u32 serial = record_serial(ab, actx);
	if (!serial)
		return 0;
	if (!audit_cache) {
		unsigned int size = s->object_size;
		if (size < bpf_core_type_size(struct audit_buffer) || size > 2 * bpf_core_type_size(struct audit_buffer))
			return 0;
		audit_cache = s;
	}
	u32 tid = t->pid;
	struct thread *th = bpf_map_lookup_elem(&threads, &tid);
	if (th && th->last_serial == serial)
		return 0; /* a later record of the same event */

	struct thread cur = {};
	read_ids(t, cur.ns);
	cur.cgroup_id = bpf_get_current_cgroup_id();
	cur.cset = (u64)BPF_CORE_READ(t, cgroups);
	u32 ver;
	if (th && th->cgroup_id == cur.cgroup_id && th->cset == cur.cset && same_ns(th->ns, cur.ns)) {
		ver = th->ver;
	} else {
		struct state *st = bpf_ringbuf_reserve(&events, sizeof(*st), 0);
		if (!st) {
			/* The event goes without a join (counted once, not per
			 * record); the state is sent again with the next event. */
			count_drop(DROP_STATE);
			count_drop(DROP_JOIN);
			if (th) {
				th->last_serial = serial;
			} else {
				struct thread none = {.last_serial = serial};
				bpf_map_update_elem(&threads, &tid, &none, BPF_ANY);
			}
			return 0;
		}
		/* Every field is written below (a failed probe read zero-fills). */
		ver = __sync_fetch_and_add(&next_ver, 1) + 1;
		st->kind = REC_STATE;
		st->ver = ver;
		st->tgid = t->tgid;
		st->tid = tid;
		st->ppid = BPF_CORE_READ(t, real_parent, tgid);
		st->start_ns = BPF_CORE_READ(t, group_leader, start_boottime);
		st->pstart_ns = BPF_CORE_READ(t, real_parent, group_leader, start_boottime);
		st->cgroup_id = cur.cgroup_id;
		read_cgroup(t, st);
		__builtin_memcpy(st->ns, cur.ns, sizeof(cur.ns));
		read_state(t, st);
		bpf_ringbuf_submit(st, BPF_RB_NO_WAKEUP);
		cur.ver = ver;
	}
	struct join *j = bpf_ringbuf_reserve(&events, sizeof(*j), 0);
	if (!j) {
		count_drop(DROP_JOIN);
	} else {
		j->kind = REC_JOIN;
		j->serial = serial;
		j->tgid = t->tgid;
		j->ver = ver;
		bpf_ringbuf_submit(j, BPF_RB_NO_WAKEUP);
	}
	if (serial > last_serial)
		last_serial = serial;
	if (th && th->ver == ver) {
		th->last_serial = serial;
	} else {
		cur.ver = ver;
		cur.last_serial = serial;
		bpf_map_update_elem(&threads, &tid, &cur, BPF_ANY);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(task_exited, struct task_struct *p, bool group_dead)
{
	u32 tid = p->pid;
	if (!bpf_map_lookup_elem(&threads, &tid))
		return 0;
	bpf_map_delete_elem(&threads, &tid);
	if (p->pid != p->tgid)
		return 0;
	struct exit *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_EXIT);
		return 0;
	}
	e->kind = REC_EXIT;
	e->tgid = p->tgid;
	e->start_ns = BPF_CORE_READ(p, start_boottime);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}
