#include "exporter.h"

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "names.h"
#include "opts.h"
#include "procid.h"
#include "prom.h"

/*
 * A folded label earns its own series only when its bytes exceed the
 * smallest own series' bytes this many times: every swap moves a series'
 * totals into "other", so swaps must stay rare.
 */
#define EXP_PROMOTE_FACTOR 2
/* Entries looked at to pick one to evict when the label table is full. */
#define EXP_EVICT_SAMPLE 32
#define EXP_LABEL_MAX 512 /* longer cgroup paths are cut */
#define EXP_UNKNOWN "unknown"

/* Chained hash table of nodes embedded first in their structs; capacity a power of two. */
struct hnode {
	struct hnode *next;
	uint64_t hash;
};

struct htab {
	struct hnode **slot;
	size_t cap, n;
};

static bool htab_insert(struct htab *t, struct hnode *node)
{
	if (t->n >= t->cap) { /* load 1: double and rehash */
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct hnode **slot = calloc(cap, sizeof(*slot));
		if (!slot)
			return false;
		for (size_t i = 0; i < t->cap; i++)
			for (struct hnode *h = t->slot[i], *next; h; h = next) {
				next = h->next;
				h->next = slot[h->hash & (cap - 1)];
				slot[h->hash & (cap - 1)] = h;
			}
		free(t->slot);
		t->slot = slot;
		t->cap = cap;
	}
	struct hnode **head = &t->slot[node->hash & (t->cap - 1)];
	node->next = *head;
	*head = node;
	t->n++;
	return true;
}

/* The chain holding hash (NULL when empty). */
static struct hnode *htab_chain(const struct htab *t, uint64_t hash)
{
	return t->cap ? t->slot[hash & (t->cap - 1)] : NULL;
}

/* Calls drop(node) for every node and frees the table. */
static void htab_free(struct htab *t, void (*drop)(struct hnode *))
{
	for (size_t i = 0; i < t->cap; i++)
		for (struct hnode *h = t->slot[i], *next; h; h = next) {
			next = h->next;
			drop(h);
		}
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

/* Removes every node for which gone(ctx, node) is true (gone frees it). */
static void htab_filter(struct htab *t, bool (*gone)(void *ctx, struct hnode *), void *ctx)
{
	for (size_t i = 0; i < t->cap; i++)
		for (struct hnode **ph = &t->slot[i]; *ph;) {
			struct hnode *h = *ph;
			struct hnode *next = h->next;
			if (gone(ctx, h)) {
				*ph = next;
				t->n--;
			} else {
				ph = &h->next;
			}
		}
}

/* Unlinks node (it must be in t). */
static void htab_remove(struct htab *t, struct hnode *node)
{
	for (struct hnode **ph = &t->slot[node->hash & (t->cap - 1)]; *ph; ph = &(*ph)->next)
		if (*ph == node) {
			*ph = node->next;
			t->n--;
			return;
		}
}

#define HTAB_FOREACH(t, node)                                           \
	for (size_t hi_ = 0; hi_ < (t)->cap; hi_++)                      \
		for (struct hnode *node = (t)->slot[hi_]; node; node = node->next)

/* Series values of one (label, transport); [LT_RECV] hist is latency, [LT_SEND] send duration. */
struct exp_vals {
	uint64_t messages[LT_DIRECTION_COUNT];
	uint64_t bytes[LT_DIRECTION_COUNT];
	struct prom_hist hist[LT_DIRECTION_COUNT];
};

/*
 * One (label, transport).  The traffic of a folded label since the last scan
 * waits in pend_*: the scan's end decides whether it opens the label's own
 * series (promotion) or goes into "other", so a label promoted for its
 * traffic shows that traffic under its name.
 */
struct exp_entry {
	struct hnode node; /* first: a node pointer is an entry pointer */
	char *label;
	uint8_t transport;
	bool touched;        /* traffic since the last scan */
	uint64_t rank_bytes; /* lifetime bytes, both directions: the ranking */
	double last_active;
	struct exp_vals *v;  /* its own series; NULL: folded into "other" */
	uint64_t pend_msgs[LT_DIRECTION_COUNT], pend_bytes[LT_DIRECTION_COUNT];
	struct prom_hist *pend_hist; /* [LT_DIRECTION_COUNT], made on a folded label's first sample */
};

/* One process (tgid, tag) with entries in the kernel maps or events; lo entries use tag 0. */
struct exp_task {
	struct hnode node;
	uint32_t tgid;
	uint32_t tag;
	bool alive;        /* tgid exists and, if start_ns is known, still names this process */
	uint64_t start_ns; /* the kernel's start time; 0: not seen yet */
	char *label;    /* resolved on first use */
	uint32_t kept;  /* kernel entries left after this scan */
	uint8_t idle_scans; /* scans it has been gone with nothing left in the kernel */
	uint64_t prev_msgs[LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];
	uint64_t prev_bytes[LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];
	uint64_t prev_lo_pkts[LT_L4_COUNT];
	uint64_t prev_lo_bytes[LT_L4_COUNT];
	/* The label's entry per transport, valid while entry_gen equals the exporter's. */
	struct exp_entry *entry[LT_TRANSPORT_COUNT];
	uint64_t entry_gen[LT_TRANSPORT_COUNT];
};

struct exporter {
	struct exp_config cfg;
	struct htab entries; /* of struct exp_entry */
	struct htab tasks;   /* of struct exp_task */
	unsigned own[LT_TRANSPORT_COUNT];
	struct exp_vals other[LT_TRANSPORT_COUNT];
	size_t label_limit; /* entries at most: exp_label_limit() */
	uint64_t entries_gen; /* bumped when an entry is freed: tasks' cached entries go stale */
	uint64_t rng;       /* picks eviction candidates */
	uint64_t lo_packets[LT_L4_COUNT], lo_bytes[LT_L4_COUNT];
	/* Counts of kernel rows evicted before a scan read them (in "other" and lo_*). */
	struct lt_count evicted[LT_TRANSPORT_COUNT][LT_DIRECTION_COUNT];
	struct lt_count lo_evicted[LT_L4_COUNT];
	uint64_t stats[LT_STAT_COUNT];
	uint64_t map_entries[EXP_MAP_COUNT], map_capacity[EXP_MAP_COUNT];
	bool out_of_memory;
};

static uint64_t hash_label(const char *s, int transport)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)transport; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

