import Testing
import VMPulseCore

@Suite struct DomainStateTests {
    @Test(arguments: [
        ("running", 1, 0), ("paused", 3, 1), ("prelaunch", 3, 1), ("io-error", 3, 5),
        ("inmigrate", 3, 2), ("postmigrate", 3, 2), ("save-vm", 3, 3), ("shutdown", 3, 8),
        ("watchdog", 3, 6), ("guest-panicked", 6, 1), ("suspended", 7, 0), ("something-new", 3, 0),
    ] as [(String, Int64, Int64)])
    func mapsQEMUStatusLikeLibvirt(status: String, state: Int64, reason: Int64) {
        #expect(DomainState(qemuStatus: status) == DomainState(state: state, reason: reason))
    }
}
