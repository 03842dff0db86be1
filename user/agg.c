#include "agg.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static uint64_t proc_key(uint32_t tgid, uint32_t tag, int transport, int direction)
{
	return ((uint64_t)tgid << 16 | (uint64_t)transport << 8 | (uint64_t)direction) ^
	       mix((uint64_t)tag + 1);
}

static uint64_t pair_key(uint32_t sender, uint32_t sender_tag, uint32_t receiver,
			 uint32_t receiver_tag, int transport)
{
	return ((uint64_t)sender << 32 | receiver) * 31 + (uint64_t)transport +
	       mix((uint64_t)sender_tag << 32 | receiver_tag);
}

static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return arr;
	size_t n = *cap ? *cap * 2 : 64;
	while (n < need)
		n *= 2;
	void *p = realloc(arr, n * elem);
	if (!p)
		return NULL;
	memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
	*cap = n;
	return p;
}

struct agg *agg_new(void)
{
	return calloc(1, sizeof(struct agg));
}

void agg_free(struct agg *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nprocs; i++) {
		free(a->procs[i].latency);
		free(a->procs[i].send_dur);
	}
	for (size_t i = 0; i < a->npairs; i++)
		free(a->pairs[i].latency);
	free(a->procs);
	free(a->pairs);
	free(a->lo);
	for (size_t i = 0; i < a->ncgroups; i++)
		free(a->cgroups[i].path);
	free(a->cgroups);
	free(a->proc_index.slot);
	free(a->pair_index.slot);
	free(a);
}

/* Open addressing; keyof(i) gives row i's key. */
typedef uint64_t (*keyof_fn)(const struct agg *a, size_t row);

static uint64_t proc_keyof(const struct agg *a, size_t row)
{
	const struct agg_proc *p = &a->procs[row];
	return proc_key(p->tgid, p->tag, p->transport, p->direction);
}

static uint64_t pair_keyof(const struct agg *a, size_t row)
{
	const struct agg_pair *p = &a->pairs[row];
	return pair_key(p->sender, p->sender_tag, p->receiver, p->receiver_tag, p->transport);
}

static int index_insert(struct agg_index *ix, uint64_t key, size_t row)
{
	size_t mask = ix->cap - 1;
	for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
		if (!ix->slot[i]) {
			ix->slot[i] = (uint32_t)row + 1;
			return 0;
		}
	}
}

static int index_rebuild(const struct agg *a, struct agg_index *ix, size_t rows, keyof_fn keyof)
{
	size_t cap = 64;
	while (cap < rows * 2)
		cap *= 2;
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return -1;
	free(ix->slot);
	ix->slot = slot;
	ix->cap = cap;
	for (size_t r = 0; r < rows; r++)
		index_insert(ix, keyof(a, r), r);
	return 0;
}

/*
 * Index the row just appended, row rows - 1, growing the index to keep it at
 * most half full.  On failure the caller drops the row again: left unindexed,
 * it would be appended a second time on the next lookup.
 */
static int index_add(const struct agg *a, struct agg_index *ix, size_t rows, uint64_t key,
		     keyof_fn keyof)
{
	if (rows * 2 > ix->cap)
		return index_rebuild(a, ix, rows, keyof);
	return index_insert(ix, key, rows - 1);
}

/* Row index of key, or -1. */
static long index_find(const struct agg *a, const struct agg_index *ix, uint64_t key,
		       keyof_fn keyof, int (*same)(const struct agg *, size_t, const void *),
		       const void *want)
{
	if (!ix->cap)
		return -1;
	size_t mask = ix->cap - 1;
	for (size_t i = mix(key) & mask; ix->slot[i]; i = (i + 1) & mask) {
		size_t row = ix->slot[i] - 1;
		if (keyof(a, row) == key && same(a, row, want))
			return (long)row;
	}
	return -1;
}

struct proc_want {
	uint32_t tgid, tag;
	int transport, direction;
};

static int proc_same(const struct agg *a, size_t row, const void *w)
{
	const struct proc_want *want = w;
	const struct agg_proc *p = &a->procs[row];
	return p->tgid == want->tgid && p->tag == want->tag && p->transport == want->transport &&
	       p->direction == want->direction;
}

