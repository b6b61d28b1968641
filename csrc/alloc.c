/*
 * alloc.c — a cache of large data buffers for vgrad's own arrays: a NumPy data-memory handler (NEP 49).
 *
 * Why: a training step allocates the same large arrays (activations, gradients, saved contexts) every step
 * and frees them at its end. glibc serves blocks above its mmap threshold (128 KiB at first, adjusted as the
 * process runs) by mmap and hands them back to the kernel on free, so the next step maps them again and
 * takes a minor page fault on every 4 KiB page it touches: tens of thousands of faults a step, and a step
 * whose speed depends on what the process allocated before. This handler keeps freed blocks in a free list
 * of exact sizes instead, and gives them to the next allocation of the same size, whose pages are then
 * already mapped.
 *
 * Scope: only vgrad's own arrays use it. vg_cached_array sets the handler (PyDataMem_SetHandler, a context
 * variable) around the one NumPy call that allocates the array, and only for arrays of at least
 * VG_CACHE_MIN_BYTES; swap_data_handler sets it for a block of Python code (vgrad.memory.cached(), around
 * the optimizers' updates); everything else NumPy allocates stays with NumPy's default handler. NumPy keeps a
 * reference to the handler's capsule in every array that owns its data and frees the data through it, so an
 * array allocated here is freed here, whatever the handler in effect when it dies. The handler and its
 * state are static: they outlive the module object, as the arrays may.
 *
 * Bounds: the blocks held (not those in use) total at most the cap (vg.set_cache_limit, the environment
 * variable VGRAD_CACHE_BYTES, or by default an eighth of the physical memory, at most 1 GiB); a block that
 * does not fit is freed at once. vg.empty_cache() frees every block held. A cap of 0 turns caching off.
 * An allocation that finds no block of its size first frees held blocks of other sizes if the memory kept
 * (blocks in use and held) would otherwise exceed the peak of the blocks in use by more than an eighth, so
 * the cache never makes the process keep much more than its arrays needed at once.
 *
 * Every block is malloc'ed with a small header in front that records its size, so that free, calloc and
 * realloc never depend on the size NumPy passes. Threads: NumPy frees an array wherever its last reference
 * goes, and the kernels release the GIL, so the free list is guarded by a mutex of its own. Zeroing happens
 * only for calloc (PyArray_ZEROS): a reused block is cleared with memset, a new one comes from calloc.
 */
