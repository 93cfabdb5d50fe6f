/*
 * diskbench: sequential read, sequential write and 4 KiB random-read
 * figures of a block device or file, measured by the process itself with
 * O_DIRECT (no page cache on the side that runs it) and CLOCK_MONOTONIC.
 * Freestanding (no libc) like tlscheck, so the same static binary runs in
 * the guest (/bin/diskbench in the initramfs, /init runs it for
 * `tinyvmm.diskbench=DEV`) and on the host against the image file, which
 * gives the benchmark its host limit (benches/disk.rs). busybox dd cannot
 * do random reads without a process per read.
 *
 *   diskbench DEV MIB OPS   MIB MiB read in 1 MiB requests from offset 0,
 *                           then MIB MiB written there (a fixed pattern),
 *                           then OPS reads of 4 KiB at random 4 KiB-aligned
 *                           offsets within the first MIB MiB
 *
 * Prints one line per test:
 *   diskbench seqread bytes=B ns=T
 *   diskbench seqwrite bytes=B ns=T
 *   diskbench randread ops=N ns=T
 * (the benchmark turns them into MiB/s and IOPS), or "diskbench: ERROR
 * what errno" and exits 1; 2 for bad usage. The write test overwrites the
 * first MIB MiB of DEV.
 */
typedef unsigned long u64;
typedef long i64;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_pread64 17
#define SYS_pwrite64 18
#define SYS_fdatasync 75
#define SYS_exit 60
#define SYS_clock_gettime 228
#define O_RDWR 02
#define O_DIRECT 040000
#define CLOCK_MONOTONIC 1
#define MIB (1UL << 20)
#define SMALL 4096UL

static i64 sc(i64 n, i64 a, i64 b, i64 c, i64 d)
{
	i64 r;
	register i64 r10 asm("r10") = d;
	asm volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
		     : "rcx", "r11", "memory");
	return r;
}

static i64 slen(const char *s) { i64 n = 0; while (s[n]) n++; return n; }
static void out(const char *s) { sc(SYS_write, 1, (i64)s, slen(s), 0); }
static void outn(u64 v)
{
	char b[24]; int i = 23; b[i] = 0;
	do { b[--i] = '0' + v % 10; v /= 10; } while (v);
	out(b + i);
}
static u64 atou(const char *s) { u64 v = 0; while (*s >= '0' && *s <= '9') v = v * 10 + *s++ - '0'; return v; }

/* O_DIRECT wants buffers aligned to the logical block size. */
static unsigned char buf[MIB] __attribute__((aligned(4096)));

static u64 now_ns(void)
{
	i64 ts[2];
	sc(SYS_clock_gettime, CLOCK_MONOTONIC, (i64)ts, 0, 0);
	return (u64)ts[0] * 1000000000UL + (u64)ts[1];
}

static int fail(const char *what, i64 r)
{
	out("diskbench: ERROR ");
	out(what);
	out(" errno ");
	outn((u64)-r);
	out("\n");
	return 1;
}

static void result(const char *test, const char *unit, u64 n, u64 ns)
{
	out("diskbench ");
	out(test);
	out(" ");
	out(unit);
	out("=");
	outn(n);
	out(" ns=");
	outn(ns);
	out("\n");
}

static int bench(const char *dev, u64 mib, u64 ops)
{
	i64 fd = sc(SYS_open, (i64)dev, O_RDWR | O_DIRECT, 0, 0);
	if (fd < 0)
		return fail("open", fd);
	u64 t = now_ns();
	for (u64 i = 0; i < mib; i++) {
		i64 r = sc(SYS_pread64, fd, (i64)buf, MIB, (i64)(i * MIB));
		if (r != (i64)MIB)
			return fail("seqread", r < 0 ? r : -5);
	}
	result("seqread", "bytes", mib * MIB, now_ns() - t);
	for (u64 i = 0; i < MIB; i++)
		buf[i] = (unsigned char)(i * 7 + 1);
	t = now_ns();
	for (u64 i = 0; i < mib; i++) {
		i64 r = sc(SYS_pwrite64, fd, (i64)buf, MIB, (i64)(i * MIB));
		if (r != (i64)MIB)
			return fail("seqwrite", r < 0 ? r : -5);
	}
	i64 r = sc(SYS_fdatasync, fd, 0, 0, 0);
	if (r < 0)
		return fail("fdatasync", r);
	result("seqwrite", "bytes", mib * MIB, now_ns() - t);
	u64 x = 0x9e3779b97f4a7c15UL, blocks = mib * (MIB / SMALL);
	t = now_ns();
	for (u64 i = 0; i < ops; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17; /* xorshift64 */
		r = sc(SYS_pread64, fd, (i64)buf, SMALL, (i64)((x % blocks) * SMALL));
		if (r != (i64)SMALL)
			return fail("randread", r < 0 ? r : -5);
	}
	result("randread", "ops", ops, now_ns() - t);
	sc(SYS_close, fd, 0, 0, 0);
	return 0;
}

__attribute__((used)) static void cstart(u64 *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	if (argc != 4 || atou(argv[2]) == 0) {
		out("usage: diskbench DEV MIB OPS\n");
		sc(SYS_exit, 2, 0, 0, 0);
	}
	sc(SYS_exit, bench(argv[1], atou(argv[2]), atou(argv[3])), 0, 0, 0);
}
asm(".globl _start\n_start:\n\txor %ebp,%ebp\n\tmov %rsp,%rdi\n\tand $-16,%rsp\n\tcall cstart\n\thlt\n");
