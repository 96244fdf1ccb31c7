/*
 * futex-floor: what waking N reader processes costs on this machine with nothing else in the
 * way. It is the lower bound for shm-bench's zero-copy mode (docs/BENCHMARKS.md): the same
 * wake-up protocol as shm-core (a shared futex word, a waiter count, FUTEX_WAKE only when
 * somebody waits, FUTEX_WAIT with a 250 ms timeout) but no segment, no reader table, no
 * seqlock and no payload.
 *
 * Usage: futex-floor [readers] [fps] [seconds]   (defaults: 20 30 10; 1 s warm-up)
 * Prints one JSON line with the same latency and CPU fields as shm-bench.
 *
 * Built and run by scripts/futex-floor.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_READERS 60
#define MAX_SAMPLES 20000

struct shared {
    _Alignas(64) _Atomic uint32_t word;
    _Atomic uint32_t waiters;
    _Alignas(64) _Atomic uint64_t frame;
    _Atomic uint64_t publish_ns;
    _Atomic uint64_t window_start;
    _Atomic uint64_t window_end;
    _Atomic int stop;
    uint64_t cpu_ns[MAX_READERS];
    uint32_t count[MAX_READERS];
    uint64_t latency_ns[MAX_READERS][MAX_SAMPLES];
};

static uint64_t clock_ns(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void reader(struct shared *s, int me) {
    struct timespec timeout = {0, 250000000};
    uint64_t last = 0, cpu0 = 0, cpu1 = 0;
    uint32_t n = 0;
    while (!atomic_load(&s->stop)) {
        uint32_t word = atomic_load(&s->word);
        atomic_fetch_add(&s->waiters, 1);
        if (atomic_load(&s->frame) == last)
            syscall(SYS_futex, &s->word, FUTEX_WAIT, word, &timeout, NULL, 0);
        atomic_fetch_sub(&s->waiters, 1);
        uint64_t frame = atomic_load(&s->frame);
        if (frame == last)
            continue;
        last = frame;
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        uint64_t published = atomic_load(&s->publish_ns);
        if (published >= atomic_load(&s->window_start) && cpu0 == 0)
            cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        if (published >= atomic_load(&s->window_end)) {
            if (cpu1 == 0)
                cpu1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        } else if (cpu0 != 0 && n < MAX_SAMPLES) {
            s->latency_ns[me][n++] = now - published;
        }
    }
    s->cpu_ns[me] = cpu1 > cpu0 ? cpu1 - cpu0 : 0;
    s->count[me] = n;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void wake_all(struct shared *s) {
    syscall(SYS_futex, &s->word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

int main(int argc, char **argv) {
    int readers = argc > 1 ? atoi(argv[1]) : 20;
    double fps = argc > 2 ? atof(argv[2]) : 30;
    double seconds = argc > 3 ? atof(argv[3]) : 10;
    if (readers < 1 || readers > MAX_READERS || fps <= 0 || seconds <= 0) {
        fprintf(stderr, "futex-floor: usage: futex-floor [readers 1..%d] [fps > 0] [seconds > 0]\n",
                MAX_READERS);
        return 2;
    }
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) {
        fprintf(stderr, "futex-floor: cannot map %zu bytes: %s\n", sizeof *s, strerror(errno));
        return 1;
    }
    uint64_t period = (uint64_t)(1e9 / fps);
    uint64_t start = clock_ns(CLOCK_MONOTONIC) + 300000000u;
    atomic_store(&s->window_start, start + 1000000000u);
    atomic_store(&s->window_end, start + 1000000000u + (uint64_t)(seconds * 1e9));
    pid_t pids[MAX_READERS];
    for (int i = 0; i < readers; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            fprintf(stderr, "futex-floor: cannot start reader %d: %s\n", i, strerror(errno));
            atomic_store(&s->stop, 1);
            atomic_fetch_add(&s->word, 1);
            wake_all(s);
            for (int k = 0; k < i; k++)
                waitpid(pids[k], NULL, 0);
            return 1;
        }
        if (pids[i] == 0) {
            reader(s, i);
            _exit(0);
        }
    }
    uint64_t published = 0;
    for (uint64_t k = 0;; k++) {
        uint64_t due = start + k * period;
        struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        atomic_store(&s->publish_ns, now);
        atomic_store(&s->frame, k + 1);
        atomic_fetch_add(&s->word, 1);
        if (atomic_load(&s->waiters) > 0)
            wake_all(s);
        if (now >= atomic_load(&s->window_end))
            break;
        if (now >= atomic_load(&s->window_start))
            published++;
    }
    usleep(100000);
    atomic_store(&s->stop, 1);
    atomic_fetch_add(&s->word, 1);
    wake_all(s);
    for (int i = 0; i < readers; i++)
        waitpid(pids[i], NULL, 0);

    static uint64_t all[MAX_READERS * MAX_SAMPLES];
    size_t m = 0;
    double cpu = 0;
    for (int i = 0; i < readers; i++) {
        cpu += (double)s->cpu_ns[i];
        memcpy(all + m, s->latency_ns[i], s->count[i] * sizeof(uint64_t));
        m += s->count[i];
    }
    if (m == 0) {
        fprintf(stderr, "futex-floor: no frame was received\n");
        return 1;
    }
    qsort(all, m, sizeof all[0], cmp_u64);
#define PCT(p) (all[(size_t)((p) * (m - 1))] / 1e3)
    printf("{\"mode\":\"futex-floor\",\"readers\":%d,\"fps\":%g,\"seconds\":%g,\"frames_published\":%llu,"
           "\"frames_received\":%zu,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
           "\"readers_cpu_pct_total\":%.3f,\"cpu_us_per_wake\":%.2f}\n",
           readers, fps, seconds, (unsigned long long)published, m, PCT(0.50), PCT(0.90), PCT(0.99),
           all[m - 1] / 1e3, cpu / 1e9 / seconds * 100, cpu / 1e3 / (double)m);
    return 0;
}
