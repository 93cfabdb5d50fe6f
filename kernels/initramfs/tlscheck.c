/*
 * tlscheck: checks, from guest user space, the per-process CPU state that a
 * guest kernel must keep for every task: the FS base (what TLS accesses
 * such as glibc's `mov %fs:(%rax),%rax` use) and the SSE registers.
 * Freestanding (no libc): it must not itself depend on the TLS it checks.
 * Built by kernels/build.sh with `gcc -static -nostdlib` into the initramfs
 * as /bin/tlscheck; /init runs it for `tinyvmm.selftest=procs`.
 *
 *   tlscheck exec N   N times fork + execve(/proc/self/exe): each new
 *                     process sets its FS base with arch_prctl(ARCH_SET_FS)
 *                     and checks that %fs:0 reads through it at once (the
 *                     first TLS access of every static glibc program), and
 *                     the parent checks its own FS base after each child.
 *   tlscheck set N    N times arch_prctl(ARCH_SET_FS) to alternating bases,
 *                     each followed at once by a read through %fs.
 *   tlscheck xmm N    xmm0-xmm15 hold a per-process pattern across N
 *                     sched_yield() calls (run two at once to check the
 *                     kernel's FPU switch).
 *   tlscheck ymm N    the same for the upper halves of ymm0 (AVX).
 *                     Diagnostic only: on hosts where guest user mode runs
 *                     with the host's XCR0 but the guest kernel is booted
 *                     with `noxsave` (kvm_pvm), AVX works in user mode but
 *                     the kernel saves only the FXSAVE state, so two
 *                     processes see each other's upper halves
 *                     (kernels/README.md). Skipped without AVX in CPUID.
 *
 * Exit status: 0 when every check passed, 1 when one failed (each failure
 * prints one "tlscheck: MISMATCH ..." line), 2 for bad usage.
 */
typedef unsigned long u64;

#define SYS_write 1
#define SYS_sched_yield 24
#define SYS_getpid 39
#define SYS_fork 57
#define SYS_execve 59
#define SYS_exit 60
#define SYS_wait4 61
#define SYS_arch_prctl 158
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003

/* A system call with up to three arguments; the 4th (r10) is always 0
 * (wait4's rusage pointer, mmap's flags are not used here). */
static long sc(long n, long a, long b, long c)
{
	long r;
	register long r10 asm("r10") = 0;
	asm volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
		     : "rcx", "r11", "memory");
	return r;
}

static long slen(const char *s) { long n = 0; while (s[n]) n++; return n; }
static void out(const char *s) { sc(SYS_write, 1, (long)s, slen(s)); }
static void outn(u64 v)
{
	char b[24]; int i = 23; b[i] = 0;
	do { b[--i] = '0' + v % 10; v /= 10; } while (v);
	out(b + i);
}
static void outx(u64 v)
{
	char b[20]; int i = 19; b[i] = 0;
	do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
	b[--i] = 'x'; b[--i] = '0';
	out(b + i);
}
static u64 atou(const char *s) { u64 v = 0; while (*s >= '0' && *s <= '9') v = v * 10 + *s++ - '0'; return v; }
static int streq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }

/* Two thread control blocks; word 0 points to itself as in glibc. */
static u64 tcb[2][8] __attribute__((aligned(64)));
static char **envp;

static u64 fs0(void) { u64 v; asm volatile("mov %%fs:0,%0" : "=r"(v) :: "memory"); return v; }

static void setfs(u64 *p)
{
	p[0] = (u64)p;
	sc(SYS_arch_prctl, ARCH_SET_FS, (long)p, 0);
}

/* 0 when %fs:0 reads p (FS base == p), else 1 with a report. */
static int check_fs(u64 *p, const char *what)
{
	u64 v = fs0(), g = 0, v2;
	if (v == (u64)p)
		return 0;
	sc(SYS_arch_prctl, ARCH_GET_FS, (long)&g, 0);
	v2 = fs0();
	out("tlscheck: MISMATCH "); out(what);
	out(": FS base should be "); outx((u64)p);
	out(", %fs:0 read "); outx(v);
	out(", ARCH_GET_FS says "); outx(g);
	out(", %fs:0 after that system call "); outx(v2);
	out(", pid "); outn(sc(SYS_getpid, 0, 0, 0)); out("\n");
	return 1;
}

static int child(void)
{
	setfs(&tcb[1][0]);
	return check_fs(&tcb[1][0], "new process after arch_prctl(ARCH_SET_FS)");
}

