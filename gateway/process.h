/* process.h - what the kernel says about this process (CPU time, memory,
 * descriptors), read at each /metrics scrape for the process_* family.
 *
 * Reads /proc/self and getrusage/getrlimit; keeps no state and owns
 * nothing. */
#ifndef WSGATE_PROCESS_H
#define WSGATE_PROCESS_H

#include "core/metrics.h"

/* Fills out; out->ok is 0 when /proc is not readable (nothing rendered). */
void process_read(struct metrics_process *out);

/* The current time as Unix seconds with microseconds, for start_time. */
double process_now(void);

#endif
