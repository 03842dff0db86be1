/*
 * lobench: loopback IPC traffic generator and benchmark with ground truth.
 *
 * A server process and a client process (both children of lobench, so their
 * pids are known) exchange messages over one transport; each side counts
 * exactly what its successful send and recv calls moved, and lobench prints
 * those counts with the pids, so a tracer's numbers can be checked against
 * them.  Patterns:
 *   oneway    client sends COUNT messages of SIZE bytes, server receives them;
 *             flow control by a pipe (not a socket) every WINDOW messages, so
 *             nothing is dropped and at most WINDOW messages are in flight
 *   pingpong  client sends, server echoes, client receives: round-trip times
 *             measured with CLOCK_MONOTONIC (one-way latency = RTT / 2)
 *   stream    client sends as fast as it can for COUNT messages: throughput
 *
 * --stamp: the client writes CLOCK_MONOTONIC (read just before the send call)
 * and the message's sequence number into the first 16 bytes of each message;
 * the server times every message it receives, from that stamp to the return
 * of the recv call that returned the message's first byte.  Messages have a
 * fixed size, so their boundaries are known at any --read-size.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum transport { T_TCP, T_UDP, T_UNIX_STREAM, T_UNIX_DGRAM, T_UNIX_SEQPACKET };
static const char *const transport_names[] = { "tcp", "udp", "unix_stream", "unix_dgram",
					       "unix_seqpacket" };
enum pattern { P_ONEWAY, P_PINGPONG, P_STREAM };
static const char *const pattern_names[] = { "oneway", "pingpong", "stream" };
enum unix_addr { U_SOCKETPAIR, U_PATH, U_ABSTRACT };
static const char *const unix_addr_names[] = { "socketpair", "path", "abstract" };

struct config {
	enum transport transport;
	enum pattern pattern;
	enum unix_addr unix_addr;
	const char *addr; /* tcp/udp: server address */
	long count;        /* per pair; with duration: an upper bound */
	double duration_s; /* 0: run count messages */
	long pairs;
	long size;
	long warmup;
	long window;
	int cpu_client, cpu_server; /* -1: not pinned */
	const char *client_netns, *server_netns;
	bool json;
	bool stamp;
	long read_size; /* 0: streams read exactly SIZE (MSG_WAITALL), datagrams SIZE */
};

/* A stamped message starts with these (host byte order). */
struct stamp_hdr {
	uint64_t sent_ns; /* CLOCK_MONOTONIC just before the send call */
	uint64_t seq;     /* message number on this connection, from 0 */
};

/* What each side did, exactly; shared with the parent. */
struct side {
	int pid;
	uint64_t sent_messages, sent_bytes, recv_messages, recv_bytes;
	int error; /* errno of a failure, 0 if fine */
	char what[96];
};

struct pair_result {
	struct side client, server;
	double elapsed_s; /* client: first to last message (excluding warm-up) */
	long messages;    /* client messages after warm-up */
	long nrtt;        /* pingpong samples in rtt_ns */
	long nstamp;      /* --stamp: server's samples in stamp_ns */
};

struct shared {
	long max_rtt;            /* samples kept per pair */
	struct pair_result *pair; /* [pairs] */
	uint64_t *rtt_ns;         /* [pairs][max_rtt] */
	long max_stamp;           /* --stamp: samples kept per pair */
	uint64_t *stamp_ns;       /* [pairs][max_stamp] */
};

static void usage(FILE *f)
{
	fputs("Usage: lobench [OPTIONS]\n"
	      "Loopback IPC benchmark and traffic generator with exact ground truth.\n\n"
	      "  -t, --transport T   tcp, udp, unix_stream, unix_dgram, unix_seqpacket (default unix_stream)\n"
	      "  -p, --pattern P     oneway, pingpong or stream (default pingpong)\n"
	      "  -a, --addr A        tcp/udp server address: 127.0.0.1 (default), ::1,\n"
	      "                      ::ffff:127.0.0.1, or any address of this host\n"
	      "  -u, --unix-addr U   socketpair (default), path or abstract\n"
	      "  -n, --count N       messages per pair (default 10000), after warm-up\n"
	      "  -d, --duration S    run S seconds instead (count becomes an upper bound)\n"
	      "  -P, --pairs N       N client/server pairs at once (default 1): aggregate\n"
	      "                      throughput; ground truth per process\n"
	      "  -s, --size B        bytes per message (default 64, 1 to 1048576)\n"
	      "  -w, --warmup N      pingpong warm-up round trips, not in the stats (default 0)\n"
	      "      --window N      messages between flow-control tokens: oneway (default 8)\n"
	      "                      and udp stream (default 64)\n"
	      "      --cpu-client C  pin the client to CPU C\n"
	      "      --cpu-server C  pin the server to CPU C\n"
	      "      --client-netns NAME, --server-netns NAME\n"
	      "                      run that side in network namespace /run/netns/NAME\n"
	      "      --stamp         the client writes CLOCK_MONOTONIC (just before the send\n"
	      "                      call) and a sequence number into each message's first\n"
	      "                      16 bytes (SIZE >= 16); the server times every message:\n"
	      "                      stamp to the return of the recv that returned its\n"
	      "                      first byte (client->server messages only)\n"
	      "      --read-size B   the server reads up to B bytes per call (stream\n"
	      "                      transports; datagram ones need B >= SIZE)\n"
	      "  -j, --json          JSON output\n"
	      "  -h, --help          this help\n\n"
	      "Counts: every successful send call is one message; recv counts calls\n"
	      "that returned data.  Without --read-size, stream receivers read exactly\n"
	      "SIZE bytes per call (MSG_WAITALL), so both sides count COUNT messages.\n",
	      f);
}