static int do_exec(u64 n)
{
	u64 failed = 0, killed = 0;
	for (u64 i = 0; i < n; i++) {
		long pid = sc(SYS_fork, 0, 0, 0);
		if (pid == 0) {
			char *argv[] = { "tlscheck", "child", 0 };
			sc(SYS_execve, (long)"/proc/self/exe", (long)argv, (long)envp);
			out("tlscheck: execve failed\n");
			sc(SYS_exit, 3, 0, 0);
		}
		if (pid < 0) {
			out("tlscheck: fork failed\n");
			return 1;
		}
		int st = 0;
		sc(SYS_wait4, pid, (long)&st, 0);
		if ((st & 0x7f) != 0)
			killed++;
		else if (((st >> 8) & 0xff) != 0)
			failed++;
		failed += check_fs(&tcb[0][0], "parent after a child");
	}
	out("tlscheck: exec "); outn(n); out(" processes, failed "); outn(failed);
	out(", killed by a signal "); outn(killed); out("\n");
	return failed || killed;
}

static int do_set(u64 n)
{
	u64 failed = 0;
	for (u64 i = 0; i < n; i++) {
		u64 *p = &tcb[i & 1][0];
		setfs(p);
		failed += check_fs(p, "right after arch_prctl(ARCH_SET_FS)");
	}
	out("tlscheck: set "); outn(n); out(" times, failed "); outn(failed); out("\n");
	return failed != 0;
}

static int do_xmm(u64 n)
{
	u64 pid = sc(SYS_getpid, 0, 0, 0), pat[32], got[32], failed = 0;
	for (int k = 0; k < 32; k++)
		pat[k] = pid << 8 | k;
	for (u64 i = 0; i < n; i++) {
#define LD(r, o) "movdqu " #o "(%1), %%xmm" #r "\n"
#define ST(r, o) "movdqu %%xmm" #r ", " #o "(%0)\n"
		asm volatile(LD(0, 0) LD(1, 16) LD(2, 32) LD(3, 48) LD(4, 64) LD(5, 80)
			     LD(6, 96) LD(7, 112) LD(8, 128) LD(9, 144) LD(10, 160)
			     LD(11, 176) LD(12, 192) LD(13, 208) LD(14, 224) LD(15, 240)
			     "mov $20000, %%ecx\n1: dec %%ecx\njnz 1b\n"
			     "mov $24, %%eax\nsyscall\n"
			     ST(0, 0) ST(1, 16) ST(2, 32) ST(3, 48) ST(4, 64) ST(5, 80)
			     ST(6, 96) ST(7, 112) ST(8, 128) ST(9, 144) ST(10, 160)
			     ST(11, 176) ST(12, 192) ST(13, 208) ST(14, 224) ST(15, 240)
			     :: "r"(got), "r"(pat)
			     : "rax", "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3",
			       "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
			       "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
		for (int k = 0; k < 32; k++)
			if (got[k] != pat[k]) {
				if (failed++ < 3) {
					out("tlscheck: MISMATCH xmm"); outn(k / 2);
					out(" should be "); outx(pat[k]); out(", is "); outx(got[k]); out("\n");
				}
				break;
			}
	}
	out("tlscheck: xmm "); outn(n); out(" yields, failed "); outn(failed); out("\n");
	return failed != 0;
}

static int do_ymm(u64 n)
{
	unsigned a, b, c, d;
	asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	if (!((c >> 28) & 1)) {
		out("tlscheck: ymm: no AVX in CPUID, skipped\n");
		return 0;
	}
	u64 pid = sc(SYS_getpid, 0, 0, 0), failed = 0;
	u64 pat[4] = { pid, pid + 1, pid << 16 | 2, pid << 16 | 3 }, got[4];
	for (u64 i = 0; i < n; i++) {
		asm volatile("vmovdqu %1, %%ymm0\n"
			     "mov $20000, %%ecx\n1: dec %%ecx\njnz 1b\n"
			     "mov $24, %%eax\nsyscall\n"
			     "vmovdqu %%ymm0, %0\n"
			     : "=m"(got) : "m"(pat) : "rax", "rcx", "r11", "memory", "xmm0");
		if (got[2] != pat[2] || got[3] != pat[3]) {
			if (failed++ < 3) {
				out("tlscheck: MISMATCH ymm0 upper half should be "); outx(pat[2]);
				out(", is "); outx(got[2]); out("\n");
			}
		}
	}
	out("tlscheck: ymm "); outn(n); out(" yields, failed "); outn(failed); out("\n");
	return failed != 0;
}

static int tlscheck_main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	u64 n = argc > 2 ? atou(argv[2]) : 100;
	if (streq(m, "child"))
		return child();
	setfs(&tcb[0][0]);
	if (streq(m, "exec"))
		return do_exec(n);
	if (streq(m, "set"))
		return do_set(n);
	if (streq(m, "xmm"))
		return do_xmm(n);
	if (streq(m, "ymm"))
		return do_ymm(n);
	out("usage: tlscheck exec|set|xmm|ymm N\n");
	return 2;
}

__attribute__((used)) static void cstart(u64 *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	envp = argv + argc + 1;
	sc(SYS_exit, tlscheck_main(argc, argv), 0, 0);
}
asm(".globl _start\n_start:\n\txor %ebp,%ebp\n\tmov %rsp,%rdi\n\tand $-16,%rsp\n\tcall cstart\n\thlt\n");
