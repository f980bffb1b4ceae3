import Testing
import VMPulseCore

@Suite struct ThinDiskMachineTests {
    static let mib: UInt64 = 1 << 20
    let policy = ThinPolicy(chunk: 64 * mib, utilizationPercent: 20, maximum: 1100 * mib)

    @Test func theMarkSitsEightyPercentOfAChunkBelowTheEnd() {
        #expect(policy.mark(physical: 64 * Self.mib) == 64 * Self.mib - UInt64(Double(64 * Self.mib) * 0.8))
        #expect(ThinPolicy(chunk: 2560 * Self.mib, utilizationPercent: 20, maximum: .max).mark(physical: 10240 * Self.mib) == 8192 * Self.mib)
        #expect(policy.mark(physical: Self.mib) == 0)
        #expect(policy.nextSize(physical: 1090 * Self.mib) == 1100 * Self.mib)
    }

    @Test func setExtendVerifyReArm() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.observed(physical: 64 * Self.mib, allocation: Self.mib), now: 0) == [.setMark(policy.mark(physical: 64 * Self.mib))])
        #expect(m.state.name == "set")
        #expect(m.handle(.thresholdCrossed, now: 10) == [.extend(to: 128 * Self.mib)])
        // Crossings and pauses while extending start nothing more.
        #expect(m.handle(.thresholdCrossed, now: 10.001) == [])
        #expect(m.handle(.extended(physical: 128 * Self.mib), now: 10.005) == [.observe])
        #expect(m.extensions == 1)
        #expect(abs((m.lastExtensionSeconds ?? 0) - 0.005) < 1e-9)
        #expect(m.handle(.observed(physical: 128 * Self.mib, allocation: 60 * Self.mib), now: 10.006) == [.setMark(policy.mark(physical: 128 * Self.mib))])
    }

    @Test func aMarkCrossedWhileNobodyListenedExtendsAtOnce() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.observed(physical: 64 * Self.mib, allocation: 60 * Self.mib), now: 0) == [.extend(to: 128 * Self.mib)])
        #expect(m.state.name == "extending")
    }

    @Test func aCrossingBeforeTheSizeIsKnownReadsItFirst() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.thresholdCrossed, now: 0) == [.observe])
        #expect(m.state == .exceeded)
        #expect(m.handle(.observed(physical: 64 * Self.mib, allocation: 63 * Self.mib), now: 0.1) == [.extend(to: 128 * Self.mib)])
    }

    @Test func anENOSPCPauseIsExtendedAndResumed() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(.observed(physical: 64 * Self.mib, allocation: Self.mib), now: 0)
        #expect(m.handle(.pausedNoSpace, now: 1) == [.extend(to: 128 * Self.mib)])
        #expect(m.handle(.extended(physical: 128 * Self.mib), now: 1.01) == [.observe, .resumeIfPausedOnIOError])
        #expect(m.pausesRecovered == 1)
        // A pause during an extension is resumed when it ends.
        _ = m.handle(.observed(physical: 128 * Self.mib, allocation: 120 * Self.mib), now: 2)
        #expect(m.handle(.pausedNoSpace, now: 2.001) == [])
        #expect(m.handle(.extended(physical: 192 * Self.mib), now: 2.01) == [.observe, .resumeIfPausedOnIOError])
        #expect(m.pausesRecovered == 2)
    }

    @Test func failuresBackOffAndRetry() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(.observed(physical: 64 * Self.mib, allocation: 63 * Self.mib), now: 0)
        #expect(m.handle(.extensionFailed(reason: "exit 1"), now: 1) == [])
        #expect(m.state == .backoff(retryAt: 2, reason: "exit 1"))
        #expect(m.handle(.tick, now: 1.5) == [])
        #expect(m.handle(.thresholdCrossed, now: 1.6) == [])
        #expect(m.handle(.tick, now: 2) == [.observe])
        #expect(m.handle(.observed(physical: 64 * Self.mib, allocation: 63 * Self.mib), now: 2) == [.extend(to: 128 * Self.mib)])
        #expect(m.handle(.extensionFailed(reason: "timed out"), now: 3) == [])
        #expect(m.state == .backoff(retryAt: 5, reason: "timed out"))  // 2 s: doubled
        #expect(m.failures == 2)
    }

    @Test func aLyingExtensionIsAFailure() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(.observed(physical: 64 * Self.mib, allocation: 63 * Self.mib), now: 0)
        #expect(m.handle(.extended(physical: 64 * Self.mib), now: 0.1) == [])
        guard case .backoff(_, let reason) = m.state else {
            Issue.record("state \(m.state)")
            return
        }
        #expect(reason.contains("reported success but the device still has"))
        #expect(m.extensions == 0)
    }

    @Test func aDiskAtItsMaximumIsDisabled() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.observed(physical: 1100 * Self.mib, allocation: 1099 * Self.mib), now: 0) == [.clearMark])
        guard case .disabled(let reason) = m.state else {
            Issue.record("state \(m.state)")
            return
        }
        #expect(reason.contains("maximum size"))
        #expect(m.handle(.thresholdCrossed, now: 1) == [])
        #expect(m.handle(.pausedNoSpace, now: 1) == [])  // left paused: nothing to grow
        var n = ThinDiskMachine(policy: policy)
        #expect(n.handle(.unusable(reason: "no node proto9 on vm1"), now: 0) == [])
        #expect(n.state == .disabled(reason: "no node proto9 on vm1"))
    }
}

@Suite struct ThinDiskMachineReadFailureTests {
    @Test func aFailedReadBacksOffAndRetries() {
        var m = ThinDiskMachine(policy: ThinPolicy(chunk: 100, utilizationPercent: 20, maximum: 1000))
        #expect(m.handle(.observationFailed(reason: "timed out"), now: 0) == [])
        #expect(m.state.name == "backoff")
        #expect(m.handle(.tick, now: 1) == [.observe])
    }
}