static int die_usage(const char *flag, const char *val, const char *expected)
{
	fprintf(stderr, "lobench: %s: invalid value '%s': expected %s\n", flag, val ? val : "",
		expected);
	exit(2);
}

static long parse_long(const char *flag, const char *v, long lo, long hi)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi) {
		char buf[64];
		snprintf(buf, sizeof(buf), "an integer from %ld to %ld", lo, hi);
		die_usage(flag, v, buf);
	}
	return n;
}

static int lookup(const char *const *names, int n, const char *flag, const char *v,
		  const char *expected)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], v))
			return i;
	return die_usage(flag, v, expected);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void enter_netns(const char *name, struct side *s)
{
	char path[256];
	if (!name)
		return;
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET)) {
		s->error = errno;
		snprintf(s->what, sizeof(s->what), "enter netns %s", name);
		_exit(1);
	}
	close(fd);
}

static void pin(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static _Noreturn void fail(struct side *s, const char *what)
{
	s->error = errno ? errno : EIO;
	snprintf(s->what, sizeof(s->what), "%s", what);
	_exit(1);
}

/* Flow control by pipe tokens: oneway always; stream only where the kernel drops (udp). */
static bool uses_window(const struct config *c)
{
	return c->pattern == P_ONEWAY || (c->pattern == P_STREAM && c->transport == T_UDP);
}

static bool is_unix(enum transport t)
{
	return t >= T_UNIX_STREAM;
}

static bool is_stream(enum transport t)
{
	return t == T_TCP || t == T_UNIX_STREAM;
}

static int sock_type(enum transport t)
{
	switch (t) {
	case T_TCP:
	case T_UNIX_STREAM:
		return SOCK_STREAM;
	case T_UNIX_SEQPACKET:
		return SOCK_SEQPACKET;
	default:
		return SOCK_DGRAM;
	}
}

/* An address for tcp/udp (port 0 until bound) or unix path/abstract. */
struct address {
	struct sockaddr_storage ss;
	socklen_t len;
};

static int inet_address(const char *a, int port, struct address *out)
{
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
	if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		out->len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		out->len = sizeof(*s6);
		return 0;
	}
	return -1;
}

static void unix_address(enum unix_addr kind, const char *tag, struct address *out)
{
	memset(out, 0, sizeof(*out));
	struct sockaddr_un *su = (struct sockaddr_un *)&out->ss;
	su->sun_family = AF_UNIX;
	if (kind == U_ABSTRACT) {
		int n = snprintf(su->sun_path + 1, sizeof(su->sun_path) - 1, "lobench-%d-%s",
				 (int)getpid(), tag);
		out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	} else {
		snprintf(su->sun_path, sizeof(su->sun_path), "/tmp/lobench-%d-%s.sock", (int)getpid(),
			 tag);
		unlink(su->sun_path);
		out->len = sizeof(*su);
	}
}

