/* process.c - see process.h. */
#include "process.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

double process_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* Descriptors open now, not counting the one that lists them. */
static int count_fds(unsigned *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    *out = n ? n - 1 : 0;
    return 0;
}

void process_read(struct metrics_process *out)
{
    memset(out, 0, sizeof *out);
    struct rusage ru;
    struct rlimit rl;
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    int ok = f && fscanf(f, "%llu %llu", &size, &resident) == 2;
    if (f)
        fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (!ok || page <= 0 || count_fds(&out->open_fds) < 0 ||
        getrusage(RUSAGE_SELF, &ru) < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    out->rss_bytes = resident * (unsigned long long)page;
    out->virtual_bytes = size * (unsigned long long)page;
    out->cpu_seconds = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    out->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0u : (unsigned)rl.rlim_cur;
    out->ok = 1;
}
