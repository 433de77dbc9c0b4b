/* clock.h: the daemon's one clock.
 *
 * Monotonic nanoseconds (libuv's uv_hrtime: CLOCK_MONOTONIC), for tick
 * accounting, timeouts and rates. Any thread; never blocks; a few ns. */
#ifndef SP_DAEMON_CLOCK_H
#define SP_DAEMON_CLOCK_H

#include <stdint.h>
#include <uv.h>

static inline uint64_t sp_now_ns(void) { return uv_hrtime(); }

#endif /* SP_DAEMON_CLOCK_H */
