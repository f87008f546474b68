// Exercises every function and every error code of libvattn on the sim
// backend. Run by capi_test.go; argv[1] is "unavailable" when cudavmm
// cannot run on this machine (no GPU), "gpu" otherwise.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include "libvattn.h"

static int failures;

#define EXPECT(call, want) do { \
	vattn_status got_ = (call); \
	if (got_ != (want)) { \
		char m_[512] = ""; \
		vattn_last_error(0, m_, sizeof m_, NULL); \
		fprintf(stderr, "%s:%d: %s = %d, want %d (global error: %s)\n", __FILE__, __LINE__, #call, got_, want, m_); \
		failures++; \
	} \
} while (0)

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static vattn_config_t base(void) {
	vattn_config_t c;
	memset(&c, 0, sizeof c);
	c.layers = 4; c.kv_heads = 8; c.head_dim = 128; c.dtype_bytes = 2;
	c.max_batch = 4; c.max_context = 1024; c.page_size = 2 << 20;
	c.sim_gpu_memory = 1LL << 30;
	return c;
}

// expect_msg checks h's last error mentions want.
static void expect_msg(int64_t h, const char *want) {
	char m[1024];
	size_t n = 0;
	EXPECT(vattn_last_error(h, m, sizeof m, &n), VATTN_OK);
	if (strstr(m, want) == NULL) {
		fprintf(stderr, "last error of %lld does not mention %s\n", (long long)h, want);
		fprintf(stderr, "  got: %s\n", m);
		failures++;
	}
	CHECK(n == strlen(m));
}

struct worker { int64_t h; int iters; int bad; };

static void *stats_loop(void *p) {
	struct worker *w = p;
	for (int i = 0; i < w->iters; i++) {
		vattn_stats_t st;
		int64_t free_blocks;
		if (vattn_stats(w->h, &st) != VATTN_OK || vattn_free_kvblocks(w->h, &free_blocks) != VATTN_OK)
			w->bad++;
	}
	return NULL;
}

static void *step_loop(void *p) {
	struct worker *w = p;
	for (int i = 0; i < w->iters; i++) {
		int32_t idx;
		if (vattn_alloc_batch_idx(w->h, 10, &idx) != VATTN_OK) { w->bad++; continue; }
		int64_t lens[4] = {0};
		lens[idx] = 10 + i % 500;
		if (vattn_step_async(w->h, lens, 4) != VATTN_OK) w->bad++;
		if (vattn_wait(w->h) != VATTN_OK) w->bad++;
		if (vattn_free_batch_idx(w->h, idx) != VATTN_OK) w->bad++;
	}
	return NULL;
}

// step_until_gone steps its own slot until the handle is destroyed under
// it; anything but success or a bad handle counts as bad.
static void *step_until_gone(void *p) {
	struct worker *w = p;
	for (int i = 0;; i++) {
		int32_t idx;
		vattn_status st = vattn_alloc_batch_idx(w->h, 10, &idx);
		if (st == VATTN_ERR_BAD_HANDLE) return NULL;
		if (st != VATTN_OK) { __atomic_fetch_add(&w->bad, 1, __ATOMIC_RELAXED); return NULL; }
		int64_t lens[4] = {0};
		lens[idx] = 10 + i % 500;
		st = vattn_step_async(w->h, lens, 4);
		if (st == VATTN_OK) st = vattn_free_batch_idx(w->h, idx);
		if (st == VATTN_ERR_BAD_HANDLE) return NULL;
		if (st != VATTN_OK) { __atomic_fetch_add(&w->bad, 1, __ATOMIC_RELAXED); return NULL; }
		__atomic_fetch_add(&w->iters, 1, __ATOMIC_RELAXED);
	}
}

