# The two commands a new user types: `make demo` and `make test`.
BUILD       ?= build
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test bench asan tsan install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@scripts/check_leftovers.sh

bench: build
	@scripts/bench.sh $(BUILD)

asan:
	@$(MAKE) test BUILD=build-asan \
	  CMAKE_FLAGS="-DMPROC_SANITIZE=address,undefined -DMPROC_WERROR=ON"

tsan:
	@$(MAKE) test BUILD=build-tsan \
	  CMAKE_FLAGS="-DMPROC_SANITIZE=thread -DMPROC_WERROR=ON"

install: build
	@cmake --install $(BUILD)

clean:
	rm -rf build build-asan build-tsan