static uint64_t hash_task(uint32_t tgid, uint32_t tag)
{
	uint64_t x = ((uint64_t)tag << 32 | tgid) * 0x9e3779b97f4a7c15ULL;
	return x ^ x >> 29;
}

struct exporter *exporter_new(const struct exp_config *cfg)
{
	struct exporter *x = calloc(1, sizeof(*x));
	if (x) {
		x->cfg = *cfg;
		x->label_limit = exp_label_limit(cfg->max_series);
		x->rng = 0x9e3779b97f4a7c15ULL;
	}
	return x;
}

static void entry_free(struct hnode *n)
{
	struct exp_entry *e = (struct exp_entry *)n;
	free(e->label);
	free(e->v);
	free(e->pend_hist);
	free(e);
}

static void task_free(struct hnode *n)
{
	struct exp_task *t = (struct exp_task *)n;
	free(t->label);
	free(t);
}

void exporter_free(struct exporter *x)
{
	if (!x)
		return;
	htab_free(&x->entries, entry_free);
	htab_free(&x->tasks, task_free);
	free(x);
}

size_t exporter_tasks(const struct exporter *x)
{
	return x->tasks.n;
}

size_t exporter_labels(const struct exporter *x)
{
	return x->entries.n;
}

size_t exp_label_limit(unsigned max_series)
{
	return (size_t)LT_TRANSPORT_COUNT * ((size_t)max_series + EXP_SPARE_LABELS);
}

bool exporter_out_of_memory(const struct exporter *x)
{
	return x->out_of_memory;
}

static struct exp_task *task_find(struct exporter *x, uint32_t tgid, uint32_t tag)
{
	for (struct hnode *n = htab_chain(&x->tasks, hash_task(tgid, tag)); n; n = n->next) {
		struct exp_task *t = (struct exp_task *)n;
		if (t->tgid == tgid && t->tag == tag)
			return t;
	}
	return NULL;
}

/* Is start_ns (the kernel's) the start /proc reports, at /proc's resolution? */
static bool same_start(const struct exporter *x, uint64_t start_ns, uint64_t proc_ns)
{
	uint64_t tick = x->cfg.sys.start_tick_ns ? x->cfg.sys.start_tick_ns : 1;
	return start_ns / tick == proc_ns / tick;
}

/* Does tgid exist, and (once its start is known) is it still this process, not a reused pid? */
static void task_check(struct exporter *x, struct exp_task *t)
{
	uint64_t start;
	if (t->tgid == 0) { /* lo packets without an owning socket */
		t->alive = true;
		return;
	}
	t->alive = x->cfg.sys.start(x->cfg.sys.ctx, t->tgid, &start) == 0 &&
		   (!t->start_ns || same_start(x, t->start_ns, start));
}

static struct exp_task *task_get(struct exporter *x, uint32_t tgid, uint32_t tag)
{
	struct exp_task *t = task_find(x, tgid, tag);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t) {
		x->out_of_memory = true;
		return NULL;
	}
	t->node.hash = hash_task(tgid, tag);
	t->tgid = tgid;
	t->tag = tag;
	task_check(x, t);
	if (!htab_insert(&x->tasks, &t->node)) {
		free(t);
		x->out_of_memory = true;
		return NULL;
	}
	return t;
}

