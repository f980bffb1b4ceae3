@testable import Hypervisor
import Libvirt
import Testing
import VMPulseCore

/// libvirt's typed parameters as records and readings, on what a real libvirt 9.0 sends
/// (keys seen in `virsh domstats` here) and on what a lying or broken daemon could send.
@Suite struct LibvirtRecordsTests {
    static func stats(_ params: [(String, LibvirtValue)]) -> LibvirtDomainStats {
        LibvirtDomainStats(name: "vm1", uuid: "fdd6440f-6e2d-4039-a5fa-43f0cf7b00bc", params: params.map { LibvirtParam(name: $0.0, value: $0.1) })
    }

    static let real: [(String, LibvirtValue)] = [
        ("state.state", .int(1)), ("state.reason", .int(1)), ("cpu.time", .uint(270_000_000)),
        ("block.count", .uint(1)), ("block.0.name", .string("vda")), ("block.0.path", .string("/tmp/d.qcow2")),
        ("block.0.backingIndex", .uint(1)), ("block.0.rd.reqs", .uint(32)), ("block.0.rd.bytes", .uint(33_554_432)),
        ("block.0.rd.times", .uint(1_000)), ("block.0.wr.reqs", .uint(64)), ("block.0.wr.bytes", .uint(67_108_864)),
        ("block.0.wr.times", .uint(2_000)), ("block.0.fl.reqs", .uint(3)), ("block.0.fl.times", .uint(30)),
        ("block.0.allocation", .uint(67_305_472)), ("block.0.capacity", .uint(268_435_456)),
    ]

    @Test func libvirtsBlockCountersBecomeTheIOCounters() throws {
        let disks = LibvirtRecords.disks(Self.stats(Self.real))
        let disk = try #require(disks.first)
        #expect(disks.count == 1)
        #expect(disk.name == "vda" && disk.path == "/tmp/d.qcow2" && disk.backingIndex == 1)
        #expect(disk.counters[.readBytes] == 33_554_432 && disk.counters[.writeBytes] == 67_108_864)
        #expect(disk.counters[.readIOs] == 32 && disk.counters[.writeIOs] == 64 && disk.counters[.flushIOs] == 3)
        #expect(disk.counters[.totalWriteTimeNs] == 2_000 && disk.counters[.totalFlushTimeNs] == 30)
        #expect(disk.allocation == 67_305_472 && disk.capacity == 268_435_456)
        #expect(!LibvirtRecords.isBusy(Self.stats(Self.real)))
    }

    @Test func theRecordKeepsLibvirtsKeysOfTheAskedGroupsAndAddsTheMonitorsAnswer() {
        let record = LibvirtRecords.record(Self.stats(Self.real), groups: [.state, .io], busy: false)
        #expect(record.params.map(\.key).prefix(3) == ["state.state", "state.reason", "state.monitor-response"])
        #expect(record["cpu.time"] == nil && record["block.0.rd.reqs"] == nil)
        #expect(record["io.0.name"] == .string("vda"))
        #expect(record["io.0.write_bytes"] == .uint(67_108_864))
        // What libvirt does not report is left out, not shown as 0.
        #expect(record["io.0.unmap_bytes"] == nil && record["io.0.write_ios_error"] == nil && record["io.0.idle_time_ns"] == nil)
    }

    @Test func aDomainWhoseMonitorWasSkippedIsUnresponsiveWithoutCounters() {
        let skipped = Self.real.filter { !$0.0.contains(".rd.") && !$0.0.contains(".wr.") && !$0.0.contains(".fl.") }
        let stats = Self.stats(skipped)
        #expect(LibvirtRecords.isBusy(stats))
        let record = LibvirtRecords.record(stats, groups: [.state, .block, .io], busy: true)
        #expect(record[MonitorResponse.key] == .int(MonitorResponse.unresponsive))
        #expect(record["io.count"] == nil)
        #expect(record.errors.count == 1)
    }

    /// A lying daemon: negative counters, the wrong types, indexes out of any bound, a
    /// disk without a name, values near 2^64. Nothing traps; what is not a counter reads
    /// as absent (0), and a disk without a name is left out.
    @Test func hostileParametersNeverTrap() {
        let lies: [(String, LibvirtValue)] = [
            ("block.0.name", .string("vda")), ("block.0.path", .string("/d")), ("block.0.rd.reqs", .int(-5)),
            ("block.0.wr.bytes", .uint(UInt64.max)), ("block.0.rd.bytes", .string("lots")), ("block.0.allocation", .double(1e300)),
            ("block.-1.name", .string("neg")), ("block.99999999999999999999.name", .string("huge")), ("block.4096.name", .string("far")),
            ("block.1.rd.reqs", .uint(1)), ("block.x.name", .string("x")), ("block.", .int(1)), ("block.2", .int(1)),
        ]
        let disks = LibvirtRecords.disks(Self.stats(lies))
        #expect(disks.map(\.name) == ["vda"])
        #expect(disks.first?.counters[.readIOs] == 0)
        #expect(disks.first?.counters[.writeBytes] == UInt64.max)
        #expect(disks.first?.counters[.readBytes] == 0)
        #expect(disks.first?.allocation == 0)
        #expect(disks.first?.hasCounters == true)  // rd.reqs was there, if negative
    }

    @Test func eachGroupAsksLibvirtForItsOwnFlagAndTheStateAlways() {
        #expect(LibvirtRecords.flags(for: [.io]) == [.block, .state])
        #expect(LibvirtRecords.flags(for: [.cpuTotal, .thin]) == [.cpuTotal, .state])
        #expect(LibvirtRecords.flags(for: StatsGroup.allCases).contains([.perf, .memory, .dirtyrate, .vm, .iothread, .interface, .balloon, .vcpu]))
    }
}
