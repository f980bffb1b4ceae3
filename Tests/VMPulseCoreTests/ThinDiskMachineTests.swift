import Testing
import VMPulseCore

/// The thin-disk state machine, driven by hand with an injected time.
@Suite struct ThinDiskMachineTests {
    static let mib: UInt64 = 1 << 20
    let policy = ThinPolicy(chunk: 64 * mib, utilizationPercent: 20, maximum: 1100 * mib)
    var mib: UInt64 { Self.mib }

    func observed(_ physicalMiB: UInt64, _ allocationMiB: UInt64, capacity: UInt64? = nil) -> ThinDiskMachine.Event {
        .observed(physical: physicalMiB * mib, allocation: allocationMiB * mib, capacity: capacity)
    }

    @Test func theMarkSitsEightyPercentOfAChunkBelowTheEnd() {
        #expect(policy.mark(physical: 64 * mib) == 64 * mib - 64 * mib * 8 / 10)
        // oVirt's defaults: 2560 MiB chunk, 20 %: the mark 2048 MiB below the end.
        #expect(ThinPolicy(chunk: 2560 * mib, utilizationPercent: 20, maximum: nil).mark(physical: 10240 * mib) == 8192 * mib)
        #expect(policy.mark(physical: mib) == 0)
        // Chunks too large for chunk × 80 to fit in 64 bits still give the right mark.
        let huge = ThinPolicy(chunk: 1 << 62, utilizationPercent: 20, maximum: nil).mark(physical: 1 << 63)
        #expect(abs(Double(huge) / Double(UInt64(1) << 62) - 1.2) < 1e-9)
        #expect(policy.nextSize(physical: 1090 * mib, maximum: 1100 * mib) == 1100 * mib)
        #expect(policy.nextSize(physical: .max - 1, maximum: .max) == .max)  // no overflow
        #expect(policy.nextSize(physical: 1200 * mib, maximum: 1100 * mib) == 1100 * mib)
        #expect(ThinPolicy(chunk: mib, utilizationPercent: 20, maximum: nil).maximum(capacity: 1000 * mib) == 1100 * mib)
    }