struct pair_want {
	uint32_t sender, sender_tag, receiver, receiver_tag;
	int transport;
};

static int pair_same(const struct agg *a, size_t row, const void *w)
{
	const struct pair_want *want = w;
	const struct agg_pair *p = &a->pairs[row];
	return p->sender == want->sender && p->sender_tag == want->sender_tag &&
	       p->receiver == want->receiver && p->receiver_tag == want->receiver_tag &&
	       p->transport == want->transport;
}

struct agg_proc *agg_proc(struct agg *a, uint32_t tgid, uint32_t tag, int transport, int direction)
{
	struct proc_want want = { tgid, tag, transport, direction };
	uint64_t key = proc_key(tgid, tag, transport, direction);
	long row = index_find(a, &a->proc_index, key, proc_keyof, proc_same, &want);

	if (row >= 0)
		return &a->procs[row];
	struct agg_proc *procs = grow(a->procs, &a->procs_cap, a->nprocs + 1, sizeof(*procs));
	if (!procs)
		return NULL;
	a->procs = procs;
	struct agg_proc *p = &a->procs[a->nprocs++];
	p->tgid = tgid;
	p->tag = tag;
	p->transport = (uint8_t)transport;
	p->direction = (uint8_t)direction;
	if (index_add(a, &a->proc_index, a->nprocs, key, proc_keyof)) {
		a->nprocs--;
		return NULL;
	}
	return p;
}

struct agg_pair *agg_pair(struct agg *a, uint32_t sender, uint32_t sender_tag, uint32_t receiver,
			  uint32_t receiver_tag, int transport)
{
	struct pair_want want = { sender, sender_tag, receiver, receiver_tag, transport };
	uint64_t key = pair_key(sender, sender_tag, receiver, receiver_tag, transport);
	long row = index_find(a, &a->pair_index, key, pair_keyof, pair_same, &want);

	if (row >= 0)
		return &a->pairs[row];
	struct agg_pair *pairs = grow(a->pairs, &a->pairs_cap, a->npairs + 1, sizeof(*pairs));
	if (!pairs)
		return NULL;
	a->pairs = pairs;
	struct agg_pair *p = &a->pairs[a->npairs++];
	p->sender = sender;
	p->sender_tag = sender_tag;
	p->receiver = receiver;
	p->receiver_tag = receiver_tag;
	p->transport = (uint8_t)transport;
	if (index_add(a, &a->pair_index, a->npairs, key, pair_keyof)) {
		a->npairs--;
		return NULL;
	}
	return p;
}

const char *agg_comm(const struct agg *a, uint32_t tgid, uint32_t tag)
{
	for (size_t i = 0; i < a->nprocs; i++)
		if (a->procs[i].tgid == tgid && a->procs[i].tag == tag && a->procs[i].comm[0])
			return a->procs[i].comm;
	return "?";
}

const char *agg_cgroup_of(const struct agg *a, uint32_t tgid, uint32_t tag)
{
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct agg_proc *p = &a->procs[i];
		if (p->tgid == tgid && (p->tag == tag || !tag) && p->cgroup_id)
			return agg_cgroup_path(a, p->cgroup_id);
	}
	return NULL;
}

const char *agg_comm_latest(const struct agg *a, uint32_t tgid)
{
	const struct agg_proc *best = NULL;
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct agg_proc *p = &a->procs[i];
		if (p->tgid == tgid && p->comm[0] && (!best || p->start_ns > best->start_ns))
			best = p;
	}
	return best ? best->comm : "?";
}

static struct hist *hist_of(struct hist **h)
{
	if (!*h)
		*h = calloc(1, sizeof(struct hist));
	return *h;
}