static const char *task_label(struct exporter *x, struct exp_task *t, int transport, int direction,
			      const char *comm_hint)
{
	if (t->label)
		return t->label;
	char raw[EXP_LABEL_MAX] = "", label[EXP_LABEL_MAX];
	const struct exp_sys *s = &x->cfg.sys;
	int ok = -1;

	switch (x->cfg.by) {
	case LT_BY_PID:
		snprintf(raw, sizeof(raw), "%u", t->tgid);
		ok = 0;
		break;
	case LT_BY_COMM:
		/* The kernel's comm, as `lotrace stat` shows it; else /proc while it is this process. */
		if (comm_hint && comm_hint[0]) {
			snprintf(raw, sizeof(raw), "%s", comm_hint);
			ok = 0;
		}
		if (ok && s->kernel_comm)
			ok = s->kernel_comm(s->ctx, t->tgid, t->tag, transport, direction, raw,
					    sizeof(raw));
		if (ok && t->alive)
			ok = s->identity(s->ctx, LT_BY_COMM, t->tgid, raw, sizeof(raw));
		break;
	case LT_BY_CGROUP:
	case LT_BY_UNIT:
		/* As the kernel recorded it (a process gone at once keeps its unit); else /proc. */
		if (s->kernel_cgroup && !s->kernel_cgroup(s->ctx, t->tgid, t->tag, transport,
							  direction, raw, sizeof(raw))) {
			ok = 0;
			if (x->cfg.by == LT_BY_UNIT) {
				char path[EXP_LABEL_MAX];
				snprintf(path, sizeof(path), "%s", raw);
				procid_unit_of(path, raw, sizeof(raw));
			}
		}
		if (ok && t->alive) /* a reused pid's /proc entry is another process's */
			ok = s->identity(s->ctx, x->cfg.by, t->tgid, raw, sizeof(raw));
		break;
	}
	prom_sanitize(label, sizeof(label), ok || !raw[0] ? EXP_UNKNOWN : raw);
	t->label = strdup(label);
	if (!t->label)
		x->out_of_memory = true;
	return t->label ? t->label : EXP_UNKNOWN;
}

static struct exp_entry *entry_find(struct exporter *x, const char *label, int transport,
				    uint64_t hash)
{
	for (struct hnode *n = htab_chain(&x->entries, hash); n; n = n->next) {
		struct exp_entry *e = (struct exp_entry *)n;
		if (n->hash == hash && e->transport == transport && !strcmp(e->label, label))
			return e;
	}
	return NULL;
}

static bool may_own(const struct exp_entry *e)
{
	return strcmp(e->label, PROM_FOLD_LABEL) != 0;
}

static bool promote(struct exporter *x, struct exp_entry *e)
{
	e->v = calloc(1, sizeof(*e->v));
	if (!e->v) {
		x->out_of_memory = true;
		return false;
	}
	x->own[e->transport]++;
	return true;
}

/* The series' totals move into "other": the sum over all series does not change. */
static void demote(struct exporter *x, struct exp_entry *e)
{
	struct exp_vals *o = &x->other[e->transport];
	for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
		o->messages[d] += e->v->messages[d];
		o->bytes[d] += e->v->bytes[d];
		prom_hist_merge(&o->hist[d], &e->v->hist[d]);
	}
	free(e->v);
	e->v = NULL;
	x->own[e->transport]--;
}

/* The pending traffic of e goes where e is now counted: its own series or "other". */
static void pend_apply(struct exporter *x, struct exp_entry *e)
{
	struct exp_vals *to = e->v ? e->v : &x->other[e->transport];
	for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
		to->messages[d] += e->pend_msgs[d];
		to->bytes[d] += e->pend_bytes[d];
		e->pend_msgs[d] = e->pend_bytes[d] = 0;
		if (e->pend_hist)
			prom_hist_merge(&to->hist[d], &e->pend_hist[d]);
	}
	free(e->pend_hist);
	e->pend_hist = NULL;
}

static bool pending(const struct exp_entry *e)
{
	for (int d = 0; d < LT_DIRECTION_COUNT; d++)
		if (e->pend_msgs[d] || e->pend_bytes[d] || (e->pend_hist && e->pend_hist[d].count))
			return true;
	return false;
}

static uint64_t rnd(struct exporter *x)
{
	x->rng ^= x->rng << 13;
	x->rng ^= x->rng >> 7;
	x->rng ^= x->rng << 17;
	return x->rng;
}

