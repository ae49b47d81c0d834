package subject

// The BPF object and its Go bindings are committed, so building auditns
// needs no clang. `go generate ./internal/subject` rebuilds them with
// Debian's clang (14 or later); CI rebuilds them and fails if they differ
// from what is committed.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -mcpu=v3" -target bpfel -type state -type join -type exit -type thread subject bpf/subject.bpf.c -- -I./bpf