int agg_event(struct agg *a, const void *data, size_t size)
{
	struct lt_event e;

	if (size < sizeof(e))
		return -1;
	memcpy(&e, data, sizeof(e));
	if (e.transport >= LT_TRANSPORT_COUNT)
		return -1;
	a->events_processed++;
	if (a->event_sink && (e.kind == LT_EV_MESSAGE || e.kind == LT_EV_SEND_DURATION)) {
		a->event_sink(a->event_sink_ctx, &e);
		return 0;
	}
	if (e.kind == LT_EV_MESSAGE) {
		struct agg_proc *p = agg_proc(a, e.tgid, e.tag, e.transport, LT_RECV);
		struct agg_pair *pr = agg_pair(a, e.peer_tgid, e.peer_tag, e.tgid, e.tag, e.transport);
		struct hist *h;
		if (p && (h = hist_of(&p->latency)))
			hist_add_weighted(h, e.value_ns, e.weight);
		if (pr && (h = hist_of(&pr->latency)))
			hist_add_weighted(h, e.value_ns, e.weight);
		hist_add_weighted(&a->transport_latency[e.transport], e.value_ns, e.weight);
		if (e.send_ns) {
			struct agg_proc *s = agg_proc(a, e.peer_tgid, e.peer_tag, e.transport, LT_SEND);
			if (s && (h = hist_of(&s->send_dur)))
				hist_add(h, e.send_ns);
			hist_add(&a->transport_send[e.transport], e.send_ns);
		}
		return 0;
	}
	if (e.kind == LT_EV_SEND_DURATION) {
		struct agg_proc *p = agg_proc(a, e.tgid, e.tag, e.transport, LT_SEND);
		struct hist *h;
		if (p && (h = hist_of(&p->send_dur)))
			hist_add(h, e.value_ns);
		hist_add(&a->transport_send[e.transport], e.value_ns);
		return 0;
	}
	a->events_processed--;
	return -1;
}

void agg_set_cgroup(struct agg *a, uint64_t id, const char *path)
{
	if (!id || agg_cgroup_path(a, id))
		return;
	struct agg_cgroup *g = grow(a->cgroups, &a->cgroups_cap, a->ncgroups + 1, sizeof(*g));
	if (!g)
		return;
	a->cgroups = g;
	char *copy = strdup(path);
	if (!copy)
		return;
	a->cgroups[a->ncgroups++] = (struct agg_cgroup){ .id = id, .path = copy };
}

const char *agg_cgroup_path(const struct agg *a, uint64_t id)
{
	for (size_t i = 0; id && i < a->ncgroups; i++)
		if (a->cgroups[i].id == id)
			return a->cgroups[i].path;
	return NULL;
}

void agg_set_proc(struct agg *a, const struct lt_proc_key *k, uint64_t messages,
		  uint64_t bytes, uint64_t start_ns, uint64_t cgroup_id, const char *comm)
{
	if (k->transport >= LT_TRANSPORT_COUNT || k->direction >= LT_DIRECTION_COUNT)
		return;
	struct agg_proc *p = agg_proc(a, k->tgid, k->tag, k->transport, k->direction);
	if (!p)
		return;
	p->messages = messages;
	p->bytes = bytes;
	if (start_ns)
		p->start_ns = start_ns;
	if (cgroup_id)
		p->cgroup_id = cgroup_id;
	if (comm && comm[0]) {
		size_t n = strnlen(comm, LOTRACE_COMM_LEN - 1);
		memcpy(p->comm, comm, n);
		p->comm[n] = 0;
	}
}

void agg_set_pair(struct agg *a, const struct lt_pair_key *k, uint64_t messages, uint64_t bytes)
{
	if (k->transport >= LT_TRANSPORT_COUNT)
		return;
	struct agg_pair *p = agg_pair(a, k->sender_tgid, k->sender_tag, k->receiver_tgid,
				      k->receiver_tag, k->transport);
	if (!p)
		return;
	p->messages = messages;
	p->bytes = bytes;
}

void agg_set_lo(struct agg *a, const struct lt_lo_key *k, uint64_t packets, uint64_t bytes)
{
	for (size_t i = 0; i < a->nlo; i++) {
		if (a->lo[i].tgid == k->tgid && a->lo[i].l4 == k->l4) {
			a->lo[i].packets = packets;
			a->lo[i].bytes = bytes;
			return;
		}
	}
	struct agg_lo_proc *lo = grow(a->lo, &a->lo_cap, a->nlo + 1, sizeof(*lo));
	if (!lo)
		return;
	a->lo = lo;
	a->lo[a->nlo++] = (struct agg_lo_proc){ k->tgid, k->l4, packets, bytes };
}

