/*
 * xlshim.c - an LD_PRELOAD library that lets the real Xen 4.17 `xl` run
 * `xl -N create CFG` (parse the config, fill in libxl's defaults, print the
 * domain configuration as JSON) on a machine that has no Xen at all.
 *
 * Why it is needed: xl allocates a libxl context before it even reads the
 * config, and that context wants /dev/xen/privcmd plus answers to a few
 * read-only hypercalls (XENVER_* and XEN_SYSCTL_physinfo).  Without Xen, xl
 * stops with "cannot init xl context" and never reaches the parser.
 *
 * What it does, and nothing more:
 *   - open("/dev/xen/privcmd") (or /proc/xen/privcmd) returns a descriptor on
 *     /dev/null that we remember as "fake privcmd";
 *   - open("/dev/xen/hypercall") fails with ENOENT, so libxencall allocates
 *     its hypercall buffers with plain mmap in our own address space;
 *   - IOCTL_PRIVCMD_HYPERCALL on a fake descriptor answers xen_version and
 *     sysctl(physinfo) for an imaginary 2-CPU, 4 GiB Xen 4.17 host; every other
 *     hypercall fails with ENOSYS and every other privcmd ioctl with ENOTTY, so
 *     anything that would touch a real domain fails loudly instead of
 *     pretending to work.
 * Run xl with XENSTORED_PATH=/dev/null: libxenstore then "connects" to
 * /dev/null, which is enough because the dry run sends no xenstore request.
 *
 * The structure layouts and constants come from the real Xen 4.17 public
 * headers (Debian's libxen-dev, unpacked next to xl by xlcheck.py), so the
 * ABI is the one the xl binary was built against, not a hand copy of it.
 *
 * XLSHIM_TRACE=<file> appends one line per intercepted call to <file>
 * (never to stderr: the tests treat any stderr output as a config problem).
 *
 * Build: gcc -shared -fPIC -O2 -D__XEN_TOOLS__ -I<libxen-dev>/usr/include \
 *            -o xlshim.so xlshim.c -ldl
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/types.h>

#include <xen/xen.h>
#include <xen/version.h>
#include <xen/sysctl.h>
#include <xen/sys/privcmd.h>

/* ---- the imaginary host ------------------------------------------------ */
#define HOST_XEN_MAJOR 4
#define HOST_XEN_MINOR 17
#define HOST_XEN_EXTRA ".0-xlcheck"
#define HOST_CPUS 2
#define HOST_PAGE_SIZE 4096
#define HOST_TOTAL_PAGES ((4ULL << 30) / HOST_PAGE_SIZE) /* 4 GiB */
#define HOST_FREE_PAGES ((3ULL << 30) / HOST_PAGE_SIZE)  /* 3 GiB free */
/* x86-64 PV guests: the hypervisor hole starts here (HYPERVISOR_VIRT_START). */
#define HOST_VIRT_START 0xffff800000000000ULL

/* ---- bookkeeping of fake privcmd descriptors ---------------------------- */
#define MAX_TRACKED_FD 4096
static unsigned char fake_privcmd[MAX_TRACKED_FD];

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

static void *next_symbol(const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    if (!sym) {
        /* Without the real function there is nothing sensible to do. */
        static const char msg[] = "xlshim: missing libc symbol\n";
        ssize_t ignored = write(2, msg, sizeof(msg) - 1);
        (void)ignored;
        abort();
    }
    return sym;
}