static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
					       ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static bool send_msg(int fd, const char *buf, long size, struct side *s)
{
	ssize_t n;
	do
		n = send(fd, buf, (size_t)size, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	s->sent_messages++;
	s->sent_bytes += (uint64_t)n;
	/* A short stream write: send the rest as another message. */
	if (n < size)
		return send_msg(fd, buf + n, size - n, s);
	return true;
}

/* false on failure (errno set) or on end of data / an empty datagram (errno 0). */
static bool recv_msg(int fd, char *buf, long size, bool stream, struct side *s,
		     struct address *from)
{
	ssize_t n;
	errno = 0;
	socklen_t fl = from ? sizeof(from->ss) : 0;
	do
		n = recvfrom(fd, buf, (size_t)size, stream ? MSG_WAITALL : 0,
			     from ? (struct sockaddr *)&from->ss : NULL, from ? &fl : NULL);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	if (from)
		from->len = fl;
	s->recv_messages++;
	s->recv_bytes += (uint64_t)n;
	if (stream && n < size) /* peer went away mid-message */
		return recv_msg(fd, buf + n, size - n, stream, s, NULL);
	return true;
}

/*
 * The server's view of the stamped byte stream: which message each received
 * byte belongs to, the header bytes gathered so far (a header may be split
 * across reads), and the recv-return time of the current message's first byte.
 */
struct stamp_rx {
	long size;
	uint64_t off; /* bytes received so far */
	uint64_t first_ns;
	unsigned char hdr[sizeof(struct stamp_hdr)];
	uint64_t *lat; /* samples */
	long n, max;
};

/*
 * n bytes returned by a recv call at time t.  Returns how many messages this
 * chunk completed, or -1 if a stamp carries the wrong sequence number (a
 * boundary bug or lost data: the stamps could not be trusted).
 */
static long stamp_consume(struct stamp_rx *x, const char *buf, size_t n, uint64_t t, bool stamp)
{
	uint64_t end = x->off + n;
	long completed = (long)(end / (uint64_t)x->size - x->off / (uint64_t)x->size);
	size_t p = 0;
	while (stamp && p < n) {
		uint64_t within = (x->off + p) % (uint64_t)x->size;
		if (within == 0)
			x->first_ns = t;
		if (within < sizeof(x->hdr)) {
			size_t k = sizeof(x->hdr) - within;
			if (k > n - p)
				k = n - p;
			memcpy(x->hdr + within, buf + p, k);
			if (within + k == sizeof(x->hdr)) {
				struct stamp_hdr h;
				memcpy(&h, x->hdr, sizeof(h));
				uint64_t msg = (x->off + p) / (uint64_t)x->size;
				if (h.seq != msg || h.sent_ns > x->first_ns)
					return -1;
				if (x->n < x->max)
					x->lat[x->n++] = x->first_ns - h.sent_ns;
			}
		}
		/* On to the next message's first byte. */
		p += (size_t)((uint64_t)x->size - within);
	}
	x->off = end;
	return completed;
}

static void stamp_write(char *buf, uint64_t seq)
{
	struct stamp_hdr h = { .sent_ns = now_ns(), .seq = seq };
	memcpy(buf, &h, sizeof(h));
}

static void wait_token(int fd)
{
	char c;
	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static void give_token(int fd)
{
	char c = 1;
	while (write(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static void set_nodelay(int fd, const struct config *c)
{
	int one = 1;
	if (c->transport == T_TCP)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct run {
	const struct config *c;
	struct shared *sh;
	long index;         /* pair number */
	struct pair_result *res;
	int pair[2];        /* socketpair */
	int ready[2];       /* server -> parent: bound, port follows */
	int token_s2c[2];   /* server -> client: window received */
	struct address server_addr, client_addr;
};

/*
 * A stream server reading up to --read-size bytes per call: messages are
 * counted from the byte offsets, so reads may split or join them.
 */
static void serve_chunks(struct run *r, int fd, char *buf, long total, struct stamp_rx *rx)
{
	const struct config *c = r->c;
	struct side *s = &r->res->server;
	uint64_t want = (uint64_t)total * (uint64_t)c->size;
	long done = 0;
	while (c->duration_s > 0 || rx->off < want) {
		size_t len = (size_t)c->read_size;
		if (c->duration_s <= 0 && want - rx->off < len)
			len = (size_t)(want - rx->off); /* never wait for bytes that will not come */
		ssize_t n = recv(fd, buf, len, 0);
		uint64_t t = c->stamp ? now_ns() : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && c->duration_s > 0)
			break; /* the client's end marker */
		if (n <= 0) {
			if (n == 0)
				errno = EPIPE;
			fail(s, "recv");
		}
		s->recv_messages++;
		s->recv_bytes += (uint64_t)n;
		long k = stamp_consume(rx, buf, (size_t)n, t, c->stamp);
		if (k < 0) {
			errno = EBADMSG;
			fail(s, "stamp out of sequence");
		}
		r->res->nstamp = rx->n;
		for (long m = 0; m < k; m++) {
			done++;
			if (c->pattern == P_PINGPONG) {
				/* The client waits for the echo: a read never holds the next message. */
				if (!send_msg(fd, buf, c->size, s))
					fail(s, "send");
			} else if (uses_window(c) && done % c->window == 0) {
				give_token(r->token_s2c[1]);
			}
		}
	}
	if (c->pattern != P_PINGPONG)
		give_token(r->token_s2c[1]); /* all received */
}

static void run_server(struct run *r)
{
	const struct config *c = r->c;
	struct side *s = &r->res->server;
	long bufsize = c->read_size > c->size ? c->read_size : c->size;
	char *buf = malloc((size_t)bufsize);
	int fd;
	bool stream = is_stream(c->transport);
	struct stamp_rx rx = { .size = c->size, .lat = r->sh->stamp_ns + r->index * r->sh->max_stamp,
			       .max = r->sh->max_stamp };

	s->pid = getpid();
	enter_netns(c->server_netns, s);
	pin(c->cpu_server);
	if (!buf)
		fail(s, "malloc");
	if (is_unix(c->transport) && c->unix_addr == U_SOCKETPAIR) {
		fd = r->pair[1];
		close(r->pair[0]);
		give_token(r->ready[1]);
	} else {
		int family = is_unix(c->transport) ? AF_UNIX : r->server_addr.ss.ss_family;
		int lfd = socket(family, sock_type(c->transport) | SOCK_CLOEXEC, 0);
		int one = 1;
		if (lfd < 0)
			fail(s, "socket");
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (struct sockaddr *)&r->server_addr.ss, r->server_addr.len))
			fail(s, "bind");
		if (sock_type(c->transport) != SOCK_DGRAM && listen(lfd, 1))
			fail(s, "listen");
		int port = is_unix(c->transport) ? 0 : port_of(lfd);
		if (write(r->ready[1], &port, sizeof(port)) != sizeof(port))
			fail(s, "ready");
		if (sock_type(c->transport) == SOCK_DGRAM) {
			fd = lfd;
		} else {
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				fail(s, "accept");
			close(lfd);
		}
	}
	set_nodelay(fd, c);
	long total = c->count + (c->pattern == P_PINGPONG ? c->warmup : 0);
	bool dgram_unconnected = sock_type(c->transport) == SOCK_DGRAM &&
				 !(is_unix(c->transport) && c->unix_addr == U_SOCKETPAIR);
	if (stream && c->read_size) {
		serve_chunks(r, fd, buf, total, &rx);
		close(fd);
		_exit(0);
	}
	for (long i = 0; c->duration_s > 0 || i < total; i++) {
		struct address from;
		if (!recv_msg(fd, buf, c->size, stream, s, dgram_unconnected && i == 0 ? &from : NULL)) {
			if (c->duration_s > 0 && errno == 0)
				break; /* the client's end marker: EOF or an empty datagram */
			fail(s, "recv");
		}
		/* One whole message per call here: its recv returned its first byte. */
		if (c->stamp && stamp_consume(&rx, buf, (size_t)c->size, now_ns(), true) < 0) {
			errno = EBADMSG;
			fail(s, "stamp out of sequence");
		}
		r->res->nstamp = rx.n;
		if (dgram_unconnected && i == 0 && c->pattern == P_PINGPONG) {
			/* Reply on a connected socket: the client's address is known now. */
			if (connect(fd, (struct sockaddr *)&from.ss, from.len))
				fail(s, "connect back");
		}
		if (c->pattern == P_PINGPONG) {
			if (!send_msg(fd, buf, c->size, s))
				fail(s, "send");
		} else if (uses_window(c) && (i + 1) % c->window == 0) {
			give_token(r->token_s2c[1]);
		}
	}
	if (c->pattern != P_PINGPONG)
		give_token(r->token_s2c[1]); /* all received */
	close(fd);
	_exit(0);
}

static void run_client(struct run *r)
{
	const struct config *c = r->c;
	struct side *s = &r->res->client;
	char *buf = calloc(1, (size_t)c->size);
	int fd;
	bool stream = is_stream(c->transport);

	s->pid = getpid();
	enter_netns(c->client_netns, s);
	pin(c->cpu_client);
	if (!buf)
		fail(s, "malloc");
	memset(buf, 'x', (size_t)c->size);
	if (is_unix(c->transport) && c->unix_addr == U_SOCKETPAIR) {
		fd = r->pair[0];
		close(r->pair[1]);
	} else {
		int family = is_unix(c->transport) ? AF_UNIX : r->server_addr.ss.ss_family;
		fd = socket(family, sock_type(c->transport) | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail(s, "socket");
		/* A datagram client needs an address the server can answer. */
		if (is_unix(c->transport) && sock_type(c->transport) == SOCK_DGRAM &&
		    bind(fd, (struct sockaddr *)&r->client_addr.ss, r->client_addr.len))
			fail(s, "bind client");
		if (connect(fd, (struct sockaddr *)&r->server_addr.ss, r->server_addr.len))
			fail(s, "connect");
	}
	set_nodelay(fd, c);

	uint64_t seq = 0; /* --stamp: messages stamped so far */
	if (c->pattern == P_PINGPONG) {
		for (long i = 0; i < c->warmup; i++) {
			if (c->stamp)
				stamp_write(buf, seq++);
			if (!send_msg(fd, buf, c->size, s) || !recv_msg(fd, buf, c->size, stream, s, NULL))
				fail(s, "warm-up");
		}
	}
	uint64_t t0 = now_ns();
	uint64_t deadline = c->duration_s > 0 ? t0 + (uint64_t)(c->duration_s * 1e9) : UINT64_MAX;
	uint64_t *rtt = r->sh->rtt_ns + r->index * r->sh->max_rtt;
	long i;
	for (i = 0; i < c->count; i++) {
		uint64_t a = now_ns();
		if (a >= deadline)
			break;
		if (c->stamp)
			stamp_write(buf, seq++);
		if (!send_msg(fd, buf, c->size, s))
			fail(s, "send");
		if (c->pattern == P_PINGPONG) {
			if (!recv_msg(fd, buf, c->size, stream, s, NULL))
				fail(s, "recv");
			if (i < r->sh->max_rtt)
				rtt[i] = now_ns() - a;
		} else if (uses_window(c) && (i + 1) % c->window == 0) {
			wait_token(r->token_s2c[0]);
		}
	}
	r->res->messages = i;
	if (c->duration_s > 0) {
		/* Tell the server we are done: EOF on streams, an empty datagram otherwise. */
		if (stream)
			shutdown(fd, SHUT_WR);
		else if (send(fd, buf, 0, 0) < 0)
			fail(s, "end marker");
	}
	if (c->pattern != P_PINGPONG)
		wait_token(r->token_s2c[0]);
	r->res->elapsed_s = (double)(now_ns() - t0) / 1e9;
	r->res->nrtt = c->pattern == P_PINGPONG ? (i < r->sh->max_rtt ? i : r->sh->max_rtt) : 0;
	close(fd);
	_exit(0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, long n, double q)
{
	if (!n)
		return 0;
	long rank = (long)ceil(q * (double)n);
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

static void print_side(FILE *f, const char *name, const struct side *s, bool json)
{
	if (json)
		fprintf(f,
			"\"%s\": {\"pid\": %d, \"sent_messages\": %llu, \"sent_bytes\": %llu, "
			"\"recv_messages\": %llu, \"recv_bytes\": %llu}",
			name, s->pid, (unsigned long long)s->sent_messages,
			(unsigned long long)s->sent_bytes, (unsigned long long)s->recv_messages,
			(unsigned long long)s->recv_bytes);
	else
		fprintf(f, "%-7s pid %-7d sent %llu msgs %llu bytes, received %llu msgs %llu bytes\n",
			name, s->pid, (unsigned long long)s->sent_messages,
			(unsigned long long)s->sent_bytes, (unsigned long long)s->recv_messages,
			(unsigned long long)s->recv_bytes);
}

int main(int argc, char **argv)
{
	struct config c = { .transport = T_UNIX_STREAM, .pattern = P_PINGPONG, .addr = "127.0.0.1",
			    .count = 10000, .pairs = 1, .size = 64, .window = 0, .cpu_client = -1,
			    .cpu_server = -1 };

	bool count_given = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "-j") || !strcmp(a, "--json")) {
			c.json = true;
			continue;
		}
		if (!strcmp(a, "--stamp")) {
			c.stamp = true;
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "lobench: %s: unknown option or missing value\nTry 'lobench --help'.\n", a);
			return 2;
		}
		const char *v = argv[++i];
		if (!strcmp(a, "-t") || !strcmp(a, "--transport"))
			c.transport = lookup(transport_names, 5, a, v,
					     "tcp, udp, unix_stream, unix_dgram or unix_seqpacket");
		else if (!strcmp(a, "-p") || !strcmp(a, "--pattern"))
			c.pattern = lookup(pattern_names, 3, a, v, "oneway, pingpong or stream");
		else if (!strcmp(a, "-u") || !strcmp(a, "--unix-addr"))
			c.unix_addr = lookup(unix_addr_names, 3, a, v, "socketpair, path or abstract");
		else if (!strcmp(a, "-a") || !strcmp(a, "--addr"))
			c.addr = v;
		else if (!strcmp(a, "-n") || !strcmp(a, "--count")) {
			c.count = parse_long(a, v, 1, 100000000);
			count_given = true;
		}
		else if (!strcmp(a, "-d") || !strcmp(a, "--duration")) {
			char *end;
			c.duration_s = strtod(v, &end);
			if (end == v || *end || !(c.duration_s > 0) || c.duration_s > 86400)
				die_usage(a, v, "seconds > 0 (e.g. 5 or 0.5)");
		} else if (!strcmp(a, "-P") || !strcmp(a, "--pairs"))
			c.pairs = parse_long(a, v, 1, 1024);
		else if (!strcmp(a, "-s") || !strcmp(a, "--size"))
			c.size = parse_long(a, v, 1, 1 << 20);
		else if (!strcmp(a, "-w") || !strcmp(a, "--warmup"))
			c.warmup = parse_long(a, v, 0, 10000000);
		else if (!strcmp(a, "--read-size"))
			c.read_size = parse_long(a, v, 1, 1 << 24);
		else if (!strcmp(a, "--window"))
			c.window = parse_long(a, v, 1, 1000000);
		else if (!strcmp(a, "--cpu-client"))
			c.cpu_client = (int)parse_long(a, v, 0, CPU_SETSIZE - 1);
		else if (!strcmp(a, "--cpu-server"))
			c.cpu_server = (int)parse_long(a, v, 0, CPU_SETSIZE - 1);
		else if (!strcmp(a, "--client-netns"))
			c.client_netns = v;
		else if (!strcmp(a, "--server-netns"))
			c.server_netns = v;
		else {
			fprintf(stderr, "lobench: unknown option '%s'\nTry 'lobench --help'.\n", a);
			return 2;
		}
	}
	if (!c.window)
		c.window = c.pattern == P_ONEWAY ? 8 : 64;
	if (c.transport == T_UDP && c.size > 65507)
		die_usage("--size", "", "at most 65507 bytes for udp");
	if (c.transport == T_UNIX_DGRAM && c.size > 200000)
		die_usage("--size", "", "at most 200000 bytes for unix_dgram (socket buffer)");

	char val[32];
	if (c.stamp && c.size < (long)sizeof(struct stamp_hdr)) {
		snprintf(val, sizeof(val), "%ld", c.size);
		die_usage("--size", val, "at least 16 bytes with --stamp");
	}
	if (c.read_size && !is_stream(c.transport) && c.read_size < c.size) {
		snprintf(val, sizeof(val), "%ld", c.read_size);
		die_usage("--read-size", val, "at least --size for datagram transports");
	}

	if (c.duration_s > 0 && !count_given)
		c.count = 100000000; /* the duration decides */
	/* Shared with the children: results and round-trip samples. */
	struct shared sh = { .max_rtt = c.pattern == P_PINGPONG ? (c.count < (1 << 20) ? c.count : (1 << 20)) : 0 };
	/* Stamps: every message the server receives (warm-up included), up to 4 Mi per pair. */
	long stamped = c.count + (c.pattern == P_PINGPONG ? c.warmup : 0);
	sh.max_stamp = c.stamp ? (stamped < (1 << 22) ? stamped : (1 << 22)) : 0;
	size_t res_size = (size_t)c.pairs * sizeof(struct pair_result);
	size_t rtt_size = (size_t)c.pairs * (size_t)sh.max_rtt * sizeof(uint64_t);
	size_t stamp_size = (size_t)c.pairs * (size_t)sh.max_stamp * sizeof(uint64_t);
	/* Pages are touched only as samples are written: no reservation needed. */
	void *mem = mmap(NULL, res_size + rtt_size + stamp_size + 1, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		perror("lobench: mmap");
		return 1;
	}
	sh.pair = mem;
	sh.rtt_ns = (uint64_t *)((char *)mem + res_size);
	sh.stamp_ns = (uint64_t *)((char *)mem + res_size + rtt_size);

	struct run *runs = calloc((size_t)c.pairs, sizeof(*runs));
	pid_t *pids = calloc((size_t)c.pairs * 2, sizeof(*pids));
	if (!runs || !pids) {
		perror("lobench: calloc");
		return 1;
	}
	int failed = 0;
	long started = 0;
	for (long p = 0; p < c.pairs && !failed; p++, started++) {
		struct run *r = &runs[p];
		*r = (struct run){ .c = &c, .sh = &sh, .index = p, .res = &sh.pair[p] };
		if (pipe2(r->ready, O_CLOEXEC) || pipe2(r->token_s2c, O_CLOEXEC)) {
			perror("lobench: pipe");
			return 1;
		}
		char tag[32];
		if (is_unix(c.transport)) {
			if (c.unix_addr == U_SOCKETPAIR) {
				if (socketpair(AF_UNIX, sock_type(c.transport) | SOCK_CLOEXEC, 0, r->pair)) {
					perror("lobench: socketpair");
					return 1;
				}
			} else {
				snprintf(tag, sizeof(tag), "s%ld", p);
				unix_address(c.unix_addr, tag, &r->server_addr);
				snprintf(tag, sizeof(tag), "c%ld", p);
				unix_address(c.unix_addr, tag, &r->client_addr);
			}
		} else if (inet_address(c.addr, 0, &r->server_addr)) {
			die_usage("--addr", c.addr, "an IPv4 or IPv6 address");
		}
		pids[2 * p] = fork();
		if (pids[2 * p] == 0)
			run_server(r);
		int port = 0;
		if (read(r->ready[0], &port, sizeof(port)) <= 0) {
			waitpid(pids[2 * p], NULL, 0);
			pids[2 * p] = 0;
			fprintf(stderr, "lobench: server failed: %s: %s\n", r->res->server.what,
				strerror(r->res->server.error));
			failed = 1;
			break;
		}
		if (!is_unix(c.transport))
			inet_address(c.addr, port, &r->server_addr);
		pids[2 * p + 1] = fork();
		if (pids[2 * p + 1] == 0)
			run_client(r);
		if (r->pair[0] > 0) {
			close(r->pair[0]);
			close(r->pair[1]);
		}
	}
	for (long p = 0; p < started; p++) {
		int st_c = 0, st_s = 0;
		if (pids[2 * p + 1])
			waitpid(pids[2 * p + 1], &st_c, 0);
		if (st_c && pids[2 * p]) /* client died: unblock a server waiting for more */
			kill(pids[2 * p], SIGTERM);
		if (pids[2 * p])
			waitpid(pids[2 * p], &st_s, 0);
		if (is_unix(c.transport) && c.unix_addr == U_PATH) {
			unlink(((struct sockaddr_un *)&runs[p].server_addr.ss)->sun_path);
			unlink(((struct sockaddr_un *)&runs[p].client_addr.ss)->sun_path);
		}
		if ((st_c || st_s) && !failed) {
			const struct side *bad = st_c ? &sh.pair[p].client : &sh.pair[p].server;
			fprintf(stderr, "lobench: %s %ld failed: %s: %s\n", st_c ? "client" : "server", p,
				bad->what, strerror(bad->error));
			failed = 1;
		}
	}
	if (failed)
		return 1;

	/* Totals over all pairs; latency samples of all pairs together. */
	struct side tc = { 0 }, ts = { 0 };
	double elapsed = 0;
	long messages = 0, nrtt = 0, nstamp = 0;
	for (long p = 0; p < c.pairs; p++) {
		const struct pair_result *pr = &sh.pair[p];
		tc.sent_messages += pr->client.sent_messages;
		tc.sent_bytes += pr->client.sent_bytes;
		tc.recv_messages += pr->client.recv_messages;
		tc.recv_bytes += pr->client.recv_bytes;
		ts.sent_messages += pr->server.sent_messages;
		ts.sent_bytes += pr->server.sent_bytes;
		ts.recv_messages += pr->server.recv_messages;
		ts.recv_bytes += pr->server.recv_bytes;
		messages += pr->messages;
		if (pr->elapsed_s > elapsed)
			elapsed = pr->elapsed_s;
		/* Compact the samples to the front. */
		memmove(sh.rtt_ns + nrtt, sh.rtt_ns + p * sh.max_rtt, (size_t)pr->nrtt * sizeof(uint64_t));
		nrtt += pr->nrtt;
		memmove(sh.stamp_ns + nstamp, sh.stamp_ns + p * sh.max_stamp,
			(size_t)pr->nstamp * sizeof(uint64_t));
		nstamp += pr->nstamp;
	}
	uint64_t *rtt = sh.rtt_ns, *lat = sh.stamp_ns;
	qsort(rtt, (size_t)nrtt, sizeof(*rtt), cmp_u64);
	qsort(lat, (size_t)nstamp, sizeof(*lat), cmp_u64);
	double msgs_per_s = elapsed > 0 ? (double)messages / elapsed : 0;
	const char *tname = transport_names[c.transport];
	const char *where = is_unix(c.transport) ? unix_addr_names[c.unix_addr] : c.addr;
	FILE *o = stdout;
	if (c.json) {
		fprintf(o, "{\"transport\": \"%s\", \"pattern\": \"%s\", \"address\": \"%s\", ", tname,
			pattern_names[c.pattern], where);
		fprintf(o, "\"pairs\": %ld, \"messages\": %ld, \"size\": %ld, \"warmup\": %ld, "
			   "\"elapsed_s\": %.6f, \"messages_per_s\": %.1f, \"mb_per_s\": %.3f,\n ",
			c.pairs, messages, c.size, c.warmup, elapsed, msgs_per_s,
			msgs_per_s * (double)c.size / 1e6);
		print_side(o, "client", &sh.pair[0].client, true);
		fprintf(o, ",\n ");
		print_side(o, "server", &sh.pair[0].server, true);
		fprintf(o, ",\n ");
		print_side(o, "clients_total", &tc, true);
		fprintf(o, ",\n ");
		print_side(o, "servers_total", &ts, true);
		fprintf(o, ",\n \"clients\": [");
		for (long p = 0; p < c.pairs; p++)
			fprintf(o, "%s%d", p ? ", " : "", sh.pair[p].client.pid);
		fprintf(o, "], \"servers\": [");
		for (long p = 0; p < c.pairs; p++)
			fprintf(o, "%s%d", p ? ", " : "", sh.pair[p].server.pid);
		fprintf(o, "]");
		if (nrtt) {
			fprintf(o, ",\n \"rtt_ns\": {\"count\": %ld, \"p50\": %llu, \"p90\": %llu, "
				   "\"p99\": %llu, \"p999\": %llu, \"max\": %llu}",
				nrtt, (unsigned long long)pct(rtt, nrtt, .5),
				(unsigned long long)pct(rtt, nrtt, .9),
				(unsigned long long)pct(rtt, nrtt, .99),
				(unsigned long long)pct(rtt, nrtt, .999),
				(unsigned long long)rtt[nrtt - 1]);
			fprintf(o, ",\n \"one_way_ns\": {\"p50\": %llu, \"p90\": %llu, \"p99\": %llu, "
				   "\"p999\": %llu, \"max\": %llu}",
				(unsigned long long)pct(rtt, nrtt, .5) / 2,
				(unsigned long long)pct(rtt, nrtt, .9) / 2,
				(unsigned long long)pct(rtt, nrtt, .99) / 2,
				(unsigned long long)pct(rtt, nrtt, .999) / 2,
				(unsigned long long)rtt[nrtt - 1] / 2);
		}
		if (c.stamp) {
			fprintf(o, ",\n \"stamped_latency_ns\": {\"count\": %ld, \"p50\": %llu, \"p90\": %llu, "
				   "\"p99\": %llu, \"max\": %llu, \"min\": %llu",
				nstamp, (unsigned long long)pct(lat, nstamp, .5),
				(unsigned long long)pct(lat, nstamp, .9),
				(unsigned long long)pct(lat, nstamp, .99),
				(unsigned long long)(nstamp ? lat[nstamp - 1] : 0),
				(unsigned long long)(nstamp ? lat[0] : 0));
			/* Every percentile (0 = min), so a sampled estimate can be placed by rank. */
			fprintf(o, ",\n  \"pct\": [");
			for (long k = 0; k <= 100; k++) {
				long rank = (k * nstamp + 99) / 100; /* ceil(k% of n), in integers */
				fprintf(o, "%s%llu", k ? ", " : "",
					(unsigned long long)(nstamp ? lat[rank ? rank - 1 : 0] : 0));
			}
			fprintf(o, "]}");
		}
		fprintf(o, "}\n");
	} else {
		fprintf(o, "%s %s over %s, %ld pair%s x %ld msgs x %ld B: %.3f s, %.0f msgs/s, %.2f MB/s\n",
			pattern_names[c.pattern], tname, where, c.pairs, c.pairs > 1 ? "s" : "",
			messages / c.pairs, c.size, elapsed, msgs_per_s,
			msgs_per_s * (double)c.size / 1e6);
		if (nrtt)
			fprintf(o, "one-way (RTT/2): p50 %.2f us  p90 %.2f us  p99 %.2f us  p99.9 %.2f us  max %.2f us\n",
				pct(rtt, nrtt, .5) / 2e3, pct(rtt, nrtt, .9) / 2e3,
				pct(rtt, nrtt, .99) / 2e3, pct(rtt, nrtt, .999) / 2e3,
				rtt[nrtt - 1] / 2e3);
		if (nstamp)
			fprintf(o, "stamped latency (%ld msgs): p50 %.2f us  p90 %.2f us  p99 %.2f us  min %.2f us  max %.2f us\n",
				nstamp, pct(lat, nstamp, .5) / 1e3, pct(lat, nstamp, .9) / 1e3,
				pct(lat, nstamp, .99) / 1e3, lat[0] / 1e3, lat[nstamp - 1] / 1e3);
		for (long p = 0; p < c.pairs && p < 4; p++) {
			print_side(o, "client", &sh.pair[p].client, false);
			print_side(o, "server", &sh.pair[p].server, false);
		}
		if (c.pairs > 4)
			fprintf(o, "... %ld pairs in all\n", c.pairs);
		if (c.pairs > 1) {
			print_side(o, "clients", &tc, false);
			print_side(o, "servers", &ts, false);
		}
	}
	return 0;
}
