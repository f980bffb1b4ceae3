import Foundation
import Hypervisor
import Synchronization
import Testing
import VMPulseTestSupport

/// The VM-targeted operations of the backend protocol (`perform`), on a booted guest of each
/// backend: the same body reaches a QEMU through its vmpulse monitor and a libvirt domain
/// through libvirtd.
@Suite(.serialized) struct VMActionTests {
    static func backend(for bed: any GuestBed) throws -> any HypervisorBackend {
        var options = BackendOptions()
        if let qmp = bed as? TestBed {
            options.socketDirectory = qmp.socketDirectory
        } else {
            options.kind = .libvirt
            options.libvirtURI = try #require(bed.libvirtURI)
        }
        return try Backends.make(options)
    }

    /// The backend's handle for the guest with this UUID.
    static func machine(of guest: Guest, on backend: any HypervisorBackend) async throws -> String {
        try await backend.refresh()
        for machine in await backend.machines {
            if await backend.collect(machine: machine, groups: [.state])?.uuid == guest.uuid { return machine }
        }
        throw TestBedError("the backend does not see \(guest.name)")
    }

    /// Polls `condition` every 100 ms for at most `seconds`.
    static func eventually(_ seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }

    static func boots(_ guest: Guest) -> Int {
        let log = (try? String(contentsOfFile: guest.serialLog, encoding: .isoLatin1)) ?? ""
        return log.components(separatedBy: "VMPULSE-READY").count - 1
    }

    @Test(arguments: TestBackend.allCases)
    func pauseResumeResetAndKillReachTheVM(backend kind: TestBackend) async throws {
        let bed = try kind.makeBed(prefix: "act")
        defer { bed.shutdown() }
        let guest = try bed.launch(GuestSpec(name: "act-\(UUID().uuidString.prefix(6).lowercased())"))
        try await guest.waitReady()
        let backend = try Self.backend(for: bed)
        let machine = try await Self.machine(of: guest, on: backend)
        let seen = Mutex<[MachineEvent.Kind]>([])
        let events = Task {
            for await event in backend.events where event.machine == machine { seen.withLock { $0.append(event.kind) } }
        }
        defer { events.cancel() }
        #expect(try await backend.runState(machine: machine) == .running)

        try await backend.perform(.pause, machine: machine)
        #expect(try await backend.runState(machine: machine) == .paused)
        #expect(try await Self.eventually(5) { seen.withLock { $0.contains(.paused) } }, "no paused event: \(seen.withLock { $0 })")

        try await backend.perform(.resume, machine: machine)
        #expect(try await backend.runState(machine: machine) == .running)
        #expect(try await Self.eventually(5) { seen.withLock { $0.contains(.resumed) } })

        // A reset boots the guest again: its console announces readiness a second time.
        #expect(Self.boots(guest) == 1)
        try await backend.perform(.reset, machine: machine)
        #expect(try await Self.eventually(60) { Self.boots(guest) == 2 }, "the guest did not boot again after the reset")
        #expect(guest.isRunning)

        // The power button is accepted (this guest has no ACPI daemon, so it runs on).
        try await backend.perform(.powerdown, machine: machine)
        #expect(guest.isRunning)

        try await backend.perform(.kill, machine: machine)
        #expect(try await Self.eventually(10) { !guest.isRunning }, "QEMU still runs after kill")
        await #expect(throws: MachineError.self) { try await backend.perform(.resume, machine: machine) }
        await backend.close()
    }

    @Test(arguments: TestBackend.allCases)
    func anActionOnAMachineThatIsNotThereIsGone(backend kind: TestBackend) async throws {
        let bed = try kind.makeBed(prefix: "act")
        defer { bed.shutdown() }
        let backend = try Self.backend(for: bed)
        let nobody = kind == .qmp ? bed.directory + "/nobody.sock" : "libvirt:00000000-0000-0000-0000-00000000dead"
        let error = await #expect(throws: MachineError.self) { try await backend.perform(.pause, machine: nobody) }
        #expect(error?.kind == .gone, "\(String(describing: error))")
        await backend.close()
    }
}