#include "checked.h"
#include "vgrad.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Arrays smaller than this keep NumPy's default handler: glibc serves them from its heap without page
   faults, and switching the handler costs two context-variable writes (about 0.3 us together, measured as
   CPU time per allocation against NumPy's handler: docs/memory.md). 128 KiB is
   glibc's initial mmap threshold, above which its blocks are mapped and unmapped on every use. */
#define VG_CACHE_MIN_BYTES ((size_t)128 * 1024)
/* Distinct block sizes held at once. A training loop allocates a few dozen distinct large shapes; a size
   that finds no free bucket is freed instead of held. */
#define VG_CACHE_BUCKETS 64

/* In front of every block; its alignment keeps the data aligned as malloc's own blocks are. */
typedef struct block_header {
    _Alignas(max_align_t) size_t size; /* bytes of data after the header */
    struct block_header *next;         /* the next free block of the same size, while held */
} block_header;

typedef struct {
    size_t size;         /* the data size of the blocks here; meaningless while count is 0 */
    size_t count;        /* blocks held */
    block_header *head;  /* the most recently freed first: the one most likely still in the cache */
} bucket;

static struct {
    pthread_mutex_t lock;
    bucket buckets[VG_CACHE_BUCKETS];
    size_t held_bytes;   /* data bytes of the blocks held */
    size_t in_use_bytes; /* data bytes of the blocks of at least VG_CACHE_MIN_BYTES in arrays now */
    size_t peak_bytes;   /* the most in_use_bytes has been */
    size_t cap;          /* at most this many held */
    int cap_set;         /* cap read from the environment (or set) yet */
    unsigned long long hits, misses, not_held;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t default_cap(void)
{
    const char *env = getenv("VGRAD_CACHE_BYTES");
    if (env != NULL && *env != '\0') {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && env[0] >= '0' && env[0] <= '9') /* strtoull would take "-1" as the largest */
            return (size_t)v;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t ram = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
    size_t cap = ram / 8;
    return cap == 0 || cap > ((size_t)1 << 30) ? (size_t)1 << 30 : cap;
}

/* Called with the lock held. */
static void ensure_cap(void)
{
    if (!cache.cap_set) {
        cache.cap = default_cap();
        cache.cap_set = 1;
    }
}

/* A held block of exactly `size` data bytes, taken out of the list, or NULL. Lock held. */
static block_header *take(size_t size)
{
    for (int i = 0; i < VG_CACHE_BUCKETS; i++) {
        bucket *b = &cache.buckets[i];
        if (b->count != 0 && b->size == size) {
            block_header *h = b->head;
            b->head = h->next;
            b->count--;
            cache.held_bytes -= size;
            return h;
        }
    }
    return NULL;
}

/* Hold h if it fits under the cap and in a bucket; 1 if held. Lock held. */
static int hold(block_header *h)
{
    ensure_cap();
    if (h->size < VG_CACHE_MIN_BYTES || h->size > cache.cap || cache.held_bytes > cache.cap - h->size)
        return 0;
    bucket *free_slot = NULL;
    for (int i = 0; i < VG_CACHE_BUCKETS; i++) {
        bucket *b = &cache.buckets[i];
        if (b->count != 0 && b->size == h->size) {
            free_slot = b;
            break;
        }
        if (b->count == 0 && free_slot == NULL)
            free_slot = b;
    }
    if (free_slot == NULL)
        return 0;
    if (free_slot->count == 0)
        free_slot->size = h->size;
    h->next = free_slot->head;
    free_slot->head = h;
    free_slot->count++;
    cache.held_bytes += h->size;
    return 1;
}

/* The list of every held block, emptied. Lock held; the caller frees them after unlocking. */
static block_header *take_all(void)
{
    block_header *all = NULL;
    for (int i = 0; i < VG_CACHE_BUCKETS; i++) {
        bucket *b = &cache.buckets[i];
        while (b->head != NULL) {
            block_header *h = b->head;
            b->head = h->next;
            h->next = all;
            all = h;
        }
        b->count = 0;
    }
    cache.held_bytes = 0;
    return all;
}

static void free_list(block_header *h)
{
    while (h != NULL) {
        block_header *next = h->next;
        free(h);
        h = next;
    }
}

/* Before a new block of `size` bytes is made: held blocks (of other sizes) taken out of the list, as few as
   keep the memory kept (blocks in use and held) within the peak of the blocks in use, which this block may
   raise, plus an eighth. Without this, a loop whose sizes peak at different times would keep the sum of
   each size's own peak; with it, the cache makes the process keep little more than its arrays needed at
   once. The eighth lets a loop whose small blocks come and go at slightly different moments each step
   (an update's small temporary made while the large one of last step is held) keep its large blocks
   instead of giving them back and mapping them again every step. The caller frees the blocks taken after
   unlocking. Lock held. */
static block_header *release_above_peak(size_t size)
{
    size_t peak = cache.peak_bytes + cache.peak_bytes / 8;
    size_t budget = cache.in_use_bytes + size > peak ? cache.in_use_bytes + size : peak;
    block_header *released = NULL;
    for (int i = 0; i < VG_CACHE_BUCKETS && cache.in_use_bytes + cache.held_bytes + size > budget; i++) {
        bucket *b = &cache.buckets[i];
        while (b->head != NULL && cache.in_use_bytes + cache.held_bytes + size > budget) {
            block_header *h = b->head;
            b->head = h->next;
            b->count--;
            cache.held_bytes -= h->size;
            h->next = released;
            released = h;
        }
    }
    return released;
}

/* The books of the blocks in arrays: `added` bytes came into use, `removed` went out. Lock held. */
static void count_in_use(size_t added, size_t removed)
{
    cache.in_use_bytes = cache.in_use_bytes + added - removed;
    if (cache.in_use_bytes > cache.peak_bytes)
        cache.peak_bytes = cache.in_use_bytes;
}

static void *data_of(block_header *h)
{
    return h + 1;
}

static block_header *header_of(void *p)
{
    return (block_header *)p - 1;
}

/* A block of `size` data bytes: a held one of that size if there is one, else a new one from malloc or (for
   zeroed) calloc. NULL when size overflows with the header or memory is short. */
static void *cache_get(size_t size, int zeroed)
{
    if (size > SIZE_MAX - sizeof(block_header))
        return NULL;
    block_header *h = NULL, *released = NULL;
    if (size >= VG_CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cache.lock);
        h = take(size);
        if (h != NULL)
            cache.hits++;
        else {
            cache.misses++;
            released = release_above_peak(size);
        }
        count_in_use(size, 0);
        pthread_mutex_unlock(&cache.lock);
        free_list(released);
    }
    if (h != NULL) {
        if (zeroed)
            memset(data_of(h), 0, size);
    } else {
        h = zeroed ? calloc(1, sizeof(block_header) + size) : malloc(sizeof(block_header) + size);
        if (h == NULL) {
            if (size >= VG_CACHE_MIN_BYTES) {
                pthread_mutex_lock(&cache.lock);
                count_in_use(0, size);
                pthread_mutex_unlock(&cache.lock);
            }
            return NULL;
        }
        h->size = size;
    }
    h->next = NULL;
    return data_of(h);
}

static void *handler_malloc(void *ctx, size_t size)
{
    return cache_get(size, 0);
}

static void *handler_calloc(void *ctx, size_t nelem, size_t elsize)
{
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size))
        return NULL;
    return cache_get(size, 1);
}