/*
 * Makes room in a full label table: of EXP_EVICT_SAMPLE entries from random
 * slots, the folded one with the fewest bytes is forgotten.  Its counts are
 * already in "other" (its pending traffic goes there now), so totals stay
 * exact; it only loses its rank, which matters little for the smallest.
 * Own series are never evicted (at most max_series per transport).
 */
static bool evict_one(struct exporter *x)
{
	struct exp_entry *victim = NULL;
	size_t seen = 0;
	for (int tries = 0; tries < 4 * EXP_EVICT_SAMPLE && seen < EXP_EVICT_SAMPLE; tries++)
		for (struct hnode *n = x->entries.slot[rnd(x) & (x->entries.cap - 1)]; n; n = n->next) {
			struct exp_entry *e = (struct exp_entry *)n;
			seen++;
			if (!e->v && (!victim || e->rank_bytes < victim->rank_bytes))
				victim = e;
		}
	if (!victim)
		return false;
	pend_apply(x, victim);
	htab_remove(&x->entries, &victim->node);
	entry_free(&victim->node);
	x->entries_gen++;
	return true;
}

/* The entry of (label, transport), made if new; NULL: not tracked, count it in "other". */
static struct exp_entry *entry_get(struct exporter *x, const char *label, int transport)
{
	uint64_t h = hash_label(label, transport);
	struct exp_entry *e = entry_find(x, label, transport, h);
	if (e)
		return e;
	if (x->entries.n >= x->label_limit && !evict_one(x))
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->label = strdup(label))) {
		free(e);
		x->out_of_memory = true;
		return NULL;
	}
	e->node.hash = h;
	e->transport = (uint8_t)transport;
	if (!htab_insert(&x->entries, &e->node)) {
		entry_free(&e->node);
		x->out_of_memory = true;
		return NULL;
	}
	return e;
}

/* Counter increments of (label, transport, dir): into its series, or pending while folded. */
static void count(struct exporter *x, const char *label, int transport, int dir, uint64_t messages,
		  uint64_t bytes)
{
	struct exp_entry *e = entry_get(x, label, transport);
	if (!e) {
		x->other[transport].messages[dir] += messages;
		x->other[transport].bytes[dir] += bytes;
		return;
	}
	e->touched = true;
	e->rank_bytes += bytes;
	if (e->v) {
		e->v->messages[dir] += messages;
		e->v->bytes[dir] += bytes;
	} else {
		e->pend_msgs[dir] += messages;
		e->pend_bytes[dir] += bytes;
	}
}

/*
 * t's entry for transport: cached in the task, as every latency sample needs
 * it and finding it again means hashing the label.
 */
static struct exp_entry *task_entry(struct exporter *x, struct exp_task *t, int transport,
				    int dir)
{
	if (t->entry[transport] && t->entry_gen[transport] == x->entries_gen)
		return t->entry[transport];
	struct exp_entry *e = entry_get(x, task_label(x, t, transport, dir, NULL), transport);
	t->entry[transport] = e;
	t->entry_gen[transport] = x->entries_gen; /* after entry_get, which may evict */
	return e;
}

/* One histogram sample for tgid's series, standing for weight messages. */
static void sample(struct exporter *x, uint32_t tgid, uint32_t tag, int transport, int dir,
		   uint64_t ns, uint64_t weight)
{
	struct exp_task *t = task_get(x, tgid, tag);
	if (!t)
		return;
	struct exp_entry *e = task_entry(x, t, transport, dir);
	struct prom_hist *h = &x->other[transport].hist[dir];
	if (e) {
		e->touched = true;
		if (e->v)
			h = &e->v->hist[dir];
		else if (e->pend_hist || (e->pend_hist = calloc(LT_DIRECTION_COUNT, sizeof(*h))))
			h = &e->pend_hist[dir];
		else
			x->out_of_memory = true;
	}
	prom_hist_add(h, ns, weight ? weight : 1);
}

void exporter_event(struct exporter *x, const struct lt_event *e)
{
	if (e->transport >= LT_TRANSPORT_COUNT)
		return;
	if (e->kind == LT_EV_SEND_DURATION) {
		sample(x, e->tgid, e->tag, e->transport, LT_SEND, e->value_ns, 1);
		return;
	}
	sample(x, e->tgid, e->tag, e->transport, LT_RECV, e->value_ns, e->weight);
	if (e->send_ns) /* the sender's send duration rode along with its message */
		sample(x, e->peer_tgid, e->peer_tag, e->transport, LT_SEND, e->send_ns, 1);
}

void exporter_scan_begin(struct exporter *x)
{
	HTAB_FOREACH(&x->tasks, n) {
		struct exp_task *t = (struct exp_task *)n;
		task_check(x, t);
		t->kept = 0;
	}
}

/* Adds the increment since the previous scan; a counter below its previous value restarted. */
static uint64_t advance(uint64_t *prev, uint64_t now)
{
	uint64_t d = now >= *prev ? now - *prev : now;
	*prev = now;
	return d;
}

