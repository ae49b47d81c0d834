/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types auditns's programs read, declared with only the
 * fields they use. preserve_access_index makes every access a CO-RE
 * relocation: the loader finds each field in the running kernel's BTF
 * (/sys/kernel/btf/vmlinux), so one object works on any kernel with BTF
 * whatever its layout. A field a kernel lacks is tested with
 * bpf_core_field_exists before it is read.
 */
#ifndef AUDITNS_TYPES_H
#define AUDITNS_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/* 6.18 keeps ns_id in an anonymous union of struct ns_common; older
 * kernels have no ns_id (see bpf_core_field_exists in subject.bpf.c). */
struct ns_common {
	unsigned int inum;
	u64 ns_id;
};

struct user_namespace {
	struct user_namespace *parent;
	struct ns_common ns;
};

struct uts_namespace {
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct ipc_namespace {
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct mnt_namespace {
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct net {
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct time_namespace {
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct cgroup_namespace {
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct pid_namespace {
	struct pid_namespace *parent;
	struct user_namespace *user_ns;
	struct ns_common ns;
};

struct nsproxy {
	struct uts_namespace *uts_ns;
	struct ipc_namespace *ipc_ns;
	struct mnt_namespace *mnt_ns;
	struct net *net_ns;
	struct time_namespace *time_ns;
	struct cgroup_namespace *cgroup_ns;
};

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

struct cred {
	struct user_namespace *user_ns;
};

struct audit_stamp {
	unsigned int serial;
};

struct audit_context {
	struct audit_stamp stamp;
};

/* Before Linux 6.15 the serial was a member of the context itself. */
struct audit_context___old {
	unsigned int serial;
};

struct audit_buffer {
	struct audit_context *ctx;
	struct audit_stamp stamp;
};

struct kmem_cache {
	unsigned int object_size;
	const char *name;
};

/* Since Linux 6.15 the parent is __parent (RCU); before, parent. */
struct kernfs_node {
	const char *name;
	struct kernfs_node *__parent;
};

struct kernfs_node___old {
	struct kernfs_node *parent;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

/* The enumerator's value is relocated to the running kernel's. */
enum cgroup_subsys_id {
	memory_cgrp_id = 0,
};

struct css_set {
	struct cgroup_subsys_state *subsys[1];
	struct cgroup *dfl_cgrp;
};

struct task_struct {
	struct css_set *cgroups;
	int pid;
	int tgid;
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct nsproxy *nsproxy;
	const struct cred *cred;
	struct pid *thread_pid;
	u64 start_boottime;
	struct audit_context *audit_context;
};

#pragma clang attribute pop

#endif
