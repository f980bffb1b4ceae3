# vmpulse: the two commands a new user needs are `make demo` and `make test`.
SWIFT ?= swift

.PHONY: setup build test fuzz demo bench bench-agent bench-thin bench-rpc bench-metrics bench-heartbeat bench-engine clean

## setup: install QEMU and friends if missing, build the test guest
setup:
	scripts/setup.sh

build: setup
	$(SWIFT) build

## test: everything the suite needs, then the whole suite (real QEMU guests included)
test: setup
	$(SWIFT) build --build-tests
	# One test at a time: on two cores, parallel suites that boot guests starve
	# each other and make the timing bounds (a stuck VM costs at most --timeout) noisy.
	$(SWIFT) test --skip-build --no-parallel
	# Each libFuzzer target for a short time (the sanitizer build is its own, in .build/fuzz).
	FUZZ_SECONDS=$${FUZZ_TEST_SECONDS:-20} SWIFT=$(SWIFT) scripts/fuzz.sh

## fuzz: build the libFuzzer targets (Fuzz/*) and run each for FUZZ_SECONDS (600 by default)
fuzz:
	SWIFT=$(SWIFT) scripts/fuzz.sh

## demo: boot three test guests and show live `vmpulse stats` for them
demo: setup
	$(SWIFT) build
	scripts/demo.sh

## bench: vmpulse stats vs virsh domstats on N paused guests (N=50 by default).
## Release build with the Swift runtime linked in, as vmpulse would be shipped to hosts.
bench:
	scripts/setup.sh --libvirt
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/StatsBenchmark --guests $${N:-50}

## bench-agent: the agent's CPU and memory with 100 paused and 3 busy guests
bench-agent: setup
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/AgentBenchmark --paused $${PAUSED:-100} --busy $${BUSY:-3}

## bench-thin: thin-disk extension on the write-threshold event, beside polling every 2 s
bench-thin: setup
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/ThinBenchmark

## bench-rpc: an engine's poll (Host.getAllVmRuntimeStats) beside vmpulse stats --json, on 100 paused guests
bench-rpc: setup
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/RPCBenchmark --paused $${PAUSED:-100}

## bench-metrics: GET /metrics scrape time and size for 100 paused guests and 500 simulated VMs (QMP simulator), beside the sampling period
bench-metrics: setup
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/MetricsBenchmark --paused $${PAUSED:-100} --simulated $${SIMULATED:-500}

## bench-engine: bytes and calls per hour of the engine's polling (the proposal's scheme beside the old one) at 100 and 500 simulated VMs, then the engine's CPU and memory polling 50 hosts (fake agents)
bench-engine: setup
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/EngineBenchmark

## bench-heartbeat: detection latency and false deaths of the fixed and phi detectors under 0/5/20 % loss with jitter (simulated channel)
bench-heartbeat:
	$(SWIFT) build -c release --static-swift-stdlib --product HeartbeatBenchmark
	.build/release/HeartbeatBenchmark --minutes $${MINUTES:-10} --runs $${RUNS:-60}

clean:
	rm -rf .build .testbed
