/*
 * /bin/vsockt: the guest side of tinyvmm's vsock tests (tests/vsock_linux.rs)
 * and benchmark (benches/vsock.rs). Busybox has no AF_VSOCK tool.
 *
 *   vsockt serve PORT
 *
 * listens on vsock PORT and serves every connection in one poll() loop
 * (processes cost about a second each where the guest kernel runs
 * emulated). A connection's first line is its command:
 *
 *   SINK\n             read to end of stream; answer "<bytes> <fnv1a64 hex>\n"
 *   SOURCE <n> <seed>\n write n bytes of pattern(seed), then close
 *   ECHO\n             echo every byte back until end of stream
 *   DIAL <port> <n> <conns>\n
 *                      open <conns> connections to the host (cid 2) port
 *                      <port> at once, send n bytes of pattern(i) on the
 *                      i-th, shut down writing, read each one's answer line;
 *                      answer "DIALED <answers that were OK> <failures>\n"
 *   ABORT <port> <n>\n connect to host port <port>, send n bytes, close at
 *                      once without waiting for anything; answer "ABORTED\n"
 *   QUIT <status>\n    exit with <status> (init reports it to the VMM)
 *
 * pattern(seed): byte i is the low byte of x ^ (x >> 15) with
 * x = i * 0x9E3779B1 + seed * 0x85EBCA77 (32-bit); tests compute the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define MAXC 128
#define CHUNK 65536

enum mode { CMD, SINK, SOURCE, ECHO };

struct conn {
	int fd;
	enum mode mode;
	char line[96];
	size_t linelen;
	uint64_t count, total, hash;
	uint32_t seed;
	unsigned char buf[CHUNK];
	size_t have, off; /* ECHO: bytes held, and how many sent */
};

static struct conn *conns[MAXC];

