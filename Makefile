# One entry point: make run | check | fuzz | coverage | bench | install | clean
# Objects go under build/ (build/asan with SANITIZE=1); `make -j2` is safe.

SHELL      := /bin/bash
PREFIX     ?= /usr/local
DESTDIR    ?=
CC         ?= gcc
CLANG      ?= clang-14
FUZZ_SECONDS ?= 60
VERSION    := 0.1.0
SOVERSION  := 0

ifeq ($(SANITIZE),1)
  CC       := $(CLANG)
  B        ?= build/asan
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
  B        ?= build
  SANFLAGS :=
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wconversion -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -Iclient/include -Iclient/src -Ibroker-sim/src/core -Ibroker-sim/src/net -Ibroker-sim/src/auth \
            -Ibroker-sim/src/svc -D_POSIX_C_SOURCE=200809L
CFLAGS   ?= -O2 -g
# Valgrind 3.19 cannot read clang-14's default DWARF 5.
CFLAGS   += -std=c11 -gdwarf-4 -fPIC $(WARN) $(SANFLAGS)
LDFLAGS  += $(SANFLAGS)

CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# ---- libiotc ---------------------------------------------------------------
LIB_SRC  := $(sort $(wildcard client/src/mqtt/*.c client/src/core/*.c client/src/net/*.c client/src/svc/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)
LIB_A    := $(B)/lib/libiotc.a
LIB_SO   := $(B)/lib/libiotc.so.$(VERSION)
LIB_PC   := $(B)/lib/pkgconfig/iotc.pc

# ---- iotsim's engine (an internal library the broker, its tests and fuzzers link) ----
SIM_SRC  := $(sort $(wildcard broker-sim/src/core/*.c broker-sim/src/svc/*.c))
SIM_OBJ  := $(SIM_SRC:%.c=$(B)/obj/%.o)
SIM_A    := $(B)/lib/libsim.a
CJSON_LIBS := $(shell pkg-config --libs libcjson 2>/dev/null || echo -lcjson)
# libcbor: the fleet provisioning service's cbor format (broker-sim/src/svc/sim_provision.c).
CBOR_LIBS  := $(shell pkg-config --libs libcbor 2>/dev/null || echo -lcbor)

# The edge and the program: lws, OpenSSL, the state directory.
SIMNET_SRC := $(sort $(wildcard broker-sim/src/net/*.c broker-sim/src/auth/*.c))
SIMNET_OBJ := $(SIMNET_SRC:%.c=$(B)/obj/%.o)
SSL_LIBS := $(shell pkg-config --libs libssl libcrypto 2>/dev/null || echo -lssl -lcrypto)
LWS_LIBS := $(shell pkg-config --libs libwebsockets 2>/dev/null || echo -lwebsockets)
IOTSIM   := $(B)/bin/iotsim

SIM_TEST_SRC := $(sort $(wildcard broker-sim/tests/test_*.c))
SIM_TESTS := $(SIM_TEST_SRC:broker-sim/tests/%.c=$(B)/tests/sim_%)

# ---- programs --------------------------------------------------------------
TOOL_SRC := $(sort $(filter-out client/tools/iotc.c,$(wildcard client/tools/*.c)))
TOOLS    := $(TOOL_SRC:client/tools/%.c=$(B)/bin/iotc-%) $(B)/bin/iotc
SAMPLE_SRC := $(sort $(wildcard client/samples/*.c))
SAMPLES  := $(SAMPLE_SRC:client/samples/%.c=$(B)/bin/samples/%)
# What a program linking libiotc.a needs besides it (cJSON: the shadow and
# fleet provisioning clients of client/src/svc/).
IOTC_LIBS = $(LWS_LIBS) $(SSL_LIBS) $(CJSON_LIBS) -lpthread
# The client integration tests' program (client/tests/integration/).
ITEST    := $(B)/tests/integration/iotc_itest

TEST_SRC := $(sort $(wildcard client/tests/test_*.c))
TESTS    := $(TEST_SRC:client/tests/%.c=$(B)/tests/%)
TEST_HELPERS := $(sort $(wildcard client/tests/helpers/*.c))
TEST_HELPER_OBJ := $(TEST_HELPERS:%.c=$(B)/obj/%.o)

FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRC:fuzz/fuzz_%.c=%)
REPLAYS  := $(FUZZ_NAMES:%=$(B)/fuzz/replay_%)
FUZZERS  := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)

BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCHES  := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.PHONY: scenarios scenario-mutants conformance validate-client all lib deps check check-unit check-asan check-valgrind check-fuzz-replay check-tools check-integration check-sanitize-build \
        run fuzz fuzzers coverage bench install clean

all: lib $(SIM_A) $(IOTSIM) $(TOOLS) $(SAMPLES) $(TESTS) $(SIM_TESTS) $(REPLAYS) $(BENCHES) $(ITEST)

lib: $(LIB_A) $(B)/lib/libiotc.so $(LIB_PC)

deps:
	@bash ci/install-deps.sh

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libiotc.so.$(SOVERSION) $(LDFLAGS) -o $@ $^ $(IOTC_LIBS)

$(B)/lib/libiotc.so: $(LIB_SO)
	ln -sf libiotc.so.$(VERSION) $(B)/lib/libiotc.so.$(SOVERSION)
	ln -sf libiotc.so.$(VERSION) $@

$(LIB_PC): client/iotc.pc.in Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

$(SIM_A): $(SIM_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/tests/sim_%: $(B)/obj/broker-sim/tests/%.o $(SIMNET_OBJ) $(SIM_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LWS_LIBS) $(SSL_LIBS) $(CJSON_LIBS) $(CBOR_LIBS) $(CMOCKA_LIBS)

$(IOTSIM): $(B)/obj/broker-sim/src/main.o $(SIMNET_OBJ) $(SIM_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LWS_LIBS) $(SSL_LIBS) $(CJSON_LIBS) $(CBOR_LIBS)

$(B)/bin/iotc-%: $(B)/obj/client/tools/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(IOTC_LIBS) $(CJSON_LIBS)

$(B)/bin/iotc: $(B)/obj/client/tools/iotc.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(IOTC_LIBS) $(CJSON_LIBS)

$(B)/bin/samples/%: $(B)/obj/client/samples/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(IOTC_LIBS)

$(ITEST): $(B)/obj/client/tests/integration/iotc_itest.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(IOTC_LIBS)

$(B)/tests/%: $(B)/obj/client/tests/%.o $(TEST_HELPER_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(IOTC_LIBS) $(CMOCKA_LIBS)

# Corpus replay: the harness with a plain main() (fuzz/replay_main.c), built by
# the project's compiler so that it also runs under Valgrind and the sanitizers.
$(B)/fuzz/replay_%: $(B)/obj/fuzz/fuzz_%.o $(B)/obj/fuzz/replay_main.o $(SIM_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CJSON_LIBS) $(CBOR_LIBS) $(IOTC_LIBS)

$(B)/bench/%: $(B)/obj/bench/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(BENCH_LIBS_$*) $(IOTC_LIBS)

# The broker benchmark's load generator is built on libmosquitto.
BENCH_LIBS_bench_broker := -lmosquitto $(SSL_LIBS) -lpthread
# The client benchmark compares libiotc with libmosquitto and paho.mqtt.c's MQTTAsync.
BENCH_LIBS_bench_client := -lmosquitto -lpaho-mqtt3a -lpthread

# ---- check -------------------------------------------------------------------
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite

# The builds use both cores (-j$(JOBS)); the tests run one after the other,
# since several of them measure time.  The sanitizer pass builds only what
# it runs (the client integration tests run the CLI too).
JOBS ?= 2
check: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all
	@$(MAKE) --no-print-directory check-unit check-fuzz-replay check-tools check-integration
	@$(MAKE) --no-print-directory scenarios conformance
	@$(MAKE) --no-print-directory check-valgrind
	@$(MAKE) --no-print-directory -j$(JOBS) SANITIZE=1 check-sanitize-build
	@$(MAKE) --no-print-directory SANITIZE=1 check-unit check-fuzz-replay check-integration conformance
	@echo "make check: all passed"

check-sanitize-build: $(TESTS) $(SIM_TESTS) $(REPLAYS) $(IOTSIM) $(ITEST) $(TOOLS)

check-unit: $(TESTS) $(SIM_TESTS)
	@set -e; for t in $(TESTS) $(SIM_TESTS); do echo "== $$t"; IOTC_FIXTURES=client/tests/fixtures $$t; done

check-valgrind: $(TESTS) $(SIM_TESTS) $(REPLAYS)
	@set -e; for t in $(TESTS) $(SIM_TESTS); do echo "== valgrind $$t"; \
	  IOTC_FIXTURES=client/tests/fixtures CMOCKA_MESSAGE_OUTPUT=stdout $(VALGRIND) $$t >/dev/null; done
	@set -e; for n in $(FUZZ_NAMES); do echo "== valgrind replay $$n"; \
	  $(VALGRIND) $(B)/fuzz/replay_$$n fuzz/corpus/$$n; done

check-fuzz-replay: $(REPLAYS)
	@set -e; for n in $(FUZZ_NAMES); do echo "== replay corpus $$n"; $(B)/fuzz/replay_$$n fuzz/corpus/$$n; done

# iotsim over real sockets with clients nobody here wrote (mosquitto, paho, awscrt).
check-integration: $(IOTSIM) $(ITEST)
	@echo "== iotsim integration"; bash broker-sim/tests/integration/run.sh $(B)
	@echo "== client integration"; bash client/tests/integration/run.sh $(B)

check-tools: $(TOOLS) $(IOTSIM) $(SAMPLES)
	@set -e; for t in client/tools/tests/*.sh ci/tests/*.sh; do [ -f "$$t" ] || continue; echo "== $$t"; B=$(B) bash $$t; done

# ---- scenarios ---------------------------------------------------------------
# Every scripted scenario against its own iotsim, two at a time (scenarios/README.md).
scenarios: $(IOTSIM) $(TOOLS)
	@echo "== scenarios"; python3 scenarios/run.py --build $(B) --report $(B)/scenarios scenarios/*.scn

# Each scenario seen to fail against a client with the bug it targets: builds
# of iotc-agent with one deliberate bug each (scenarios/mutants/*.patch).
# About four minutes, so not part of `check`.
scenario-mutants: $(IOTSIM) $(TOOLS)
	@bash scenarios/mutants.sh

# ---- conformance -------------------------------------------------------------
# Every documented AWS IoT behaviour iotsim reproduces, checked against it (conformance/README.md).
conformance: $(IOTSIM)
	@echo "== conformance"; /usr/bin/python3 conformance/run.py --build $(B) --report $(B)/conformance

# Clients nobody here wrote (and ours) held against AWS IoT's documented
# behaviour through adapters (conformance/validator/README.md).  A client's
# FAIL is a finding about that client, not a failure of this target.
validate-client: $(IOTSIM) $(TOOLS)
	@echo "== client validator"; /usr/bin/python3 conformance/validate-client --build $(B) --report $(B)/validator

# ---- run ---------------------------------------------------------------------
# The codec against captured peer traffic, then the scenarios, the conformance
# matrix and the client validator side by side (ci/run-demo.sh).
run: deps
	@$(MAKE) --no-print-directory all
	@bash ci/run-demo.sh $(B)

# ---- fuzz --------------------------------------------------------------------
FUZZ_CFLAGS := -std=c11 -g -O1 -gdwarf-4 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(WARN)

fuzzers: $(FUZZERS)

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(LIB_SRC) $(SIM_SRC) $(wildcard fuzz/*.h client/src/mqtt/*.h broker-sim/src/core/*.h) client/include/iotc/mqtt.h client/include/iotc/topic.h
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(SIM_SRC) $(CJSON_LIBS) $(CBOR_LIBS) $(IOTC_LIBS)

# Every harness runs its time box even when an earlier one found something;
# the target fails at the end if any did.  FUZZ_JOBS harnesses run at once.
FUZZ_JOBS ?= 1
fuzz: deps fuzzers
	@printf '%s\n' $(FUZZ_NAMES) | xargs -P $(FUZZ_JOBS) -I{} sh -c '\
	  n={}; mkdir -p build/fuzz/corpus-$$n build/fuzz/artifacts-$$n; \
	  echo "== fuzz $$n for $(FUZZ_SECONDS) s"; \
	  if build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -artifact_prefix=build/fuzz/artifacts-$$n/ build/fuzz/corpus-$$n fuzz/corpus/$$n \
	      >build/fuzz/fuzz_$$n.log 2>&1; then \
	    echo "$$n: $$(grep -Eo "stat::number_of_executed_units: [0-9]+" build/fuzz/fuzz_$$n.log), no finding"; \
	  else echo "$$n: FINDING (build/fuzz/fuzz_$$n.log, build/fuzz/artifacts-$$n/)"; tail -30 build/fuzz/fuzz_$$n.log; exit 1; fi' \
	  || { echo "make fuzz: a harness found something"; exit 1; }

# ---- coverage ----------------------------------------------------------------
coverage: deps
	@$(MAKE) --no-print-directory B=build/cov CFLAGS="-O0 -g --coverage" LDFLAGS="--coverage" all
	@find build/cov -name '*.gcda' -delete
	@$(MAKE) --no-print-directory B=build/cov CFLAGS="-O0 -g --coverage" LDFLAGS="--coverage" check-unit check-fuzz-replay
	@lcov -q --capture --directory build/cov/obj/client/src --output-file build/cov/all.info --rc lcov_branch_coverage=0
	@lcov -q --extract build/cov/all.info '*/client/src/mqtt/*' --output-file build/cov/codec.info
	@genhtml -q build/cov/codec.info --output-directory build/coverage
	@lcov --summary build/cov/codec.info 2>&1 | tee build/cov/summary.txt
	@pct=$$(grep -Eo 'lines\.*: [0-9.]+' build/cov/summary.txt | grep -Eo '[0-9.]+$$'); \
	  echo "codec line coverage: $$pct% (report: build/coverage/index.html)"; \
	  awk -v p="$$pct" 'BEGIN { exit (p >= 95.0) ? 0 : 1 }' || { echo "coverage below 95%"; exit 1; }

# ---- bench -------------------------------------------------------------------
bench: deps
	@$(MAKE) --no-print-directory B=build/bench-o2 CFLAGS="-O2 -g" $(BENCHES:$(B)/%=build/bench-o2/%) build/bench-o2/bin/iotsim
	@set -e; for b in $(filter-out %/bench_broker,$(BENCHES:$(B)/%=build/bench-o2/%)); do $$b; done
	@IOTSIM=build/bench-o2/bin/iotsim BENCH_BROKER=build/bench-o2/bench/bench_broker bash bench/broker.sh

# ---- install -----------------------------------------------------------------
install: lib $(TOOLS) $(IOTSIM)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/iotc $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIB_A) $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libiotc.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libiotc.so.$(SOVERSION)
	ln -sf libiotc.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libiotc.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' client/iotc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/iotc.pc
	install -m 644 client/include/iotc/*.h $(DESTDIR)$(PREFIX)/include/iotc/
	install -m 755 $(TOOLS) $(IOTSIM) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build

# Objects are never "intermediate": make would delete them after linking and
# rebuild them on every later invocation (check runs make several times).
.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