static void proc_add(struct exporter *x, struct exp_task *t, const struct lt_proc_key *k,
		     uint64_t messages, uint64_t bytes, const char *comm)
{
	uint64_t dm = advance(&t->prev_msgs[k->transport][k->direction], messages);
	uint64_t db = advance(&t->prev_bytes[k->transport][k->direction], bytes);
	if (!dm && !db)
		return;
	const char *label = task_label(x, t, k->transport, k->direction, comm);
	count(x, label, k->transport, k->direction, dm, db);
}

bool exporter_proc(struct exporter *x, const struct lt_proc_key *k, uint64_t messages,
		   uint64_t bytes, uint64_t start_ns, const char *comm)
{
	if (k->transport >= LT_TRANSPORT_COUNT || k->direction >= LT_DIRECTION_COUNT)
		return false;
	struct exp_task *t = task_get(x, k->tgid, k->tag);
	if (!t)
		return false;
	if (!t->start_ns && start_ns) { /* first seen through an event: check it as this process */
		t->start_ns = start_ns;
		task_check(x, t);
	}
	proc_add(x, t, k, messages, bytes, comm);
	t->kept++;
	return !t->alive;
}

void exporter_proc_taken(struct exporter *x, const struct lt_proc_key *k, uint64_t messages,
			 uint64_t bytes)
{
	struct exp_task *t = task_find(x, k->tgid, k->tag);
	if (!t || k->transport >= LT_TRANSPORT_COUNT || k->direction >= LT_DIRECTION_COUNT)
		return;
	proc_add(x, t, k, messages, bytes, NULL);
	/* The kernel entry is gone: should it come back, it starts from zero. */
	t->prev_msgs[k->transport][k->direction] = 0;
	t->prev_bytes[k->transport][k->direction] = 0;
	t->kept--;
}

static void lo_add(struct exporter *x, struct exp_task *t, uint32_t l4, uint64_t packets,
		   uint64_t bytes)
{
	x->lo_packets[l4] += advance(&t->prev_lo_pkts[l4], packets);
	x->lo_bytes[l4] += advance(&t->prev_lo_bytes[l4], bytes);
}

bool exporter_lo(struct exporter *x, const struct lt_lo_key *k, uint64_t packets, uint64_t bytes)
{
	if (k->l4 >= LT_L4_COUNT)
		return false;
	struct exp_task *t = task_get(x, k->tgid, 0);
	if (!t)
		return false;
	bool idle = packets == t->prev_lo_pkts[k->l4];
	lo_add(x, t, k->l4, packets, bytes);
	t->kept++;
	/*
	 * A socket can outlive its process (a closing TCP connection still sends
	 * FIN/ACK): take the entry only once it stopped moving, so no packet
	 * lands in it while it is being deleted.
	 */
	return !t->alive && idle;
}

void exporter_lo_taken(struct exporter *x, const struct lt_lo_key *k, uint64_t packets,
		       uint64_t bytes)
{
	struct exp_task *t = task_find(x, k->tgid, 0);
	if (!t || k->l4 >= LT_L4_COUNT)
		return;
	lo_add(x, t, k->l4, packets, bytes);
	t->prev_lo_pkts[k->l4] = 0;
	t->prev_lo_bytes[k->l4] = 0;
	t->kept--;
}

static bool task_gone(struct exporter *x, uint32_t tgid, uint32_t tag)
{
	struct exp_task *t = task_find(x, tgid, tag);
	uint64_t start;
	if (t)
		return !t->alive;
	return tgid && x->cfg.sys.start(x->cfg.sys.ctx, tgid, &start) != 0;
}

bool exporter_pair_gone(struct exporter *x, const struct lt_pair_key *k)
{
	return task_gone(x, k->sender_tgid, k->sender_tag) ||
	       task_gone(x, k->receiver_tgid, k->receiver_tag);
}

void exporter_stats(struct exporter *x, const uint64_t stats[LT_STAT_COUNT])
{
	memcpy(x->stats, stats, sizeof(x->stats));
}

/* Raises *evicted to total - counted (when above it) and returns by how much. */
static struct lt_count fold_up(struct lt_count *evicted, struct lt_count total, uint64_t n,
			       uint64_t bytes)
{
	struct lt_count d = { 0, 0 };
	/* counted includes what was folded before: compare against the rest. */
	n -= evicted->n;
	bytes -= evicted->bytes;
	if (total.n > n && total.n - n > evicted->n)
		d.n = total.n - n - evicted->n;
	if (total.bytes > bytes && total.bytes - bytes > evicted->bytes)
		d.bytes = total.bytes - bytes - evicted->bytes;
	evicted->n += d.n;
	evicted->bytes += d.bytes;
	return d;
}