int main(int argc, char **argv) {
	const char *gpu = argc > 1 ? argv[1] : "unavailable";
	vattn_config_t cfg = base();
	int64_t h = 0;

	// create: argument and config errors.
	EXPECT(vattn_create(NULL, 0, &cfg, &h), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_create("sim", 0, NULL, &h), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_create("sim", 0, &cfg, NULL), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_create("nope", 0, &cfg, &h), VATTN_ERR_BAD_ARGUMENT);
	expect_msg(0, "unknown backend \"nope\"");
	EXPECT(vattn_create("sim", -1, &cfg, &h), VATTN_ERR_BAD_ARGUMENT);
	vattn_config_t bad = cfg; bad.layers = 0;
	EXPECT(vattn_create("sim", 0, &bad, &h), VATTN_ERR_BAD_CONFIG);
	expect_msg(0, "layers must be positive");
	bad = cfg; bad.page_size = 12345;
	EXPECT(vattn_create("sim", 0, &bad, &h), VATTN_ERR_BAD_CONFIG);
	bad = cfg; bad.page_size = 0;
	EXPECT(vattn_create("sim", 0, &bad, &h), VATTN_ERR_BAD_CONFIG);
	bad = cfg; bad.sim_gpu_memory = -1;
	EXPECT(vattn_create("sim", 0, &bad, &h), VATTN_ERR_BAD_ARGUMENT);
	// More address space than the simulated GPU has: the backend refuses.
	bad = cfg; bad.max_batch = 1 << 20; bad.max_context = 1 << 20;
	EXPECT(vattn_create("sim", 0, &bad, &h), VATTN_ERR_BACKEND);
	if (strcmp(gpu, "unavailable") == 0) {
		EXPECT(vattn_create("cudavmm", 0, &cfg, &h), VATTN_ERR_UNAVAILABLE);
		expect_msg(0, "use the simulator: backend \"sim\"");
	}

	EXPECT(vattn_create("sim", 0, &cfg, &h), VATTN_OK);
	CHECK(h > 0);

	// last_error: buffer handling.
	size_t n = 99;
	EXPECT(vattn_last_error(h, NULL, 0, &n), VATTN_OK);
	CHECK(n == 0);
	EXPECT(vattn_last_error(h, NULL, 0, NULL), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_last_error(123456, NULL, 0, &n), VATTN_ERR_BAD_HANDLE);

	// Bad handles everywhere.
	int32_t idx;
	int64_t i64;
	uint64_t k, v;
	vattn_layout_t lay;
	vattn_stats_t st;
	int64_t lens[4] = {0};
	EXPECT(vattn_reserve_physical(999, 1), VATTN_ERR_BAD_HANDLE);
	expect_msg(0, "bad handle 999");
	EXPECT(vattn_layout(999, &lay), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_kv_pointers(999, 0, &k, &v), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_alloc_batch_idx(999, 1, &idx), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_free_batch_idx(999, 0), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_step(999, lens, 4), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_step_async(999, lens, 4), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_wait(999), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_step_layered(999, lens, 4), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_wait_layer(999, 0), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_stats(999, &st), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_free_kvblocks(999, &i64), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_destroy(999), VATTN_ERR_BAD_HANDLE);

	// Null outputs.
	EXPECT(vattn_layout(h, NULL), VATTN_ERR_BAD_ARGUMENT);
	expect_msg(h, "null pointer");
	EXPECT(vattn_kv_pointers(h, 0, NULL, &v), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_alloc_batch_idx(h, 1, NULL), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_stats(h, NULL), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_free_kvblocks(h, NULL), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_step(h, NULL, 4), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_step(h, lens, -1), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_step_async(h, NULL, 4), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_step_layered(h, NULL, 4), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_reserve_physical(h, -1), VATTN_ERR_BAD_ARGUMENT);

	// Layout and pointers.
	EXPECT(vattn_layout(h, &lay), VATTN_OK);
	CHECK(lay.page_size == 2 << 20);
	CHECK(lay.ranges == 8);
	CHECK(lay.token_bytes == 8 * 128 * 2);
	CHECK(lay.layer_bytes == 8 * 128 * 2);
	CHECK(lay.head_bytes == 256);
	CHECK(lay.slot_bytes == 1024 * 2048);
	CHECK(lay.tokens_per_page == 1024);
	CHECK(lay.pages_per_index == 8);
	CHECK(lay.indexes_per_slot == 1);
	CHECK(lay.megacache == 0);
	uint64_t k0, v0;
	EXPECT(vattn_kv_pointers(h, 0, &k0, &v0), VATTN_OK);
	CHECK(k0 != 0 && v0 != 0 && k0 != v0);
	EXPECT(vattn_kv_pointers(h, 3, &k, &v), VATTN_OK);
	CHECK(k != k0 && v != v0);
	EXPECT(vattn_kv_pointers(h, 4, &k, &v), VATTN_ERR_BAD_ARGUMENT);
	expect_msg(h, "layer out of range: 4 not in [0, 4)");
	EXPECT(vattn_kv_pointers(h, -1, &k, &v), VATTN_ERR_BAD_ARGUMENT);
	// Values a 32-bit parameter would have wrapped to a valid layer.
	EXPECT(vattn_kv_pointers(h, (1LL << 32) + 1, &k, &v), VATTN_ERR_BAD_ARGUMENT);
	expect_msg(h, "4294967297 not in [0, 4)");
	EXPECT(vattn_kv_pointers(h, INT64_MIN, &k, &v), VATTN_ERR_BAD_ARGUMENT);

	// Slots.
	EXPECT(vattn_alloc_batch_idx(h, -1, &idx), VATTN_ERR_BAD_LENGTH);
	EXPECT(vattn_alloc_batch_idx(h, 1025, &idx), VATTN_ERR_CONTEXT_TOO_LONG);
	EXPECT(vattn_free_batch_idx(h, 4), VATTN_ERR_SLOT_RANGE);
	EXPECT(vattn_free_batch_idx(h, 0), VATTN_ERR_SLOT_INACTIVE);
	EXPECT(vattn_alloc_batch_idx(h, 100, &idx), VATTN_OK);
	CHECK(idx >= 0 && idx < 4);
	// Values a 32-bit parameter would have wrapped to slot idx or a
	// short length: each is refused, and the slot stays active.
	EXPECT(vattn_free_batch_idx(h, (1LL << 32) + idx), VATTN_ERR_SLOT_RANGE);
	expect_msg(h, "batch slot out of range");
	EXPECT(vattn_free_batch_idx(h, INT64_MIN), VATTN_ERR_SLOT_RANGE);
	int32_t unused;
	EXPECT(vattn_alloc_batch_idx(h, (1LL << 32) + 5, &unused), VATTN_ERR_CONTEXT_TOO_LONG);
	EXPECT(vattn_stats(h, &st), VATTN_OK);
	CHECK(st.active_slots == 1);

	// No physical memory yet: the step runs out of pages.
	lens[idx] = 100;
	EXPECT(vattn_step(h, lens, 4), VATTN_ERR_OUT_OF_PAGES);
	expect_msg(h, "out of physical pages");
	// The simulated GPU has 1 GiB.
	EXPECT(vattn_reserve_physical(h, 2LL << 30), VATTN_ERR_OUT_OF_PAGES);
	EXPECT(vattn_stats(h, &st), VATTN_OK);
	CHECK(st.reserved_pages == 0 && st.alloc_pages == 0 && st.alloc_calls == 1);
	EXPECT(vattn_reserve_physical(h, 0), VATTN_ERR_BAD_ARGUMENT);
	expect_msg(h, "bad byte count: zero bytes");
	EXPECT(vattn_reserve_physical(h, 64LL << 20), VATTN_OK);
	int64_t free_blocks;
	EXPECT(vattn_free_kvblocks(h, &free_blocks), VATTN_OK);
	CHECK(free_blocks == 4); // 32 pages, 8 per index
	EXPECT(vattn_step(h, lens, 4), VATTN_OK);
	EXPECT(vattn_stats(h, &st), VATTN_OK);
	CHECK(st.reserved_pages == 32);
	CHECK(st.mapped_pages == 8);
	CHECK(st.active_slots == 1);
	CHECK(st.live_tokens == 100);
	CHECK(st.fg_map_calls == 1 && st.fg_map_pages == 8);
	CHECK(st.alloc_calls >= 1 && st.alloc_pages >= 32);
	lens[idx] = 2000;
	EXPECT(vattn_step(h, lens, 4), VATTN_ERR_CONTEXT_TOO_LONG);
	lens[idx] = -5;
	EXPECT(vattn_step(h, lens, 4), VATTN_ERR_BAD_LENGTH);
	int64_t many[5] = {0};
	EXPECT(vattn_step(h, many, 5), VATTN_ERR_SLOT_RANGE);
	expect_msg(h, "5 lengths for 4 slots");
	// A count far beyond the array: refused before anything is read.
	EXPECT(vattn_step(h, many, 1LL << 40), VATTN_ERR_SLOT_RANGE);
	EXPECT(vattn_step_async(h, many, INT64_MAX), VATTN_ERR_SLOT_RANGE);
	EXPECT(vattn_step_layered(h, many, (1LL << 32) + 1), VATTN_ERR_SLOT_RANGE);
	EXPECT(vattn_step(h, many, INT64_MIN), VATTN_ERR_BAD_ARGUMENT);
	// A length a 32-bit conversion would have made 100.
	int64_t wide[4] = {0};
	wide[idx] = (1LL << 32) + 100;
	EXPECT(vattn_step(h, wide, 4), VATTN_ERR_CONTEXT_TOO_LONG);
	wide[idx] = INT64_MIN;
	EXPECT(vattn_step(h, wide, 4), VATTN_ERR_BAD_LENGTH);
	// The lengths are read through a const pointer.
	static const int64_t fixed[4] = {0};
	EXPECT(vattn_step(h, fixed, 0), VATTN_OK);
	int64_t inactive[4] = {0};
	inactive[(idx + 1) % 4] = 5;
	EXPECT(vattn_step(h, inactive, 4), VATTN_ERR_SLOT_INACTIVE);

	// Async: the next token's page is mapped in the background.
	lens[idx] = 1024;
	EXPECT(vattn_step_async(h, lens, 4), VATTN_OK);
	EXPECT(vattn_wait(h), VATTN_OK);
	EXPECT(vattn_stats(h, &st), VATTN_OK);
	CHECK(st.live_tokens == 1024);

	// Layered prefill: layer 0 now, the rest in the background.
	int32_t idx2;
	EXPECT(vattn_alloc_batch_idx(h, 10, &idx2), VATTN_OK);
	int64_t l2[4] = {0};
	l2[idx] = 1024; l2[idx2] = 10;
	EXPECT(vattn_step_layered(h, l2, 4), VATTN_OK);
	for (int l = 0; l < 4; l++) EXPECT(vattn_wait_layer(h, l), VATTN_OK);
	EXPECT(vattn_wait_layer(h, 4), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_wait_layer(h, -1), VATTN_ERR_BAD_ARGUMENT);
	EXPECT(vattn_wait_layer(h, (1LL << 32) + 1), VATTN_ERR_BAD_ARGUMENT);
	expect_msg(h, "layer out of range");
	EXPECT(vattn_wait(h), VATTN_OK);
	EXPECT(vattn_stats(h, &st), VATTN_OK);
	CHECK(st.live_tokens == 1034);
	CHECK(st.bg_map_calls >= 3);
	l2[idx2] = 2000;
	EXPECT(vattn_step_layered(h, l2, 4), VATTN_ERR_CONTEXT_TOO_LONG);
	EXPECT(vattn_free_batch_idx(h, idx2), VATTN_OK);

	// Fill every slot.
	int32_t others[3];
	for (int i = 0; i < 3; i++) EXPECT(vattn_alloc_batch_idx(h, 1, &others[i]), VATTN_OK);
	EXPECT(vattn_alloc_batch_idx(h, 1, &idx), VATTN_ERR_NO_FREE_SLOT);
	expect_msg(h, "no free batch slot");
	for (int i = 0; i < 3; i++) EXPECT(vattn_free_batch_idx(h, others[i]), VATTN_OK);

	EXPECT(vattn_free_batch_idx(h, idx), VATTN_OK);

	// Shrink: nothing is active, so every page goes back to the device.
	int64_t freed = -1;
	EXPECT(vattn_shrink(h, &freed), VATTN_OK);
	EXPECT(vattn_stats(h, &st), VATTN_OK);
	CHECK(freed > 0 && st.reserved_pages == 0 && st.mapped_pages == 0);
	EXPECT(vattn_shrink(h, NULL), VATTN_OK);
	EXPECT(vattn_shrink(999, &freed), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_reserve_physical(h, 64LL << 20), VATTN_OK);

	// A truncated message.
	EXPECT(vattn_free_batch_idx(h, idx), VATTN_ERR_SLOT_INACTIVE);
	char small[8];
	EXPECT(vattn_last_error(h, small, sizeof small, &n), VATTN_ERR_BUFFER_TOO_SMALL);
	CHECK(strlen(small) == 7);
	CHECK(n > 7);

	// Threads: steps on three threads at once, stats on another.
	struct worker ws[3], wa = {h, 2000, 0};
	pthread_t ts[3], ta;
	for (int i = 0; i < 3; i++) {
		ws[i] = (struct worker){h, 200, 0};
		pthread_create(&ts[i], NULL, step_loop, &ws[i]);
	}
	pthread_create(&ta, NULL, stats_loop, &wa);
	for (int i = 0; i < 3; i++) pthread_join(ts[i], NULL);
	pthread_join(ta, NULL);
	CHECK(ws[0].bad == 0 && ws[1].bad == 0 && ws[2].bad == 0 && wa.bad == 0);

	EXPECT(vattn_destroy(h), VATTN_OK);
	EXPECT(vattn_destroy(h), VATTN_ERR_BAD_HANDLE);
	EXPECT(vattn_step(h, lens, 4), VATTN_ERR_BAD_HANDLE);

	// Destroy from another thread while three threads step: it waits for
	// the call in flight; later calls answer a bad handle.
	EXPECT(vattn_create("sim", 0, &cfg, &h), VATTN_OK);
	EXPECT(vattn_reserve_physical(h, 64LL << 20), VATTN_OK);
	struct worker wg[3];
	for (int i = 0; i < 3; i++) {
		wg[i] = (struct worker){h, 0, 0};
		pthread_create(&ts[i], NULL, step_until_gone, &wg[i]);
	}
	for (;;) {
		int done = 0, bad = 0;
		for (int i = 0; i < 3; i++) {
			done += __atomic_load_n(&wg[i].iters, __ATOMIC_RELAXED);
			bad += __atomic_load_n(&wg[i].bad, __ATOMIC_RELAXED);
		}
		if (done >= 100 || bad > 0) break;
		sched_yield();
	}
	EXPECT(vattn_destroy(h), VATTN_OK);
	for (int i = 0; i < 3; i++) pthread_join(ts[i], NULL);
	CHECK(wg[0].bad == 0 && wg[1].bad == 0 && wg[2].bad == 0);

	// Megacache: two ranges, layers interleaved in a token's row.
	cfg.megacache = 1;
	EXPECT(vattn_create("sim", 0, &cfg, &h), VATTN_OK);
	EXPECT(vattn_layout(h, &lay), VATTN_OK);
	CHECK(lay.ranges == 2 && lay.megacache == 1);
	CHECK(lay.token_bytes == 4 * lay.layer_bytes);
	EXPECT(vattn_kv_pointers(h, 0, &k0, &v0), VATTN_OK);
	EXPECT(vattn_kv_pointers(h, 1, &k, &v), VATTN_OK);
	CHECK(k == k0 + (uint64_t)lay.layer_bytes);
	EXPECT(vattn_destroy(h), VATTN_OK);

	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
