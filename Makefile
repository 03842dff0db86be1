# lotrace build.  `make` builds ./lotrace; `make test` builds and runs the
# Criterion suites (root needed for the integration tests).
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= cc
ARCH := x86
BUILD := build

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Ibpf -I$(BUILD)
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Ivmlinux/$(ARCH) -Ibpf -Wall
LDLIBS := -lbpf -lelf -lz -lm
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer

BPF_SRCS := $(wildcard bpf/*.bpf.c)
# maps.bpf.o first: libbpf 1.1's linker resolves extern maps only after their definition.
BPF_OBJS := $(BUILD)/maps.bpf.o $(filter-out $(BUILD)/maps.bpf.o,$(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SRCS)))
BPF_HDRS := $(wildcard bpf/*.h)
LIB_SRCS := user/hist.c user/opts.c user/agg.c user/report.c user/names.c
# lotrace export (issue 4): exposition format, series state, atomic file, /proc
LIB_SRCS += user/export_opts.c user/prom.c user/exporter.c user/textfile.c user/procid.c
APP_SRCS := $(LIB_SRCS) user/loader.c user/lo_attach.c user/main.c user/signals.c
APP_SRCS += user/kmaps.c user/export.c user/compare.c user/top.c user/trace.c
USER_HDRS := $(wildcard user/*.h) bpf/lotrace.h
TESTS := $(BUILD)/test_unit $(BUILD)/test_lobench $(BUILD)/test_integration
TESTS += $(BUILD)/test_latency $(BUILD)/test_export $(BUILD)/test_export_integration
TESTS += $(BUILD)/test_soak
# Each suite's output is kept in a log and its failures repeated at its end.
RUN_SUITE := sh tools/run-suite.sh
LOGS := $(BUILD)/logs

.PHONY: vmtest-scenarios all test test-asan vmtest bench bench-icount clean
.DELETE_ON_ERROR:
all: lotrace tools/lobench

$(BUILD):
	mkdir -p $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) | $(BUILD)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/lotrace.bpf.o: $(BPF_OBJS)
	$(BPFTOOL) gen object $@ $^

$(BUILD)/lotrace.skel.h: $(BUILD)/lotrace.bpf.o
	$(BPFTOOL) gen skeleton $< name lotrace_bpf > $@

lotrace: $(APP_SRCS) $(USER_HDRS) $(BUILD)/lotrace.skel.h
	$(CC) $(CFLAGS) $(APP_SRCS) -o $@ $(LDLIBS)

$(BUILD)/test_unit: tests/test_unit.c $(LIB_SRCS) $(USER_HDRS) | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) -Iuser tests/test_unit.c $(LIB_SRCS) -o $@ -lcriterion -ljson-c -lm

$(BUILD)/test_integration: tests/test_integration.c tests/lotrace_run.c tests/lotrace_run.h | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) -Iuser tests/test_integration.c tests/lotrace_run.c -o $@ -lcriterion -ljson-c -lm

$(BUILD)/test_latency: tests/test_latency.c tests/lotrace_run.c tests/lotrace_run.h | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) tests/test_latency.c tests/lotrace_run.c -o $@ -lcriterion -ljson-c -lbpf -lm

$(BUILD)/test_export: tests/test_export.c $(LIB_SRCS) $(USER_HDRS) | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) -Iuser tests/test_export.c $(LIB_SRCS) -o $@ -lcriterion -lm

$(BUILD)/test_export_integration: tests/test_export_integration.c tests/lotrace_run.c tests/lotrace_run.h | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) -Iuser tests/test_export_integration.c tests/lotrace_run.c -o $@ -lcriterion -ljson-c -lm

# The exporter soak (issue 11): LOTRACE_SOAK_SECONDS, default 600.
$(BUILD)/test_soak: tests/test_soak.c tests/lotrace_run.c tests/lotrace_run.h | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) -Iuser tests/test_soak.c tests/lotrace_run.c -o $@ -lcriterion -ljson-c -lbpf -lm

$(BUILD)/test_lobench: tests/test_lobench.c tests/lotrace_run.c tests/lotrace_run.h | $(BUILD)
	$(CC) $(CFLAGS) $(SAN) tests/test_lobench.c tests/lotrace_run.c -o $@ -lcriterion -ljson-c -lm

# Unit tests, lobench's ground truth, then the integration tests against the
# real kernel (root), the exporter soak (10 minutes; LOTRACE_SOAK_SECONDS), then
# the integration suites again with test-asan's lotrace.
test: lotrace tools/lobench bench/mapmem $(TESTS)
	bench/mapmem --limit-mib 64 2 64 256
	$(RUN_SUITE) $(LOGS)/unit.log $(BUILD)/test_unit --verbose=0
	LOBENCH=./tools/lobench $(RUN_SUITE) $(LOGS)/lobench.log $(BUILD)/test_lobench --verbose=0 -j1
	LOTRACE=./lotrace LOBENCH=./tools/lobench \
		$(RUN_SUITE) $(LOGS)/integration.log $(BUILD)/test_integration --verbose=0 -j1
	LOTRACE=./lotrace LOBENCH=./tools/lobench \
		$(RUN_SUITE) $(LOGS)/latency.log $(BUILD)/test_latency --verbose=0 -j1
	$(RUN_SUITE) $(LOGS)/export.log $(BUILD)/test_export --verbose=0
	LOTRACE=./lotrace LOBENCH=./tools/lobench \
		$(RUN_SUITE) $(LOGS)/export_integration.log $(BUILD)/test_export_integration --verbose=0 -j1
	LOTRACE=./lotrace $(BUILD)/test_soak --verbose -j1
	$(MAKE) --no-print-directory test-asan

# The integration suites against lotrace built with ASan+UBSan.  Every
# report fails the run: UBSan cannot recover (compiled so, whatever the
# environment), ASan halts on the first error, and every report (lotrace's,
# also from runs whose exit status a test ignores) goes to
# $(ASAN_DIR)/report.PID, which must stay empty.  Built with clang: GCC 12's
# UBSan runtime ignores log_path and writes to stderr only.  detect_leaks is
# on: lotrace leaks nothing, libbpf included, so no suppressions.
ASAN_DIR := $(BUILD)/asan
ASAN_ENV := ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:log_path=$(abspath $(ASAN_DIR))/report
ASAN_ENV += UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(abspath $(ASAN_DIR))/report
ASAN_ENV += LOTRACE=$(ASAN_DIR)/lotrace LOBENCH=./tools/lobench

$(ASAN_DIR)/lotrace: $(APP_SRCS) $(USER_HDRS) $(BUILD)/lotrace.skel.h
	mkdir -p $(@D)
	$(CLANG) $(CFLAGS) $(SAN) -fno-sanitize-recover=all $(APP_SRCS) -o $@ $(LDLIBS)

test-asan: $(ASAN_DIR)/lotrace tools/lobench $(BUILD)/test_integration $(BUILD)/test_latency \
	   $(BUILD)/test_export_integration
	rm -f $(ASAN_DIR)/report.* $(ASAN_DIR)/*.log
	rc=0; failed=; \
	for suite in test_integration test_latency test_export_integration; do \
		$(ASAN_ENV) $(RUN_SUITE) $(ASAN_DIR)/$$suite.log $(BUILD)/$$suite --verbose=0 -j1 || \
			{ rc=1; failed="$$failed $$suite"; }; \
	done; \
	for r in $(ASAN_DIR)/report.*; do \
		[ -e "$$r" ] || continue; echo "== sanitizer report $$r"; cat "$$r"; rc=1; \
	done; \
	for suite in $$failed; do $(RUN_SUITE) --failures $(ASAN_DIR)/$$suite.log; done; \
	exit $$rc

# The backend matrix: Debian 6.1 and 6.12 kernels under qemu, and this host.
vmtest: lotrace tools/lobench $(BUILD)/test_integration $(BUILD)/test_latency bench/hookfloor
	tools/vmmatrix.sh

# The same with every latency scenario of test_latency per backend in the VMs
# (about two hours more under TCG: too long for CI).
vmtest-scenarios: lotrace tools/lobench $(BUILD)/test_integration $(BUILD)/test_latency bench/hookfloor
	tools/vmmatrix.sh --scenarios

# Instructions lotrace adds per message, per transport, backend and mode,
# under qemu -icount in Debian 6.12 and 6.1 guests: deterministic, unlike
# host timings.  Rewrites the committed tables that `make vmtest` checks.
bench-icount: lotrace bench/hookfloor
	bench/icount.sh --kernel 6.12 --write bench/icount-6.12.txt
	bench/icount.sh --kernel 6.1 --write bench/icount-6.1.txt

# The overhead benchmark (root): rewrites bench/results.md.
bench: lotrace tools/lobench tools/aggbench bench/hookfloor
	bench/overhead.py

clean:
	rm -rf $(BUILD) lotrace tools/lobench tools/aggbench bench/hookfloor bench/mapmem

tools/lobench: tools/lobench.c
	$(CC) $(CFLAGS) $< -o $@ -lm

tools/aggbench: tools/aggbench.c $(LIB_SRCS) $(USER_HDRS)
	$(CC) $(CFLAGS) -Iuser tools/aggbench.c $(LIB_SRCS) -o $@ -lm

# bench/overhead.py's floor: the tracepoint backend's hooks with empty programs.
$(BUILD)/hookfloor.bpf.o: bench/hookfloor.bpf.c | $(BUILD)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/hookfloor.skel.h: $(BUILD)/hookfloor.bpf.o
	$(BPFTOOL) gen skeleton $< name hookfloor_bpf > $@

bench/hookfloor: bench/hookfloor.c $(BUILD)/hookfloor.skel.h
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

# BPF map memory at 2, 64 and 256 CPUs, computed from the object (no root);
# `make test` fails when it exceeds 64 MiB at any of them.
bench/mapmem: bench/mapmem.c $(BUILD)/lotrace.skel.h bpf/lotrace.h
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)