static void *handler_realloc(void *ctx, void *ptr, size_t new_size)
{
    if (ptr == NULL)
        return cache_get(new_size, 0);
    if (new_size > SIZE_MAX - sizeof(block_header))
        return NULL;
    size_t old_size = header_of(ptr)->size;
    block_header *h = realloc(header_of(ptr), sizeof(block_header) + new_size);
    if (h == NULL)
        return NULL;
    h->size = new_size;
    if (old_size >= VG_CACHE_MIN_BYTES || new_size >= VG_CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cache.lock);
        count_in_use(new_size >= VG_CACHE_MIN_BYTES ? new_size : 0, old_size >= VG_CACHE_MIN_BYTES ? old_size : 0);
        pthread_mutex_unlock(&cache.lock);
    }
    return data_of(h);
}

/* `size` is what NumPy passes; the header's size is what was allocated, and is used instead. */
static void handler_free(void *ctx, void *ptr, size_t size)
{
    if (ptr == NULL)
        return;
    block_header *h = header_of(ptr);
    int held = 0;
    if (h->size >= VG_CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cache.lock);
        count_in_use(0, h->size);
        held = hold(h);
        if (!held)
            cache.not_held++;
        pthread_mutex_unlock(&cache.lock);
    }
    if (!held)
        free(h);
}

static PyDataMem_Handler cache_handler = {
    "vgrad_cache",
    1,
    {
        NULL,
        handler_malloc,
        handler_calloc,
        handler_realloc,
        handler_free,
    },
};

/* The capsule NumPy stores in each array; created once and never released (arrays refer to it). */
static PyObject *handler_capsule;