static void trace(const char *fmt, ...)
{
    static int trace_fd = -2;
    char line[256];
    va_list ap;
    int len;

    if (trace_fd == -2) {
        const char *path = getenv("XLSHIM_TRACE");
        open_fn real_open = (open_fn)next_symbol("open");
        trace_fd = (path && *path) ? real_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    }
    if (trace_fd < 0)
        return;
    va_start(ap, fmt);
    len = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (len > 0) {
        ssize_t ignored = write(trace_fd, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
        (void)ignored;
    }
}

static int is_privcmd_path(const char *path)
{
    return path && (strcmp(path, "/dev/xen/privcmd") == 0 || strcmp(path, "/proc/xen/privcmd") == 0);
}

/*
 * Decide what an open() of `path` becomes.  Returns 1 when the call was
 * handled here (result in *fd, errno set on failure), 0 to pass it through.
 */
static int intercept_open(const char *path, int flags, int *fd)
{
    if (is_privcmd_path(path)) {
        open_fn real_open = (open_fn)next_symbol("open");
        *fd = real_open("/dev/null", (flags & O_CLOEXEC) | O_RDWR);
        if (*fd >= 0 && *fd < MAX_TRACKED_FD)
            fake_privcmd[*fd] = 1;
        trace("open %s -> fake fd %d\n", path, *fd);
        return 1;
    }
    if (path && strcmp(path, "/dev/xen/hypercall") == 0) {
        trace("open %s -> ENOENT\n", path);
        errno = ENOENT;
        *fd = -1;
        return 1;
    }
    return 0;
}

static mode_t mode_arg(int flags, va_list ap)
{
    /* The mode argument only exists when a file may be created. */
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        return (mode_t)va_arg(ap, int);
    return 0;
}

#define WRAP_OPEN(fname)                                        \
    int fname(const char *path, int flags, ...)                 \
    {                                                           \
        static open_fn real;                                    \
        va_list ap;                                             \
        mode_t mode;                                            \
        int fd;                                                 \
        va_start(ap, flags);                                    \
        mode = mode_arg(flags, ap);                             \
        va_end(ap);                                             \
        if (intercept_open(path, flags, &fd))                   \
            return fd;                                          \
        if (!real)                                              \
            real = (open_fn)next_symbol(#fname);                \
        return real(path, flags, mode);                         \
    }

#define WRAP_OPENAT(fname)                                      \
    int fname(int dirfd, const char *path, int flags, ...)      \
    {                                                           \
        static openat_fn real;                                  \
        va_list ap;                                             \
        mode_t mode;                                            \
        int fd;                                                 \
        va_start(ap, flags);                                    \
        mode = mode_arg(flags, ap);                             \
        va_end(ap);                                             \
        if (intercept_open(path, flags, &fd))                   \
            return fd;                                          \
        if (!real)                                              \
            real = (openat_fn)next_symbol(#fname);              \
        return real(dirfd, path, flags, mode);                  \
    }

/* _FORTIFY_SOURCE builds call the checked variants, which take no mode. */
#define WRAP_OPEN_CHECKED(fname, plain)                         \
    int fname(const char *path, int flags)                      \
    {                                                           \
        static open_fn real;                                    \
        int fd;                                                 \
        if (intercept_open(path, flags, &fd))                   \
            return fd;                                          \
        if (!real)                                              \
            real = (open_fn)next_symbol(plain);                 \
        return real(path, flags, 0);                            \
    }

WRAP_OPEN(open)
WRAP_OPEN(open64)
WRAP_OPENAT(openat)
WRAP_OPENAT(openat64)
WRAP_OPEN_CHECKED(__open_2, "open")
WRAP_OPEN_CHECKED(__open64_2, "open64")

int close(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))next_symbol("close");
    if (fd >= 0 && fd < MAX_TRACKED_FD)
        fake_privcmd[fd] = 0;
    return real(fd);
}

/* ---- the hypercalls ----------------------------------------------------- */

/* Copy a string into a fixed-size, NUL-padded Xen buffer. */
static void put_string(void *dest, size_t size, const char *value)
{
    memset(dest, 0, size);
    strncpy(dest, value, size - 1);
}

static long xen_version(unsigned long cmd, void *arg)
{
    switch (cmd) {
    case XENVER_version:
        return (HOST_XEN_MAJOR << 16) | HOST_XEN_MINOR;
    case XENVER_extraversion:
        put_string(arg, sizeof(xen_extraversion_t), HOST_XEN_EXTRA);
        return 0;
    case XENVER_compile_info: {
        xen_compile_info_t *info = arg;
        memset(info, 0, sizeof(*info));
        put_string(info->compiler, sizeof(info->compiler), "xlshim");
        put_string(info->compile_by, sizeof(info->compile_by), "xenpanel");
        put_string(info->compile_domain, sizeof(info->compile_domain), "tests");
        put_string(info->compile_date, sizeof(info->compile_date), "never");
        return 0;
    }
    case XENVER_capabilities:
        /* 64-bit PV plus HVM/PVH, like an x86-64 host with AMD-V and NPT. */
        put_string(arg, sizeof(xen_capabilities_info_t),
                   "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_changeset:
        put_string(arg, sizeof(xen_changeset_info_t), "xlshim");
        return 0;
    case XENVER_platform_parameters: {
        xen_platform_parameters_t *params = arg;
        params->virt_start = HOST_VIRT_START;
        return 0;
    }
    case XENVER_get_features: {
        xen_feature_info_t *features = arg;
        features->submap = 0;
        return 0;
    }
    case XENVER_pagesize:
        return HOST_PAGE_SIZE;
    case XENVER_guest_handle:
        memset(arg, 0, sizeof(xen_domain_handle_t));
        return 0;
    case XENVER_commandline:
        put_string(arg, sizeof(xen_commandline_t), "dom0_mem=1024M");
        return 0;
    default:
        /* XENVER_build_id and anything newer: libxl copes with a failure. */
        return -ENOSYS;
    }
}

static long sysctl(struct xen_sysctl *op)
{
    struct xen_sysctl_physinfo *pi;

    if (op->interface_version != XEN_SYSCTL_INTERFACE_VERSION)
        return -EACCES; /* what Xen says to tools built for another version */
    if (op->cmd != XEN_SYSCTL_physinfo)
        return -ENOSYS;
    pi = &op->u.physinfo;
    memset(pi, 0, sizeof(*pi));
    pi->threads_per_core = 1;
    pi->cores_per_socket = HOST_CPUS;
    pi->nr_cpus = HOST_CPUS;
    pi->max_cpu_id = HOST_CPUS - 1;
    pi->nr_nodes = 1;
    pi->max_node_id = 0;
    pi->cpu_khz = 2000000;
    pi->capabilities = XEN_SYSCTL_PHYSCAP_hvm | XEN_SYSCTL_PHYSCAP_pv | XEN_SYSCTL_PHYSCAP_hap |
                       XEN_SYSCTL_PHYSCAP_gnttab_v1 | XEN_SYSCTL_PHYSCAP_gnttab_v2;
    pi->total_pages = HOST_TOTAL_PAGES;
    pi->free_pages = HOST_FREE_PAGES;
    pi->max_mfn = HOST_TOTAL_PAGES - 1;
    return 0;
}

static long hypercall(privcmd_hypercall_t *call)
{
    long rc;

    switch (call->op) {
    case __HYPERVISOR_xen_version:
        rc = xen_version((unsigned long)call->arg[0], (void *)(uintptr_t)call->arg[1]);
        trace("xen_version cmd=%lu -> %ld\n", (unsigned long)call->arg[0], rc);
        return rc;
    case __HYPERVISOR_sysctl: {
        struct xen_sysctl *op = (void *)(uintptr_t)call->arg[0];
        rc = sysctl(op);
        trace("sysctl cmd=%u -> %ld\n", op->cmd, rc);
        return rc;
    }
    default:
        trace("hypercall op=%lu -> ENOSYS\n", (unsigned long)call->op);
        return -ENOSYS;
    }
}

int ioctl(int fd, unsigned long request, ...)
{
    static int (*real)(int, unsigned long, ...);
    va_list ap;
    void *argp;
    long rc;

    va_start(ap, request);
    argp = va_arg(ap, void *);
    va_end(ap);
    if (fd < 0 || fd >= MAX_TRACKED_FD || !fake_privcmd[fd]) {
        if (!real)
            real = (int (*)(int, unsigned long, ...))next_symbol("ioctl");
        return real(fd, request, argp);
    }
    if (request != IOCTL_PRIVCMD_HYPERCALL) {
        /* e.g. IOCTL_PRIVCMD_DM_OP probing: "not implemented" makes the
         * libraries fall back to plain hypercalls. */
        trace("ioctl %#lx -> ENOTTY\n", request);
        errno = ENOTTY;
        return -1;
    }
    rc = hypercall(argp);
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return (int)rc;
}
