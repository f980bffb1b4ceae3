import Foundation
@testable import Hypervisor
import Libvirt
import Synchronization
import Testing

/// The threads libvirt's blocking calls run on: a call that never returns (a domain stuck in
/// its monitor) costs its caller no more than the timeout, and such calls are bounded.
@Suite struct LibvirtCallsTests {
    /// Blocks its callers until opened.
    final class Gate: Sendable {
        private let semaphore = DispatchSemaphore(value: 0)
        func wait() { semaphore.wait() }
        func open(_ n: Int) { for _ in 0..<n { semaphore.signal() } }
    }

    @Test func aCallThatNeverReturnsCostsTheTimeoutAndHoldsItsPlace() async throws {
        let calls = LibvirtCalls(limit: 2)
        let gate = Gate()
        let start = ContinuousClock.now
        let first = await calls.run("stuck", timeout: .milliseconds(200)) { () throws(LibvirtError) in gate.wait(); return 1 }
        #expect(ContinuousClock.now - start < .seconds(2))
        guard case .failure(.timedOut(let message)) = first else {
            Issue.record("expected a timeout, got \(first)")
            return
        }
        #expect(message.contains("did not answer 'stuck' within"))
        #expect(calls.running == 1)  // the thread still waits, and counts

        // A second stuck call fills the limit; the third is refused at once, without a thread.
        _ = await calls.run("stuck too", timeout: .milliseconds(50)) { () throws(LibvirtError) in gate.wait(); return 2 }
        let refusedAt = ContinuousClock.now
        let third = await calls.run("one more", timeout: .seconds(5)) { () throws(LibvirtError) in 3 }
        #expect(ContinuousClock.now - refusedAt < .milliseconds(500))
        guard case .failure(.busy(let why)) = third else {
            Issue.record("expected busy, got \(third)")
            return
        }
        #expect(why.contains("2 libvirt calls are still waiting"))

        // Once the stuck calls return, their places are free again.
        gate.open(2)
        for _ in 0..<100 where calls.running > 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(calls.running == 0)
        let fine = await calls.run("fine", timeout: .seconds(5)) { () throws(LibvirtError) in 4 }
        guard case .success(4) = fine else {
            Issue.record("expected 4, got \(fine)")
            return
        }
    }

    @Test func libvirtsErrorsBecomeTheProtocolsKinds() async {
        let calls = LibvirtCalls()
        let gone = await calls.run("lookup", timeout: .seconds(5)) { () throws(LibvirtError) -> Int in
            throw LibvirtError(code: LibvirtConstants.errorNoDomain, domain: 10, message: "Domain not found")
        }
        guard case .failure(let error) = gone else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.machineError.kind == .gone)
        #expect(!error.isConnectionLost)
        let refused = LibvirtCallError.libvirt(LibvirtError(code: LibvirtConstants.errorInvalidArgument, domain: 20, message: "failed to find disk 'vda[2]'"))
        #expect(refused.machineError.kind == .refused)
        let lost = LibvirtCallError.libvirt(LibvirtError(code: LibvirtConstants.errorSystem, domain: 7, message: "Failed to connect socket"))
        #expect(lost.isConnectionLost)
        #expect(LibvirtCallError.timedOut("x").machineError.kind == .timeout)
    }
}