/* The capsule, made on first use; NULL with an exception if that fails. */
static PyObject *our_capsule(void)
{
    if (handler_capsule == NULL)
        handler_capsule = PyCapsule_New(&cache_handler, "mem_handler", NULL);
    return handler_capsule;
}

static int cache_enabled(void)
{
    pthread_mutex_lock(&cache.lock);
    ensure_cap();
    int on = cache.cap != 0;
    pthread_mutex_unlock(&cache.lock);
    return on;
}

PyObject *vg_cached_array(int ndim, const npy_intp *dims, PyArray_Descr *descr, int fortran, int zeroed)
{
    /* The caller checked that the shape can exist, so the byte count does not overflow. */
    npy_intp nbytes = PyDataType_ELSIZE(descr);
    for (int i = 0; i < ndim; i++)
        nbytes *= dims[i];
    PyObject *old = NULL;
    if ((size_t)nbytes >= VG_CACHE_MIN_BYTES && cache_enabled()) {
        PyObject *ours = our_capsule();
        if (ours == NULL || (old = PyDataMem_SetHandler(ours)) == NULL) {
            Py_DECREF(descr);
            return NULL;
        }
    }
    PyObject *arr = zeroed ? PyArray_Zeros(ndim, (npy_intp *)dims, descr, fortran)
                           : PyArray_Empty(ndim, (npy_intp *)dims, descr, fortran);
    if (old != NULL) {
        PyObject *ours = PyDataMem_SetHandler(old);
        Py_DECREF(old);
        if (ours == NULL) {
            Py_XDECREF(arr);
            return NULL;
        }
        Py_DECREF(ours);
    }
    return arr;
}

/* ---- Python entry points ----------------------------------------------------------------------------- */

/* A dtype from Python (anything np.dtype takes): 0, or -1 with TypeError naming `op`. */
static int parse_dtype(const char *op, PyObject *obj, PyArray_Descr **descr)
{
    *descr = NULL;
    if (PyArray_DescrConverter(obj, descr))
        return 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_Format(PyExc_TypeError, "%s: the dtype %R is not one NumPy knows: %S", op, obj, value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return -1;
}

/* A dtype and a shape from Python: 0, or -1 with an exception naming `op`. */
static int parse_shape_dtype(const char *op, PyObject *const *args, Py_ssize_t nargs, PyArray_Dims *shape,
                             PyArray_Descr **descr)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s takes 2 arguments (shape, dtype), %zd given", op, nargs);
        return -1;
    }
    if (parse_dtype(op, args[1], descr) < 0)
        return -1;
    if (vg_parse_shape(op, "the shape", args[0], shape) < 0) {
        Py_CLEAR(*descr);
        return -1;
    }
    if (vg_check_shape(op, "the shape", shape->len, shape->ptr, PyDataType_ELSIZE(*descr)) < 0) {
        PyDimMem_FREE(shape->ptr);
        Py_CLEAR(*descr);
        return -1;
    }
    return 0;
}

static PyObject *new_from_python(const char *op, PyObject *const *args, Py_ssize_t nargs, int zeroed)
{
    PyArray_Dims shape;
    PyArray_Descr *descr;
    if (parse_shape_dtype(op, args, nargs, &shape, &descr) < 0)
        return NULL;
    PyObject *arr = vg_cached_array(shape.len, shape.ptr, descr, 0, zeroed); /* steals descr */
    PyDimMem_FREE(shape.ptr);
    return arr;
}

VG_BOUNDARY(cached_empty)
{
    return new_from_python("cached_empty", args, nargs, 0);
}

VG_BOUNDARY(cached_zeros)
{
    return new_from_python("cached_zeros", args, nargs, 1);
}