const char *lt_untimed_cause_name(int cause)
{
	static const char *const names[] = {
#define LOTRACE_X_NAME(e, n) n,
		LOTRACE_UNTIMED_CAUSES(LOTRACE_X_NAME)
#undef LOTRACE_X_NAME
		"unmatched",
	};
	return cause >= 0 && cause <= LT_UNTIMED_UNMATCHED ? names[cause] : "?";
}

void agg_account_untimed(struct agg *a, const uint64_t *stats)
{
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		/* The exact total: rows may have been evicted. */
		uint64_t sent = a->totals[LT_TOT_PROC_BASE + t * LT_DIRECTION_COUNT + LT_SEND].n;
		uint64_t explained = a->transport_latency[t].samples;
		a->untimed[t] = 0;
		for (int c = 0; c < LT_UNTIMED_CAUSE_COUNT; c++) {
			uint64_t n = stats[LT_STAT_UNTIMED(c, t)];
			a->untimed_by_cause[c][t] = n;
			a->untimed[t] += n;
			explained += n;
		}
		uint64_t rest = sent > explained ? sent - explained : 0;
		a->untimed_by_cause[LT_UNTIMED_UNMATCHED][t] = rest;
		a->untimed[t] += rest;
	}
}

double agg_timed_fraction(const struct hist *latency, uint64_t messages)
{
	if (!messages || !latency)
		return 0.0;
	double f = (double)latency->samples / (double)messages;
	return f > 1.0 ? 1.0 : f;
}

uint64_t agg_recv_messages(const struct agg_proc *p)
{
	return p->delivered ? p->delivered : p->messages;
}

void agg_count_delivered(struct agg *a)
{
	for (size_t i = 0; i < a->nprocs; i++)
		a->procs[i].delivered = 0;
	for (size_t i = 0; i < a->npairs; i++) {
		const struct agg_pair *p = &a->pairs[i];
		struct proc_want want = { p->receiver, p->receiver_tag, p->transport, LT_RECV };
		long row = index_find(a, &a->proc_index,
				      proc_key(p->receiver, p->receiver_tag, p->transport, LT_RECV),
				      proc_keyof, proc_same, &want);
		if (row >= 0)
			a->procs[row].delivered += p->messages;
	}
}

uint64_t agg_untimed_total(const struct agg *a)
{
	uint64_t n = 0;
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
		n += a->untimed[t];
	return n;
}

/* total - rows, never below 0 (the rows were read first). */
static struct lt_count folded(struct lt_count total, uint64_t n, uint64_t bytes)
{
	return (struct lt_count){ total.n > n ? total.n - n : 0,
				  total.bytes > bytes ? total.bytes - bytes : 0 };
}

struct lt_count agg_folded_proc(const struct agg *a, int transport, int direction)
{
	uint64_t n = 0, bytes = 0;
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct agg_proc *p = &a->procs[i];
		if (p->transport == transport && p->direction == direction) {
			n += p->messages;
			bytes += p->bytes;
		}
	}
	return folded(a->totals[LT_TOT_PROC_BASE + transport * LT_DIRECTION_COUNT + direction], n,
		      bytes);
}

struct lt_count agg_folded_pair(const struct agg *a, int transport)
{
	uint64_t n = 0, bytes = 0;
	for (size_t i = 0; i < a->npairs; i++) {
		if (a->pairs[i].transport == transport) {
			n += a->pairs[i].messages;
			bytes += a->pairs[i].bytes;
		}
	}
	return folded(a->totals[LT_TOT_PAIR_BASE + transport], n, bytes);
}

struct lt_count agg_folded_lo(const struct agg *a, int l4)
{
	uint64_t n = 0, bytes = 0;
	for (size_t i = 0; i < a->nlo; i++) {
		if (a->lo[i].l4 == (uint32_t)l4) {
			n += a->lo[i].packets;
			bytes += a->lo[i].bytes;
		}
	}
	return folded(a->totals[LT_TOT_LO_BASE + l4], n, bytes);
}
