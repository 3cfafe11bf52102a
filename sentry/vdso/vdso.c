/*
 * cryo's vDSO: clock_gettime, gettimeofday, time and getcpu answered in the
 * application, from the data page ("vvar") the Sentry maps right below this
 * image and keeps current (sentry/src/kernel/time.rs writes it; the layout
 * is `VvarLayout` in sentry/src/vdso/mod.rs and must match `struct vvar`).
 *
 * Time is computed from the TSC with the Sentry's own parameters, the very
 * ones its trapped clock_gettime uses, so a vDSO read followed by a
 * trapped one never goes back. In fallback mode (no invariant TSC, or the
 * Sentry chose so) every function makes the real system call, which the
 * Sentry answers.
 *
 * Built freestanding (no libc, no relocations): see sentry/build.rs.
 */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;

struct vvar {
	u64 seq;         /* odd while the Sentry writes */
	u64 mode;        /* VVAR_MODE_* */
	u64 base_tsc;    /* the TSC at base_mono */
	i64 base_mono;   /* the sandbox's CLOCK_MONOTONIC at base_tsc, ns */
	i64 real_offset; /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns */
	u64 mult;        /* ns = (ticks * mult) >> shift */
	u64 shift;
	u64 cpu_mode;    /* VVAR_CPU_*: how getcpu answers */
};

#define VVAR_MODE_SYSCALL 0
#define VVAR_MODE_TSC 1
#define VVAR_CPU_SYSCALL 0
#define VVAR_CPU_ZERO 1

/* Placed by the linker script one page below the image's first byte. */
extern const volatile struct vvar _vvar __attribute__((visibility("hidden")));

struct k_timespec {
	i64 tv_sec;
	i64 tv_nsec;
};
struct k_timeval {
	i64 tv_sec;
	i64 tv_usec;
};
struct k_timezone {
	int tz_minuteswest;
	int tz_dsttime;
};

#define NSEC_PER_SEC 1000000000L
#define SYS_gettimeofday 96
#define SYS_time 201
#define SYS_clock_gettime 228
#define SYS_getcpu 309

static inline long syscall3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The TSC, ordered after the loads before it and before the loads after
 * it (the seqcount re-read must not pass it). */
static inline u64 rdtsc_ordered(void)
{
	u32 lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
	return ((u64)hi << 32) | lo;
}

/* The sandbox's monotonic time and realtime offset, or 0 in fallback mode. */
static inline int read_time(i64 *mono, i64 *real_offset)
{
	const volatile struct vvar *v = &_vvar;
	for (;;) {
		u64 seq = v->seq;
		__asm__ volatile("" ::: "memory");
		if (seq & 1) {
			__asm__ volatile("pause");
			continue;
		}
		u64 mode = v->mode;
		u64 base_tsc = v->base_tsc;
		i64 base = v->base_mono;
		i64 roff = v->real_offset;
		u64 mult = v->mult;
		u64 shift = v->shift & 63;
		u64 tsc = rdtsc_ordered();
		if (v->seq != seq)
			continue;
		if (mode != VVAR_MODE_TSC)
			return 0;
		/* A TSC a little behind the base (another CPU's, read a
		 * moment before the Sentry's) counts as the base. */
		u64 delta = tsc > base_tsc ? tsc - base_tsc : 0;
		*mono = base + (i64)(((unsigned __int128)delta * mult) >> shift);
		*real_offset = roff;
		return 1;
	}
}

int __vdso_clock_gettime(int clock, struct k_timespec *ts)
{
	i64 mono, roff;
	int real;
	switch (clock) {
	case 0: /* CLOCK_REALTIME */
	case 5: /* CLOCK_REALTIME_COARSE */
	case 11: /* CLOCK_TAI: the Sentry reads it as realtime */
		real = 1;
		break;
	case 1: /* CLOCK_MONOTONIC */
	case 4: /* CLOCK_MONOTONIC_RAW */
	case 6: /* CLOCK_MONOTONIC_COARSE */
	case 7: /* CLOCK_BOOTTIME */
		real = 0;
		break;
	default:
		return (int)syscall3(SYS_clock_gettime, clock, (long)ts, 0);
	}
	if (!read_time(&mono, &roff))
		return (int)syscall3(SYS_clock_gettime, clock, (long)ts, 0);
	u64 ns = (u64)(real ? mono + roff : mono);
	ts->tv_sec = (i64)(ns / NSEC_PER_SEC);
	ts->tv_nsec = (i64)(ns % NSEC_PER_SEC);
	return 0;
}

int __vdso_gettimeofday(struct k_timeval *tv, struct k_timezone *tz)
{
	i64 mono, roff;
	if (!read_time(&mono, &roff))
		return (int)syscall3(SYS_gettimeofday, (long)tv, (long)tz, 0);
	if (tv) {
		u64 ns = (u64)(mono + roff);
		tv->tv_sec = (i64)(ns / NSEC_PER_SEC);
		tv->tv_usec = (i64)(ns % NSEC_PER_SEC / 1000);
	}
	if (tz) {
		/* UTC, as the Sentry's gettimeofday says. */
		tz->tz_minuteswest = 0;
		tz->tz_dsttime = 0;
	}
	return 0;
}

i64 __vdso_time(i64 *t)
{
	i64 mono, roff;
	if (!read_time(&mono, &roff))
		return syscall3(SYS_time, (long)t, 0, 0);
	i64 sec = (i64)((u64)(mono + roff) / NSEC_PER_SEC);
	if (t)
		*t = sec;
	return sec;
}

int __vdso_getcpu(u32 *cpu, u32 *node, void *cache)
{
	if (_vvar.cpu_mode != VVAR_CPU_ZERO)
		return (int)syscall3(SYS_getcpu, (long)cpu, (long)node, (long)cache);
	/* Every task may run on CPU 0, the first its affinity allows: where
	 * the Sentry's getcpu puts it. */
	if (cpu)
		*cpu = 0;
	if (node)
		*node = 0;
	return 0;
}

int clock_gettime(int, struct k_timespec *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct k_timeval *, struct k_timezone *)
	__attribute__((weak, alias("__vdso_gettimeofday")));
i64 time(i64 *) __attribute__((weak, alias("__vdso_time")));
int getcpu(u32 *, u32 *, void *) __attribute__((weak, alias("__vdso_getcpu")));
