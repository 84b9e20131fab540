# The targets people type. The real build is meson + ninja in build/.
PREFIX ?= /usr/local
DESTDIR ?=
BUILD := build

.PHONY: all deps check check-unit check-integration check-asan fuzz demo images install clean format bench

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX)

deps:
	scripts/install-deps

# The whole test suite: unit tests, then integration tests on real pools,
# guests and namespaces. Ends with "N passed, N failed, N skipped". Like
# demo, it installs what is missing first, so it works first on a fresh
# machine (the build runs after the install, not beside it: a sub-make).
check: deps
	$(MAKE) all
	tests/run

check-unit: all
	tests/run unit

check-integration: all
	tests/run integration

# The unit tests and the stream and receive integration tests, built with
# ASan and UBSan (clang; any report fails the run, leaks included: see
# tests/sanitizers/). Its own tree, build-asan/.
ASAN_BUILD := build-asan
ASAN_TESTS := bad-streams.sh stream-compat.sh send-receive.sh receive-durable.sh bad-input.sh hostile-

check-asan: deps
	$(MAKE) $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	BUILD=$(abspath $(ASAN_BUILD)) SANITIZE=1 tests/run unit
	BUILD=$(abspath $(ASAN_BUILD)) SANITIZE=1 tests/run integration $(ASAN_TESTS)

$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
		--buildtype=debugoptimized

# The libFuzzer harnesses of fuzz/ (docs/fuzzing.md), each run for FUZZ_S
# seconds from its corpus; fails on any crash, leak, timeout or sanitizer
# report. Its own tree, build-fuzz/.
FUZZ_BUILD := build-fuzz
FUZZ_S ?= 60

fuzz: deps
	$(MAKE) $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	fuzz/run $(abspath $(FUZZ_BUILD)) $(FUZZ_S)

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzzing=true -Db_sanitize=address,undefined \
		-Db_lundef=false --buildtype=debugoptimized

# Every bench/* script, each printing its results table (see BENCHMARKS.md).
bench: all
	@for b in bench/*; do \
		[ -x "$$b" ] || continue; \
		echo "== $$b"; BUILD=$(abspath $(BUILD)) "$$b" || exit 1; \
	done

images: all
	images/build

demo: deps all
	scripts/demo

install: all
	meson configure $(BUILD) -Dprefix=$(PREFIX) >/dev/null
	ninja -C $(BUILD) >/dev/null
	DESTDIR=$(DESTDIR) meson install -C $(BUILD) --no-rebuild

format:
	find src tools tests -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
