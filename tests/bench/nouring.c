/* nouring - run a command with io_uring forbidden, as in a container.
 *
 *   nouring COMMAND [ARGS...]
 *
 * The default seccomp profiles of Docker and Podman refuse io_uring_setup,
 * io_uring_enter and io_uring_register with EPERM, so a wsgate started by
 * `docker compose up` falls back to one send() per write (net/sendq.h).
 * This wrapper gives a process on the host the same refusal, so that
 * tests/bench/run.sh --no-uring can measure that fallback: it sets
 * no_new_privs, installs a seccomp filter that answers those three calls
 * EPERM and allows every other, and execs COMMAND, which inherits the
 * filter (so do its children: wsgate's --workers).
 *
 * x86_64 only (tests/bench/CMakeLists.txt builds it nowhere else): the
 * filter checks the syscall ABI and kills the process on any other (i386,
 * x32), whose numbers differ, rather than let io_uring through. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* The filter tests one range. */
_Static_assert(__NR_io_uring_enter == __NR_io_uring_setup + 1 &&
                   __NR_io_uring_register == __NR_io_uring_setup + 2,
               "io_uring syscall numbers are not consecutive");

#define X32_SYSCALL_BIT 0x40000000u

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: nouring COMMAND [ARGS...]\n");
        return 2;
    }
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __NR_io_uring_setup, 0, 2),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        perror("nouring: prctl(PR_SET_NO_NEW_PRIVS)");
        return 1;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
        perror("nouring: prctl(PR_SET_SECCOMP)");
        return 1;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "nouring: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