void exporter_totals(struct exporter *x, const struct lt_count totals[LT_TOT_COUNT])
{
	for (int tr = 0; tr < LT_TRANSPORT_COUNT; tr++) {
		uint64_t n[LT_DIRECTION_COUNT] = { 0 }, bytes[LT_DIRECTION_COUNT] = { 0 };
		struct exp_vals *o = &x->other[tr];
		HTAB_FOREACH(&x->entries, node) {
			const struct exp_entry *e = (const struct exp_entry *)node;
			if (e->transport != tr)
				continue;
			/* Own series, and traffic the scan's end has yet to place. */
			for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
				n[d] += e->pend_msgs[d] + (e->v ? e->v->messages[d] : 0);
				bytes[d] += e->pend_bytes[d] + (e->v ? e->v->bytes[d] : 0);
			}
		}
		for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
			struct lt_count add = fold_up(
				&x->evicted[tr][d],
				totals[LT_TOT_PROC_BASE + tr * LT_DIRECTION_COUNT + d],
				n[d] + o->messages[d], bytes[d] + o->bytes[d]);
			o->messages[d] += add.n;
			o->bytes[d] += add.bytes;
		}
	}
	for (int l4 = 0; l4 < LT_L4_COUNT; l4++) {
		struct lt_count add = fold_up(&x->lo_evicted[l4], totals[LT_TOT_LO_BASE + l4],
					      x->lo_packets[l4], x->lo_bytes[l4]);
		x->lo_packets[l4] += add.n;
		x->lo_bytes[l4] += add.bytes;
	}
}

void exporter_map_size(struct exporter *x, enum exp_map m, uint64_t entries, uint64_t capacity)
{
	x->map_entries[m] = entries;
	x->map_capacity[m] = capacity;
}

/* By transport, then bytes (largest first), then label: a stable order. */
static int by_rank(const void *a, const void *b)
{
	const struct exp_entry *x = *(struct exp_entry *const *)a, *y = *(struct exp_entry *const *)b;
	if (x->transport != y->transport)
		return x->transport - y->transport;
	if (x->rank_bytes != y->rank_bytes)
		return x->rank_bytes < y->rank_bytes ? 1 : -1;
	return strcmp(x->label, y->label);
}

/*
 * Own series for the top labels of one transport (list: largest first), with
 * hysteresis: a folded label replaces the smallest own one only when it has
 * EXP_PROMOTE_FACTOR times its bytes.  Counters stay monotonic: a demoted
 * series' totals move into "other" (which only grows); a promoted label's
 * series starts with its traffic of this interval, its earlier traffic stays
 * in "other".
 */
static void rank_transport(struct exporter *x, int transport, struct exp_entry **list, size_t n)
{
	size_t low = n; /* list[low - 1]: the smallest own entry not yet considered */
	for (size_t i = n; i-- > 0 && x->own[transport] > x->cfg.max_series;)
		if (list[i]->v)
			demote(x, list[i]);
	for (size_t i = 0; i < n; i++) {
		struct exp_entry *f = list[i];
		/* Only with traffic to show: a promoted series never starts empty. */
		if (f->v || !may_own(f) || !pending(f))
			continue;
		if (x->own[transport] < x->cfg.max_series) {
			promote(x, f);
			continue;
		}
		while (low > i + 1 && !list[low - 1]->v)
			low--;
		if (low <= i + 1)
			break; /* every own series is larger than f */
		struct exp_entry *o = list[low - 1];
		if (f->rank_bytes <= o->rank_bytes * EXP_PROMOTE_FACTOR)
			break; /* and every later f is smaller still */
		demote(x, o);
		promote(x, f);
	}
}

/*
 * Processes that are gone and have nothing left in the kernel are forgotten,
 * one scan late: events they caused may still arrive after their entries
 * were taken (committed between the drain and the scan), and must still find
 * their label.
 */
static bool task_done(void *ctx, struct hnode *n)
{
	struct exp_task *t = (struct exp_task *)n;
	(void)ctx;
	if (t->alive || t->kept) {
		t->idle_scans = 0;
		return false;
	}
	if (++t->idle_scans < 2)
		return false;
	task_free(n);
	return true;
}

struct expire_ctx {
	struct exporter *x;
	double now;
};

/* Idle labels lose their series; their totals stay counted, in "other". */
static bool entry_expired(void *ctx, struct hnode *n)
{
	struct expire_ctx *c = ctx;
	struct exp_entry *e = (struct exp_entry *)n;
	if (e->touched) { /* new entries are touched too */
		e->last_active = c->now;
		e->touched = false;
	}
	if (c->x->cfg.idle_expiry_s <= 0 || c->now - e->last_active < c->x->cfg.idle_expiry_s)
		return false;
	if (e->v)
		demote(c->x, e);
	pend_apply(c->x, e);
	entry_free(n);
	c->x->entries_gen++;
	return true;
}

