/*
 * threads.c — the pool of worker threads that runs the CNN kernels' batch-parallel loops (nn.h says how
 * to use it), and vgrad._C.num_threads.
 *
 * Why a pool of our own rather than OpenMP: it is small enough to read; idle workers sleep on a condition
 * variable instead of spinning (the machines are shared, and NumPy's OpenBLAS has spinning threads of its
 * own); a process forked from one that used it (multiprocessing's workers) starts afresh instead of
 * waiting for threads that do not exist there (GNU OpenMP hangs); and a second Python thread that calls a
 * kernel while the pool is busy runs its loop alone instead of waiting.
 *
 * A job is (fn, ctx, tasks): workers and the caller take task numbers from one atomic counter until none
 * are left, so a slow thread (another process on its core) does not hold the others up. The caller then
 * waits until every worker that took part has finished, after which nothing of the job is touched again.
 */
#include "nn.h" /* first: Python.h sets the feature macros (sched_getaffinity, pthread_sigmask) */

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

/* The most threads the pool will use. */
#define MAX_THREADS 64
/* Work below this much per thread (in the units of vg_threads_for's cost: about 0.1 ns each of one core's
   time) is done by fewer threads: waking a sleeping worker costs some microseconds. */
#define MIN_COST_PER_THREAD 200000.0

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* workers wait here for a new generation */
    pthread_cond_t done; /* the caller waits here for running == 0 */
    int configured;      /* threads to use (>= 1, the caller included); 0 until first read from the environment */
    int started;         /* worker threads that exist (ids 1 .. started) */
    atomic_int busy;     /* a job is being run */
    unsigned long generation;
    /* the current job */
    vg_task_fn fn;
    void *ctx;
    npy_intp tasks;
    atomic_llong next;
    int job_threads; /* the caller and workers 1 .. job_threads - 1 take part */
    int running;     /* workers that took part and have not finished */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void run_tasks(vg_task_fn fn, void *ctx, npy_intp tasks, int thread)
{
    for (;;) {
        const long long task = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (task >= tasks)
            return;
        fn(ctx, (npy_intp)task, thread);
    }
}

static void *worker(void *arg)
{
    const int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.lock);
    /* Workers are started by vg_parallel with the lock held, which sets up a job (a new generation) before
       letting go of it: the first generation this worker sees is that job, in which it takes part. */
    unsigned long seen = pool.generation - 1;
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (id >= pool.job_threads)
            continue;
        vg_task_fn fn = pool.fn;
        void *ctx = pool.ctx;
        const npy_intp tasks = pool.tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, ctx, tasks, id);
        pthread_mutex_lock(&pool.lock);
        if (--pool.running == 0)
            pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* In a child process after fork() only the forking thread exists: the pool starts again from nothing
   (its lock may have been held by another thread of the parent). */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.started = 0;
    pool.running = 0;
    pool.job_threads = 0;
    atomic_store(&pool.busy, 0);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

/* Start workers until `wanted` exist (or creating one fails: then fewer are used). With pool.lock held. */
static void start_workers(int wanted)
{
    pthread_once(&atfork_once, register_atfork);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals (Ctrl-C) stay with Python's threads */
    while (pool.started < wanted) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker, (void *)(intptr_t)(pool.started + 1));
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        pool.started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The first number of an environment variable holding a positive int ("4", or OpenMP's "4,2"), else 0. */
static int env_threads(const char *name)
{
    const char *s = getenv(name);
    if (s == NULL)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1)
        return 0;
    return v > MAX_THREADS ? MAX_THREADS : (int)v;
}

static int cpus_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n >= 1)
            return n > MAX_THREADS ? MAX_THREADS : n;
    }
    return 1;
}

/* The configured number of threads; read from the environment the first time. With the GIL held. */
static int configured_threads(void)
{
    if (pool.configured == 0) {
        int n = env_threads("VGRAD_NUM_THREADS");
        if (n == 0)
            n = env_threads("OMP_NUM_THREADS");
        pool.configured = n ? n : cpus_available();
    }
    return pool.configured;
}

int vg_threads_for(npy_intp tasks, double cost)
{
    double by_cost = cost / MIN_COST_PER_THREAD;
    int n = configured_threads();
    if (tasks < n)
        n = tasks < 1 ? 1 : (int)tasks;
    if (by_cost < n)
        n = by_cost < 1 ? 1 : (int)by_cost;
    return n;
}

void vg_parallel(int threads, npy_intp tasks, vg_task_fn fn, void *ctx)
{
    int expected = 0;
    if (threads > 1 && atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {
        pthread_mutex_lock(&pool.lock);
        if (pool.started < threads - 1)
            start_workers(threads - 1);
        if (threads > pool.started + 1)
            threads = pool.started + 1;
        if (threads > 1) {
            pool.fn = fn;
            pool.ctx = ctx;
            pool.tasks = tasks;
            atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
            pool.job_threads = threads;
            pool.running = threads - 1;
            pool.generation++;
            pthread_cond_broadcast(&pool.wake);
            pthread_mutex_unlock(&pool.lock);
            run_tasks(fn, ctx, tasks, 0);
            pthread_mutex_lock(&pool.lock);
            while (pool.running > 0)
                pthread_cond_wait(&pool.done, &pool.lock);
            pool.job_threads = 0;
            pthread_mutex_unlock(&pool.lock);
            atomic_store(&pool.busy, 0);
            return;
        }
        pthread_mutex_unlock(&pool.lock);
        atomic_store(&pool.busy, 0);
    }
    for (npy_intp task = 0; task < tasks; task++)
        fn(ctx, task, 0);
}

/* num_threads(n) -> the number of threads the CNN kernels used before; n >= 1 sets it to n, 0 only reads it.
   (One required argument, so that a call that lost it is an error rather than a silent read.) */
VG_BOUNDARY(num_threads)
{
    const char *op = "num_threads";
    Py_ssize_t n;
    if (vg_check_nargs(op, nargs, 1) < 0 || vg_parse_int(op, "the number of threads", args[0], &n) < 0)
        return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "%s: the number of threads must be at least 1 (or 0 to read it), got %zd",
                     op, n);
        return NULL;
    }
    const int before = configured_threads();
    if (n > 0)
        pool.configured = n > MAX_THREADS ? MAX_THREADS : (int)n;
    return PyLong_FromLong(before);
}
