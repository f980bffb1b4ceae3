// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "vmpulse",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vmpulse", targets: ["vmpulse"]),
        .library(name: "VMPulseCore", targets: ["VMPulseCore"]),
        .library(name: "QMP", targets: ["QMP"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // Pure logic: the stats model, selection, formats, /proc parsers. No I/O.
        .target(name: "VMPulseCore", swiftSettings: strict),
        // The QMP protocol client on SwiftNIO. Knows nothing of stats; takes JSON from Core.
        .target(
            name: "QMP",
            dependencies: [
                "VMPulseCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // libvirt's C API (Debian's libvirt-dev, found by pkg-config); only Libvirt imports it.
        .systemLibrary(name: "CLibvirt", path: "Sources/CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        // The Swift layer over libvirt: owns every C pointer, typed parameter array and error.
        .target(
            name: "Libvirt",
            dependencies: ["CLibvirt", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The backend protocol (the one seam), the QMP backend (discovery, stats groups, /proc) and the libvirt backend.
        .target(
            name: "Hypervisor",
            dependencies: [
                "VMPulseCore", "QMP", "Libvirt",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The billing ledger and sample history in SQLite (GRDB).
        .target(
            name: "Store",
            dependencies: ["VMPulseCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strict
        ),
        // The long-running agent: configuration, sampler, accounting, ledger writer.
        .target(
            name: "Agent",
            dependencies: [
                "VMPulseCore", "Hypervisor", "Store",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        // HTTP: the stats API the CLI and engines read (snapshots only).
        .target(
            name: "API",
            dependencies: [
                "VMPulseCore", "Agent", "Hypervisor", "Store",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strict
        ),
        // The engine side: polls agents' host APIs, keeps the fleet's view and billing in a
        // fleet store (SQLite by default, PostgreSQL for a fleet). Knows agents only by their wire.
        .target(
            name: "Engine",
            dependencies: [
                "VMPulseCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strict
        ),
        // The test bed (real QEMU guests), a scripted QMP peer for bad input, helpers.
        .target(
            name: "VMPulseTestSupport",
            dependencies: [
                "VMPulseCore", "QMP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "vmpulse",
            dependencies: [
                "VMPulseCore", "Hypervisor", "Store", "Agent", "API", "Engine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Launches test guests for `make demo` and the benchmarks (same code as the tests use).
        .executableTarget(
            name: "vmpulse-testbed",
            dependencies: [
                "VMPulseTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "StatsBenchmark",
            dependencies: [
                "VMPulseTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/StatsBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "AgentBenchmark",
            dependencies: [
                "VMPulseTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/AgentBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "RPCBenchmark",
            dependencies: [
                "VMPulseTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/RPCBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "MetricsBenchmark",
            dependencies: [
                "VMPulseTestSupport", "VMPulseCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/MetricsBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "HeartbeatBenchmark",
            dependencies: ["Agent", "VMPulseCore", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/HeartbeatBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EngineBenchmark",
            dependencies: [
                "VMPulseTestSupport", "Engine", "VMPulseCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/EngineBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ThinBenchmark",
            dependencies: [
                "VMPulseTestSupport", "QMP", "VMPulseCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/ThinBenchmark",
            swiftSettings: strict
        ),
        // libFuzzer targets (scripts/fuzz.sh builds them with -sanitize=fuzzer -DFUZZING; a normal
        // build makes them corpus replayers, so they keep compiling).
        .target(name: "FuzzSupport", path: "Fuzz/FuzzSupport", swiftSettings: strict),
        .executableTarget(name: "FuzzJSON", dependencies: ["FuzzSupport", "VMPulseCore"], path: "Fuzz/FuzzJSON", swiftSettings: strict),
        .executableTarget(
            name: "FuzzQMP",
            dependencies: ["FuzzSupport", "VMPulseCore", "QMP", "Hypervisor", .product(name: "NIOEmbedded", package: "swift-nio")],
            path: "Fuzz/FuzzQMP", swiftSettings: strict),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzSupport", "Agent"], path: "Fuzz/FuzzConfig", swiftSettings: strict),
        .executableTarget(name: "FuzzBillingDate", dependencies: ["FuzzSupport", "VMPulseCore"], path: "Fuzz/FuzzBillingDate", swiftSettings: strict),
        .testTarget(name: "VMPulseCoreTests", dependencies: ["VMPulseCore", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "QMPTests", dependencies: ["QMP", "VMPulseTestSupport", .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "LibvirtTests", dependencies: ["Libvirt", "VMPulseTestSupport"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "VMPulseTestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "VMPulseCore", "VMPulseTestSupport", .product(name: "GRDB", package: "GRDB.swift"),
                                                   .product(name: "AsyncHTTPClient", package: "async-http-client")]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "VMPulseCore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "API", "VMPulseCore", "VMPulseTestSupport", "Store", "Hypervisor", .product(name: "GRDB", package: "GRDB.swift"),
                                                  .product(name: "HTTPTypes", package: "swift-http-types"),
                                                  .product(name: "NIOEmbedded", package: "swift-nio")]),
        // Depends on the executable so that `swift build --build-tests` builds the `vmpulse` the tests run.
        .testTarget(name: "EndToEndTests", dependencies: ["Hypervisor", "VMPulseCore", "Store", "Engine", "VMPulseTestSupport", "vmpulse", .product(name: "GRDB", package: "GRDB.swift"),
                                                     .product(name: "HummingbirdWSClient", package: "hummingbird-websocket")]),
    ]
)