static uint8_t pattern(uint64_t i, uint32_t seed)
{
	uint32_t x = (uint32_t)i * 0x9E3779B1u + seed * 0x85EBCA77u;
	return (uint8_t)(x ^ (x >> 15));
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

static int vsock_connect(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void blocking(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

/* DIAL: all connections open at once, then each one fed and answered. */
static void dial(int ctl, unsigned port, uint64_t n, unsigned count)
{
	static int fds[MAXC];
	static unsigned char b[CHUNK];
	unsigned ok = 0, bad = 0, i;
	if (count > MAXC)
		count = MAXC;
	for (i = 0; i < count; i++)
		fds[i] = vsock_connect(port);
	for (i = 0; i < count; i++) {
		uint64_t done = 0;
		if (fds[i] < 0)
			continue;
		while (done < n) {
			size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
			for (size_t j = 0; j < k; j++)
				b[j] = pattern(done + j, i);
			if (write_all(fds[i], b, k) < 0)
				break;
			done += k;
		}
		shutdown(fds[i], SHUT_WR);
	}
	for (i = 0; i < count; i++) {
		char reply[32] = { 0 };
		ssize_t r = fds[i] < 0 ? -1 : read(fds[i], reply, sizeof(reply) - 1);
		if (r >= 3 && memcmp(reply, "OK\n", 3) == 0)
			ok++;
		else
			bad++;
		if (fds[i] >= 0)
			close(fds[i]);
	}
	char out[64];
	int len = snprintf(out, sizeof(out), "DIALED %u %u\n", ok, bad);
	blocking(ctl);
	write_all(ctl, out, (size_t)len);
}

static void drop(int i)
{
	close(conns[i]->fd);
	free(conns[i]);
	conns[i] = NULL;
}

/* A complete command line on connection i. Returns 1 to quit. */
static int command(int i, int *status)
{
	struct conn *c = conns[i];
	unsigned long long a = 0, b = 0, d = 0;
	if (strcmp(c->line, "SINK") == 0) {
		c->mode = SINK;
		c->hash = 0xcbf29ce484222325ull;
	} else if (strcmp(c->line, "ECHO") == 0) {
		c->mode = ECHO;
	} else if (sscanf(c->line, "SOURCE %llu %llu", &a, &b) == 2) {
		c->mode = SOURCE;
		c->total = a;
		c->seed = (uint32_t)b;
	} else if (sscanf(c->line, "DIAL %llu %llu %llu", &a, &b, &d) == 3) {
		dial(c->fd, (unsigned)a, b, (unsigned)d);
		drop(i);
	} else if (sscanf(c->line, "ABORT %llu %llu", &a, &b) == 2) {
		int fd = vsock_connect((unsigned)a);
		unsigned char buf[4096];
		for (uint64_t k = 0; fd >= 0 && k < b; k += sizeof(buf))
			if (write_all(fd, buf, sizeof(buf)) < 0)
				break;
		if (fd >= 0)
			close(fd);
		blocking(c->fd);
		write_all(c->fd, "ABORTED\n", 8);
		drop(i);
	} else if (sscanf(c->line, "QUIT %llu", &a) == 1) {
		*status = (int)a;
		return 1;
	} else {
		drop(i);
	}
	return 0;
}

/* Work on connection i after poll said it is ready. Returns 1 to quit. */
static int step(int i, int *status)
{
	struct conn *c = conns[i];
	if (c->mode == CMD) {
		char ch;
		ssize_t r = read(c->fd, &ch, 1);
		if (r <= 0) {
			if (r == 0 || errno != EAGAIN)
				drop(i);
			return 0;
		}
		if (ch != '\n') {
			if (c->linelen + 1 < sizeof(c->line))
				c->line[c->linelen++] = ch;
			return 0;
		}
		c->line[c->linelen] = 0;
		return command(i, status);
	}
	if (c->mode == SINK) {
		ssize_t r = read(c->fd, c->buf, CHUNK);
		if (r > 0) {
			c->hash = fnv(c->hash, c->buf, (size_t)r);
			c->count += (uint64_t)r;
		} else if (r == 0) {
			char out[64];
			int len = snprintf(out, sizeof(out), "%llu %016llx\n",
					   (unsigned long long)c->count, (unsigned long long)c->hash);
			blocking(c->fd);
			write_all(c->fd, out, (size_t)len);
			drop(i);
		} else if (errno != EAGAIN) {
			drop(i);
		}
		return 0;
	}
	if (c->mode == SOURCE) {
		size_t k = c->total - c->count < CHUNK ? (size_t)(c->total - c->count) : CHUNK;
		for (size_t j = 0; j < k; j++)
			c->buf[j] = pattern(c->count + j, c->seed);
		ssize_t w = k ? write(c->fd, c->buf, k) : 0;
		if (w > 0)
			c->count += (uint64_t)w;
		if (c->count == c->total || (w < 0 && errno != EAGAIN))
			drop(i);
		return 0;
	}
	/* ECHO */
	if (c->have == 0) {
		ssize_t r = read(c->fd, c->buf, CHUNK);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			drop(i);
		else if (r > 0)
			c->have = (size_t)r, c->off = 0;
		return 0;
	}
	ssize_t w = write(c->fd, c->buf + c->off, c->have - c->off);
	if (w > 0) {
		c->off += (size_t)w;
		if (c->off == c->have)
			c->have = 0;
	} else if (w < 0 && errno != EAGAIN) {
		drop(i);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || strcmp(argv[1], "serve") != 0) {
		fprintf(stderr, "usage: vsockt serve PORT\n");
		return 2;
	}
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = (unsigned)atoi(argv[2]) };
	int l = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 128) < 0) {
		perror("vsockt: listen");
		return 3;
	}
	printf("vsockt: listening on port %u\n", a.svm_port);
	fflush(stdout);
	for (;;) {
		struct pollfd p[MAXC + 1];
		int idx[MAXC + 1], n = 1, status = 0;
		p[0] = (struct pollfd){ .fd = l, .events = POLLIN };
		for (int i = 0; i < MAXC; i++) {
			if (!conns[i])
				continue;
			short ev = POLLIN;
			if (conns[i]->mode == SOURCE || (conns[i]->mode == ECHO && conns[i]->have))
				ev = POLLOUT;
			p[n] = (struct pollfd){ .fd = conns[i]->fd, .events = ev };
			idx[n++] = i;
		}
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 4;
		}
		if (p[0].revents & POLLIN) {
			int fd = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			int i = 0;
			while (fd >= 0 && i < MAXC && conns[i])
				i++;
			if (fd >= 0 && i == MAXC) {
				close(fd);
			} else if (fd >= 0) {
				conns[i] = calloc(1, sizeof(struct conn));
				if (!conns[i]) {
					close(fd);
				} else {
					conns[i]->fd = fd;
				}
			}
		}
		for (int k = 1; k < n; k++)
			if (p[k].revents && conns[idx[k]] && step(idx[k], &status))
				return status;
	}
}