void exporter_scan_end(struct exporter *x, double now)
{
	struct expire_ctx c = { x, now };
	htab_filter(&x->tasks, task_done, NULL);
	htab_filter(&x->entries, entry_expired, &c);

	struct exp_entry **list = malloc((x->entries.n + 1) * sizeof(*list));
	if (list) {
		size_t n = 0;
		HTAB_FOREACH(&x->entries, node)
			list[n++] = (struct exp_entry *)node;
		qsort(list, n, sizeof(*list), by_rank);
		for (size_t i = 0; i < n;) {
			size_t j = i;
			while (j < n && list[j]->transport == list[i]->transport)
				j++;
			rank_transport(x, list[i]->transport, list + i, j - i);
			i = j;
		}
		free(list);
	} else {
		x->out_of_memory = true;
	}
	/* Placement decided: the interval's folded traffic goes to its series or "other". */
	HTAB_FOREACH(&x->entries, node)
		pend_apply(x, (struct exp_entry *)node);
}

/* ---- rendering ---- */

struct series {
	const char *label;
	int transport;
	bool other; /* sorts after the transport's own series */
	const struct exp_vals *v;
};

static int series_cmp(const void *a, const void *b)
{
	const struct series *x = a, *y = b;
	if (x->transport != y->transport)
		return x->transport - y->transport;
	if (x->other != y->other)
		return x->other - y->other;
	return strcmp(x->label, y->label);
}

static bool active(const struct exp_vals *v, int dir)
{
	return v->messages[dir] || v->hist[dir].count;
}

static void render_traffic(FILE *f, const struct series *s, size_t n, const char *by,
			   enum prom_metric m, int dir)
{
	bool header = false;
	for (size_t i = 0; i < n; i++) {
		const struct exp_vals *v = s[i].v;
		if (!active(v, dir))
			continue;
		if (!header)
			prom_family(f, m);
		header = true;
		struct prom_label l[2] = { { "transport", lt_transport_name(s[i].transport) },
					   { by, s[i].label } };
		if (m == PROM_MESSAGE_LATENCY || m == PROM_SEND_DURATION)
			prom_histogram(f, m, l, 2, &v->hist[dir]);
		else if (m == PROM_SENT_MESSAGES || m == PROM_RECEIVED_MESSAGES)
			prom_sample(f, m, "", l, 2, v->messages[dir]);
		else
			prom_sample(f, m, "", l, 2, v->bytes[dir]);
	}
}

static void render_per_transport(FILE *f, enum prom_metric m, const uint64_t *vals)
{
	prom_family(f, m);
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++) {
		struct prom_label l = { "transport", lt_transport_name(t) };
		prom_sample(f, m, "", &l, 1, vals[t]);
	}
}

