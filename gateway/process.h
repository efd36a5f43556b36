/* process.h - what the kernel says about this process (CPU time, memory,
 * descriptors), read at each /metrics scrape for the process_* family.
 *
 * Reads /proc and getrusage/getrlimit; keeps no state and owns nothing. */
#ifndef WSGATE_PROCESS_H
#define WSGATE_PROCESS_H

#include "core/metrics.h"

/* Fills out but for open_fds (see process_open_fds); out->ok is 0 when
 * /proc is not readable (nothing rendered). Cheap: O(1) in connections. */
void process_read(struct metrics_process *out);

/* Sets *out to the descriptors process pid (0: this one) holds; -1 when
 * /proc does not say. On kernels before 6.2 it walks them all: O(open
 * descriptors), so read it when a scrape asks, not on a timer. */
int process_open_fds(int pid, unsigned *out);

/* The current time as Unix seconds with microseconds, for start_time. */
double process_now(void);

#endif
