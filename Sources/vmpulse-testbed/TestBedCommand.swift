import ArgumentParser
import Foundation
import VMPulseTestSupport

/// Starts and stops test guests outside the test suite: `make demo` and the benchmarks use it.
@main
struct TestBedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmpulse-testbed",
        abstract: "Start or stop vmpulse test guests (real QEMU, TCG).",
        subcommands: [Up.self, ThinDisk.self, Down.self]
    )

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start guests; they keep running after this command exits.")

        @Option(help: "How many guests.") var count = 3
        @Option(help: "Guest names are PREFIX-1, PREFIX-2, ...") var prefix = "demo"
        @Option(help: "Where disks, logs and pid files go.") var stateDir = "/tmp/vmpulse-demo"
        @Option(help: "Where the vmpulse monitor sockets go.") var socketDir = "/run/vmpulse/qmp"
        @Flag(help: "Start paused with no kernel (cheap, for scale runs).") var paused = false
        @Option(help: "Workload at boot (see testbed/guest-init.sh), e.g. loop-write:64.") var workload: String?
        @Flag(help: "Wait until each guest has booted.") var wait = false
        @Option(help: "A block device holding a qcow2 image (see 'thin-disk'): the guest's only disk, as proto0/fmt0/disk0.") var thinDevice: String?

        func validate() throws {
            guard (1...500).contains(count) else { throw ValidationError("--count must be between 1 and 500") }
            guard thinDevice == nil || count == 1 else { throw ValidationError("--thin-device goes with --count 1") }
        }

        func run() async throws {
            let bed = try TestBed(directory: stateDir, socketDirectory: socketDir)
            var guests: [Guest] = []
            for i in 1...count {
                var spec = GuestSpec(name: "\(prefix)-\(i)")
                spec.paused = paused
                spec.workload = workload
                if let thinDevice {
                    spec.disks = []
                    spec.extraArguments = ThinDiskFixture.qemuArguments(device: thinDevice)
                }
                guests.append(try bed.launch(spec))
            }
            if wait && !paused {
                for guest in guests { try await guest.waitReady() }
            }
            for guest in guests { print("\(guest.name) pid \(guest.pid) socket \(guest.socketPath)") }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the guests started with this state directory.")

        @Option(help: "The state directory given to 'up'.") var stateDir = "/tmp/vmpulse-demo"

        func run() async throws {
            let stopped = TestBed.stopGuests(in: stateDir)
            _ = ThinDiskFixture.detachAll(in: stateDir)
            try? FileManager.default.removeItem(atPath: stateDir)
            print("stopped \(stopped) guest(s)")
        }
    }

    struct ThinDisk: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "thin-disk",
            abstract: "Make a thin disk: a qcow2 image on a loop device over a sparse file; print its thin_disks entry for the agent.")

        @Option(help: "The VM it is for.") var vm: String
        @Option(help: "Where the sparse file goes.") var stateDir = "/tmp/vmpulse-demo"
        @Option(help: "The loop device's starting size, MiB.") var sizeMib = 64
        @Option(help: "The guest's disk size, MiB.") var capacityMib = 1024
        @Option(help: "The agent's chunk, MiB.") var chunkMib = 64

        func run() async throws {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
            let fixture = try ThinDiskFixture(directory: stateDir, physicalMiB: sizeMib, capacityMiB: capacityMib)
            print("""
                  - vm: \(vm)
                    drive: disk0
                    chunk_mib: \(chunkMib)
                    device: \(fixture.device)
                    backend: loop
                    file: \(fixture.file)
                """)
        }
    }
}
