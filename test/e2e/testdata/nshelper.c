// nshelper: processes that change namespaces in ways the e2e tests check.
//
//   nshelper clone3 MARKER TRUTH  a clone3(CLONE_NEWUTS|CLONE_NEWNET) child
//                                 writes its uts and net links to TRUTH, then
//                                 execs /bin/true MARKER
//   nshelper flood N              N children, each unshare(CLONE_NEWUTS |
//                                 CLONE_NEWIPC) and exit at once
#define _GNU_SOURCE
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int child_clone3(const char *marker, const char *truth)
{
	char uts[64] = {0}, net[64] = {0};
	if (readlink("/proc/self/ns/uts", uts, sizeof(uts) - 1) < 0 ||
	    readlink("/proc/self/ns/net", net, sizeof(net) - 1) < 0)
		return 1;
	FILE *f = fopen(truth, "w");
	if (!f)
		return 1;
	fprintf(f, "%s %s\n", uts, net);
	fclose(f);
	execl("/bin/true", "true", marker, (char *)NULL);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "clone3") == 0) {
		struct clone_args args;
		memset(&args, 0, sizeof(args));
		args.flags = CLONE_NEWUTS | CLONE_NEWNET;
		args.exit_signal = SIGCHLD;
		long pid = syscall(SYS_clone3, &args, sizeof(args));
		if (pid < 0) {
			perror("clone3");
			return 1;
		}
		if (pid == 0)
			_exit(child_clone3(argv[2], argv[3]));
		int st;
		waitpid((pid_t)pid, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	}
	if (argc == 3 && strcmp(argv[1], "flood") == 0) {
		int n = atoi(argv[2]), running = 0, failed = 0;
		for (int i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid < 0) {
				perror("fork");
				return 1;
			}
			if (pid == 0)
				_exit(unshare(CLONE_NEWUTS | CLONE_NEWIPC) == 0 ? 0 : 1);
			if (++running >= 64) {
				int st;
				if (wait(&st) > 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
					failed++;
				running--;
			}
		}
		int st;
		while (wait(&st) > 0)
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				failed++;
		return failed ? 1 : 0;
	}
	fprintf(stderr, "usage: nshelper clone3 MARKER TRUTH | nshelper flood N\n");
	return 2;
}