    @Test func setExtendVerifyReArm() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.state == .unset)
        #expect(m.handle(observed(64, 1), now: 0) == [.setMark(policy.mark(physical: 64 * mib))])
        #expect(m.state == .set(mark: policy.mark(physical: 64 * mib)))
        #expect(m.handle(.thresholdCrossed, now: 10) == [.extend(to: 128 * mib)])
        #expect(m.state == .extending(target: 128 * mib, since: 10))
        // Crossings and reads while extending start nothing more.
        #expect(m.handle(.thresholdCrossed, now: 10.001) == [])
        #expect(m.handle(observed(64, 60), now: 10.002) == [])
        #expect(m.handle(.extended(physical: 128 * mib), now: 10.005) == [.observe])
        #expect(m.extensions == 1)
        #expect(abs((m.lastExtensionSeconds ?? 0) - 0.005) < 1e-9)
        #expect(m.handle(observed(128, 60), now: 10.006) == [.setMark(policy.mark(physical: 128 * mib))])
        // A poll that finds nothing new re-arms nothing.
        #expect(m.handle(observed(128, 61), now: 12) == [])
    }

    @Test func theGuestOutranTheExtension() {
        // Read again after the extension: the guest is already past the new mark.
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 60), now: 0)
        #expect(m.handle(.extended(physical: 128 * mib), now: 1) == [.observe])
        #expect(m.handle(observed(128, 120), now: 1.001) == [.extend(to: 192 * mib)])
    }

    @Test func aMarkCrossedWhileNobodyListenedExtendsAtOnce() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(observed(64, 60), now: 0) == [.extend(to: 128 * mib)])
        #expect(m.state.name == "extending")
    }

    @Test func aCrossingBeforeTheSizeIsKnownReadsItFirst() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.thresholdCrossed, now: 0) == [.observe])
        #expect(m.state == .exceeded)
        #expect(m.handle(observed(64, 63), now: 0.1) == [.extend(to: 128 * mib)])
    }

    @Test func anENOSPCPauseIsExtendedAndResumed() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 1), now: 0)
        #expect(m.handle(.pausedNoSpace, now: 1) == [.extend(to: 128 * mib)])
        #expect(m.pausedForSpace)
        #expect(m.handle(.extended(physical: 128 * mib), now: 1.01) == [.resumeIfPausedOnIOError, .observe])
        #expect(m.pausesRecovered == 0 && m.pausedForSpace)  // until the guest really was resumed
        #expect(m.handle(.resumed, now: 1.02) == [])
        #expect(m.pausesRecovered == 1)
        #expect(!m.pausedForSpace)
        // A pause during an extension is resumed when it ends.
        _ = m.handle(observed(128, 120), now: 2)
        #expect(m.handle(.pausedNoSpace, now: 2.001) == [])
        #expect(m.handle(.extended(physical: 192 * mib), now: 2.01) == [.resumeIfPausedOnIOError, .observe])
        _ = m.handle(.resumed, now: 2.02)
        #expect(m.pausesRecovered == 2)
    }

    @Test func aPauseBeforeTheSizeIsKnownReadsTheDiskThenExtendsWhateverTheMark() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.pausedNoSpace, now: 0) == [.observe])
        #expect(m.state == .exceeded)
        // Below the mark by the numbers, but the guest is out of space: grow.
        #expect(m.handle(observed(64, 5), now: 0.1) == [.extend(to: 128 * mib)])
        #expect(m.handle(.extended(physical: 128 * mib), now: 0.2) == [.resumeIfPausedOnIOError, .observe])
    }

    @Test func aPauseNobodySawIsFoundInTheReadAndResumed() {
        // The agent was not running when the guest hit ENOSPC: QEMU's io-status says so.
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.observed(physical: 64 * mib, allocation: 64 * mib, capacity: nil, noSpace: true), now: 0) == [.extend(to: 128 * mib)])
        #expect(m.pausedForSpace)
        #expect(m.handle(.extended(physical: 128 * mib), now: 0.1) == [.resumeIfPausedOnIOError, .observe])
        #expect(m.handle(.resumed, now: 0.2) == [])
        #expect(!m.pausedForSpace && m.pausesRecovered == 1)
        // Even below the mark (a write that failed at the end of the device, say).
        var n = ThinDiskMachine(policy: policy)
        #expect(n.handle(.observed(physical: 64 * mib, allocation: mib, capacity: nil, noSpace: true), now: 0) == [.extend(to: 128 * mib)])
    }

    @Test func failuresBackOffAndRetry() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 63), now: 0)
        #expect(m.handle(.extensionFailed(reason: "exit 1"), now: 1) == [.scheduleRetry(at: 2)])
        #expect(m.state == .backoff(retryAt: 2, reason: "exit 1"))
        #expect(m.handle(.retryDue, now: 1.5) == [.scheduleRetry(at: 2)])  // early: set again
        #expect(m.handle(.thresholdCrossed, now: 1.6) == [])
        #expect(m.handle(.retryDue, now: 2) == [.observe])
        #expect(m.handle(observed(64, 63), now: 2) == [.extend(to: 128 * mib)])
        #expect(m.handle(.extensionFailed(reason: "timed out"), now: 3) == [.scheduleRetry(at: 5)])  // 2 s: doubled
        #expect(m.failures == 2)
        // ... 4, 8, 16, 32, then 60 s at most.
        var delays: [Double] = []
        for i in 0..<6 {
            let now = 100.0 * Double(i + 1)
            _ = m.handle(.retryDue, now: now)
            _ = m.handle(observed(64, 63), now: now)
            if case .scheduleRetry(let at)? = m.handle(.extensionFailed(reason: "again"), now: now).first { delays.append(at - now) }
        }
        #expect(delays == [4, 8, 16, 32, 60, 60])
        // A success resets the backoff.
        _ = m.handle(.retryDue, now: 1000)
        _ = m.handle(observed(64, 63), now: 1000)
        _ = m.handle(.extended(physical: 128 * mib), now: 1000)
        _ = m.handle(observed(128, 127), now: 1000)
        #expect(m.handle(.extensionFailed(reason: "once"), now: 1001) == [.scheduleRetry(at: 1002)])
    }

    @Test func aLyingExtensionIsAFailure() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 63), now: 0)
        #expect(m.handle(.extended(physical: 64 * mib), now: 0.1) == [.scheduleRetry(at: 1.1)])
        guard case .backoff(_, let reason) = m.state else {
            Issue.record("state \(m.state)")
            return
        }
        #expect(reason.contains("reported success but the device still has"))
        #expect(m.extensions == 0)
    }

    @Test func aDiskAtItsMaximumIsDisabled() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(observed(1100, 1099), now: 0) == [.clearMark])
        guard case .disabled(let reason) = m.state else {
            Issue.record("state \(m.state)")
            return
        }
        #expect(reason.contains("maximum size"))
        #expect(m.handle(.thresholdCrossed, now: 1) == [])
        #expect(m.handle(.pausedNoSpace, now: 1) == [])  // left paused: nothing to grow
        #expect(m.pausedForSpace)
        // The last chunk is cut to the maximum.
        var n = ThinDiskMachine(policy: policy)
        #expect(n.handle(observed(1090, 1080), now: 0) == [.extend(to: 1100 * mib)])
        #expect(n.handle(.extended(physical: 1100 * mib), now: 1) == [.observe])
        #expect(n.handle(observed(1100, 1090), now: 1) == [.clearMark])
        #expect(n.state.name == "disabled")
    }

    @Test func theMaximumDefaultsToCapacityPlusTenPercent() {
        var m = ThinDiskMachine(policy: ThinPolicy(chunk: 64 * mib, utilizationPercent: 20, maximum: nil))
        #expect(m.maximum == nil)
        _ = m.handle(observed(64, 1, capacity: 1000 * mib), now: 0)
        #expect(m.maximum == 1100 * mib)
        var unknown = ThinDiskMachine(policy: ThinPolicy(chunk: 64 * mib, utilizationPercent: 20, maximum: nil))
        #expect(unknown.handle(observed(64, 1), now: 0) == [.clearMark])
        #expect(unknown.state == .disabled(reason: "the disk's capacity is unknown; set max_size_mib"))
    }

    @Test func anUnusableDiskIsDisabledUntilReset() {
        var m = ThinDiskMachine(policy: policy)
        #expect(m.handle(.unusable(reason: "no node proto9 on vm1"), now: 0) == [])
        #expect(m.state == .disabled(reason: "no node proto9 on vm1"))
        #expect(m.handle(observed(64, 63), now: 1) == [])
        m.reset()  // the VM came back: look again
        #expect(m.handle(observed(64, 1), now: 2) == [.setMark(policy.mark(physical: 64 * mib))])
    }

    @Test func aFailedReadBacksOffAndRetries() {
        var m = ThinDiskMachine(policy: ThinPolicy(chunk: 100, utilizationPercent: 20, maximum: 1000))
        #expect(m.handle(.observationFailed(reason: "timed out"), now: 0) == [.scheduleRetry(at: 1)])
        #expect(m.state.name == "backoff")
        #expect(m.handle(.retryDue, now: 1) == [.observe])
    }

    @Test func aResetKeepsTheCountsAndForgetsThePause() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 63), now: 0)
        _ = m.handle(.pausedNoSpace, now: 0)
        _ = m.handle(.extended(physical: 128 * mib), now: 1)
        _ = m.handle(.resumed, now: 1)
        _ = m.handle(observed(128, 127), now: 1)
        _ = m.handle(.pausedNoSpace, now: 1)
        // An extension in flight goes on: its end is still awaited, and the pause with it.
        m.reset()
        #expect(m.state.name == "extending" && m.pausedForSpace)
        #expect(m.handle(.extended(physical: 192 * mib), now: 2) == [.resumeIfPausedOnIOError, .observe])
        _ = m.handle(observed(192, 130), now: 2)
        m.reset()
        #expect(m.state == .unset && !m.pausedForSpace)
        #expect(m.extensions == 2 && m.pausesRecovered == 1)
    }

    @Test func aPauseDuringAnExtensionCostsNoSecondChunk() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 63), now: 0)
        // The guest pauses while the device grows; a read meanwhile says so too.
        #expect(m.handle(.pausedNoSpace, now: 0.5) == [])
        #expect(m.handle(.observed(physical: 64 * mib, allocation: 64 * mib, capacity: nil, noSpace: true), now: 0.6) == [])
        #expect(m.handle(.extended(physical: 128 * mib), now: 1) == [.resumeIfPausedOnIOError, .observe])
        // cont failed (the monitor did not answer): back off, then resume without growing again.
        #expect(m.handle(.observationFailed(reason: "cannot resume the guest: timed out"), now: 1.1) == [.scheduleRetry(at: 2.1)])
        #expect(m.pausedForSpace)
        #expect(m.handle(.retryDue, now: 2.1) == [.observe])
        let mark = policy.mark(physical: 128 * mib)
        #expect(m.handle(observed(128, 64), now: 2.2) == [.setMark(mark), .resumeIfPausedOnIOError])
        #expect(m.extensions == 1)
        #expect(m.handle(.resumed, now: 2.3) == [] && m.pausesRecovered == 1)
    }

    @Test func aGuestSomeoneElseResumedIsNotCounted() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(observed(64, 1), now: 0)
        _ = m.handle(.pausedNoSpace, now: 1)
        _ = m.handle(.extended(physical: 128 * mib), now: 2)
        #expect(m.handle(.notPaused, now: 2) == [])
        #expect(!m.pausedForSpace && m.pausesRecovered == 0)
    }

    @Test func aRetryTimerThatWakesEarlyIsSetAgain() {
        var m = ThinDiskMachine(policy: policy)
        _ = m.handle(.observationFailed(reason: "timed out"), now: 10)
        #expect(m.handle(.retryDue, now: 10.5) == [.scheduleRetry(at: 11)])
        #expect(m.handle(.retryDue, now: 11) == [.observe])
    }

    @Test func theMaximumFollowsTheCapacityWhenNotConfigured() {
        var m = ThinDiskMachine(policy: ThinPolicy(chunk: 64 * mib, utilizationPercent: 20, maximum: nil))
        _ = m.handle(observed(64, 1, capacity: 1000 * mib), now: 0)
        #expect(m.maximum == 1100 * mib)
        // block_resize to 2000 MiB: the next read learns the new maximum.
        _ = m.handle(observed(64, 1, capacity: 2000 * mib), now: 1)
        #expect(m.maximum == 2200 * mib)
        // A configured maximum stays.
        var n = ThinDiskMachine(policy: policy)
        _ = n.handle(observed(64, 1, capacity: 2000 * mib), now: 0)
        #expect(n.maximum == 1100 * mib)
    }
}