VG_BOUNDARY(cached_copy)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "cached_copy takes 2 arguments (array, dtype), %zd given", nargs);
        return NULL;
    }
    if (!PyArray_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "cached_copy: expected an ndarray, got %s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    PyArrayObject *src = (PyArrayObject *)args[0];
    PyArray_Descr *descr;
    if (parse_dtype("cached_copy", args[1], &descr) < 0)
        return NULL;
    PyObject *dst = vg_cached_array(PyArray_NDIM(src), PyArray_DIMS(src), descr, 0, 0);
    if (dst != NULL && PyArray_CopyInto((PyArrayObject *)dst, src) < 0)
        Py_CLEAR(dst);
    return dst;
}

/* For vgrad.memory.cached(): every NumPy allocation of the current context (thread, task) goes through the
   cache until the previous handler is put back. None installs the cache's handler; a handler capsule that
   an earlier call returned puts that one back. Returns the handler that was in effect. */
VG_BOUNDARY(_swap_data_handler)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "swap_data_handler takes 1 argument (None or a handler), %zd given", nargs);
        return NULL;
    }
    PyObject *handler = args[0] == Py_None ? our_capsule() : args[0];
    if (handler == NULL)
        return NULL;
    if (!PyCapsule_IsValid(handler, "mem_handler")) {
        PyErr_Format(PyExc_TypeError, "swap_data_handler: expected None or a NumPy data-memory handler, got %s",
                     Py_TYPE(handler)->tp_name);
        return NULL;
    }
    return PyDataMem_SetHandler(handler);
}

VG_BOUNDARY(_empty_cache)
{
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError, "empty_cache takes no arguments, %zd given", nargs);
        return NULL;
    }
    pthread_mutex_lock(&cache.lock);
    block_header *all = take_all();
    cache.peak_bytes = cache.in_use_bytes; /* the peak that bounds what is kept starts afresh */
    pthread_mutex_unlock(&cache.lock);
    free_list(all);
    Py_RETURN_NONE;
}

VG_BOUNDARY(_set_cache_limit)
{
    Py_ssize_t limit;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "set_cache_limit takes 1 argument (bytes), %zd given", nargs);
        return NULL;
    }
    if (vg_parse_int("set_cache_limit", "the limit", args[0], &limit) < 0)
        return NULL;
    if (limit < 0) {
        PyErr_Format(PyExc_ValueError, "set_cache_limit: the limit must be >= 0 bytes, got %zd", limit);
        return NULL;
    }
    pthread_mutex_lock(&cache.lock);
    ensure_cap();
    size_t previous = cache.cap;
    cache.cap = (size_t)limit;
    /* Blocks held beyond the new cap go at once: all of them, the simplest order that keeps the bound. */
    block_header *all = cache.held_bytes > cache.cap ? take_all() : NULL;
    pthread_mutex_unlock(&cache.lock);
    free_list(all);
    return PyLong_FromSize_t(previous);
}

VG_BOUNDARY(_cache_info)
{
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError, "cache_info takes no arguments, %zd given", nargs);
        return NULL;
    }
    pthread_mutex_lock(&cache.lock);
    ensure_cap();
    size_t held = cache.held_bytes, cap = cache.cap, blocks = 0, sizes = 0, in_use = cache.in_use_bytes,
           peak = cache.peak_bytes;
    for (int i = 0; i < VG_CACHE_BUCKETS; i++) {
        blocks += cache.buckets[i].count;
        sizes += cache.buckets[i].count != 0;
    }
    unsigned long long hits = cache.hits, misses = cache.misses, not_held = cache.not_held;
    pthread_mutex_unlock(&cache.lock);
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:K,s:K,s:K,s:n}", "held_bytes", (Py_ssize_t)held,
                         "in_use_bytes", (Py_ssize_t)in_use, "peak_in_use_bytes", (Py_ssize_t)peak, "held_blocks",
                         (Py_ssize_t)blocks, "held_sizes", (Py_ssize_t)sizes, "limit_bytes", (Py_ssize_t)cap,
                         "hits", hits, "misses", misses, "not_held", not_held, "min_bytes",
                         (Py_ssize_t)VG_CACHE_MIN_BYTES);
}
