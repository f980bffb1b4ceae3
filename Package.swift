// swift-tools-version:6.0
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
        // The backend protocol and the QMP backend (discovery, stats groups, /proc).
        .target(
            name: "Hypervisor",
            dependencies: [
                "VMPulseCore", "QMP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
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
                "VMPulseCore", "Hypervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
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
        .testTarget(name: "VMPulseCoreTests", dependencies: ["VMPulseCore"]),
        .testTarget(name: "QMPTests", dependencies: ["QMP", "VMPulseTestSupport"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "VMPulseTestSupport"]),
        // Depends on the executable so that `swift build --build-tests` builds the `vmpulse` the tests run.
        .testTarget(name: "EndToEndTests", dependencies: ["Hypervisor", "VMPulseCore", "VMPulseTestSupport", "vmpulse"]),
    ]
)
