# The two commands a new user types: `make demo` and `make test`.
BUILD       ?= build
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test bench asan tsan debug install clean

all: build

deps:
	@scripts/deps.sh

# The build's own output is shown only when it fails.
build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@echo "building in $(BUILD)/ ..."
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || \
	  { cat $(BUILD)/build.log; echo "build failed (log: $(BUILD)/build.log)"; exit 1; }

demo: build
	@scripts/demo.sh $(BUILD)

test: build
	@python3 scripts/check_layers.py $(BUILD)
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

# -O0 with assertions: the lock protocols that comments state are checked.
debug:
	@$(MAKE) test BUILD=build-debug \
	  CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DMPROC_WERROR=ON"

install: build
	@cmake --install $(BUILD)

.PHONY: docs deb

# The API reference (Doxygen, one page per header) in $(BUILD)/docs/html.
docs:
	@scripts/docs.sh $(BUILD)/docs

# The Debian packages (runtime and -dev) in build-deb/ (make clean leaves
# it: rm -rf build-deb).
deb:
	@scripts/deb.sh build-deb

clean:
	rm -rf build build-asan build-tsan build-debug