int exporter_render(struct exporter *x, FILE *f, const struct exp_self *self)
{
	const char *by = lt_export_by_name(x->cfg.by);
	struct series *s = malloc((x->entries.n + LT_TRANSPORT_COUNT) * sizeof(*s));
	uint64_t identities[LT_TRANSPORT_COUNT] = { 0 }, folded[LT_TRANSPORT_COUNT] = { 0 };
	size_t n = 0;

	if (!s)
		return -1;
	HTAB_FOREACH(&x->entries, node) {
		struct exp_entry *e = (struct exp_entry *)node;
		identities[e->transport]++;
		if (!e->v)
			folded[e->transport]++;
		else
			s[n++] = (struct series){ e->label, e->transport, false, e->v };
	}
	for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
		s[n++] = (struct series){ PROM_FOLD_LABEL, t, true, &x->other[t] };
	qsort(s, n, sizeof(*s), series_cmp);

	for (enum prom_metric m = 0; m < PROM_METRIC_COUNT; m++) {
		switch (m) {
		case PROM_SENT_MESSAGES:
		case PROM_SENT_BYTES:
		case PROM_SEND_DURATION:
			render_traffic(f, s, n, by, m, LT_SEND);
			break;
		case PROM_RECEIVED_MESSAGES:
		case PROM_RECEIVED_BYTES:
		case PROM_MESSAGE_LATENCY:
			render_traffic(f, s, n, by, m, LT_RECV);
			break;
		case PROM_LO_PACKETS:
		case PROM_LO_BYTES:
			prom_family(f, m);
			for (int l4 = 0; l4 < LT_L4_COUNT; l4++) {
				struct prom_label l = { "protocol", lt_l4_name(l4) };
				prom_sample(f, m, "", &l, 1,
					    m == PROM_LO_PACKETS ? x->lo_packets[l4] : x->lo_bytes[l4]);
			}
			break;
		case PROM_UNTIMED_MESSAGES: {
			uint64_t untimed[LT_TRANSPORT_COUNT] = { 0 };
			for (int c = 0; c < LT_UNTIMED_CAUSE_COUNT; c++)
				for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
					untimed[t] += x->stats[LT_STAT_UNTIMED(c, t)];
			render_per_transport(f, m, untimed);
			break;
		}
		case PROM_MISSED_RUNS:
			prom_family(f, m);
			prom_sample(f, m, "", NULL, 0, x->stats[LT_STAT_MISSED_RUNS]);
			break;
		case PROM_LOST_EVENTS:
			prom_family(f, m);
			prom_sample(f, m, "", NULL, 0, x->stats[LT_STAT_LOST_EVENTS]);
			break;
		case PROM_EVENTS_PROCESSED:
			prom_family(f, m);
			prom_sample(f, m, "", NULL, 0, self->events_processed);
			break;
		case PROM_MAP_FULL:
			prom_family(f, m);
			prom_sample(f, m, "", NULL, 0, x->stats[LT_STAT_MAP_FULL]);
			break;
		case PROM_MAP_ENTRIES:
		case PROM_MAP_CAPACITY: {
			static const char *const names[EXP_MAP_COUNT] = { "proc_counts", "pair_counts",
									  "lo_counts" };
			prom_family(f, m);
			for (int i = 0; i < EXP_MAP_COUNT; i++) {
				struct prom_label l = { "map", names[i] };
				prom_sample(f, m, "", &l, 1,
					    m == PROM_MAP_ENTRIES ? x->map_entries[i] : x->map_capacity[i]);
			}
			break;
		}
		case PROM_EVICTED_MESSAGES:
		case PROM_EVICTED_BYTES:
			prom_family(f, m);
			for (int t = 0; t < LT_TRANSPORT_COUNT; t++)
				for (int d = 0; d < LT_DIRECTION_COUNT; d++) {
					struct prom_label l[2] = { { "transport", lt_transport_name(t) },
								   { "direction", lt_direction_name(d) } };
					const struct lt_count *c = &x->evicted[t][d];
					prom_sample(f, m, "", l, 2,
						    m == PROM_EVICTED_MESSAGES ? c->n : c->bytes);
				}
			break;
		case PROM_IDENTITIES:
			render_per_transport(f, m, identities);
			break;
		case PROM_FOLDED_IDENTITIES:
			render_per_transport(f, m, folded);
			break;
		case PROM_BUILD_INFO: {
			struct prom_label l = { "version", LOTRACE_VERSION };
			prom_family(f, m);
			prom_sample(f, m, "", &l, 1, 1);
			break;
		}
		case PROM_BACKEND_INFO: {
			struct prom_label l[2] = { { "backend", self->backend ? self->backend : "none" },
						   { "lo_attach", self->lo_attach ? self->lo_attach : "none" } };
			prom_family(f, m);
			prom_sample(f, m, "", l, 2, 1);
			break;
		}
		case PROM_WRITE_FAILURES:
			prom_family(f, m);
			prom_sample(f, m, "", NULL, 0, self->write_failures);
			break;
		case PROM_LAST_WRITE:
			prom_family(f, m);
			fprintf(f, "%s %.3f\n", prom_metric_name(m), self->unix_time);
			break;
		case PROM_METRIC_COUNT:
			break;
		}
	}
	free(s);
	return 0;
}

/* ---- /proc ---- */

/* /proc/PID/stat gives start times in clock ticks: the kernel's ns divided by this. */
static uint64_t procfs_tick_ns(void)
{
	long hz = sysconf(_SC_CLK_TCK);
	return hz > 0 ? 1000000000ull / (uint64_t)hz : 10000000ull;
}

static int procfs_start(void *ctx, uint32_t tgid, uint64_t *start_ns)
{
	(void)ctx;
	uint64_t ticks;
	if (procid_start(tgid, &ticks))
		return -1;
	*start_ns = ticks * procfs_tick_ns();
	return 0;
}

static int procfs_identity(void *ctx, enum lt_export_by by, uint32_t tgid, char *out, size_t len)
{
	(void)ctx;
	if (by == LT_BY_COMM)
		return procid_comm(tgid, out, len);
	if (procid_cgroup(tgid, out, len))
		return -1;
	if (by == LT_BY_UNIT) {
		char path[EXP_LABEL_MAX];
		snprintf(path, sizeof(path), "%s", out);
		procid_unit_of(path, out, len);
	}
	return 0;
}

struct exp_sys exp_procfs(void)
{
	return (struct exp_sys){ .start = procfs_start, .identity = procfs_identity,
				 .start_tick_ns = procfs_tick_ns() };
}
