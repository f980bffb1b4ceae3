import Synchronization

/// Runs `operation` but returns `fallback()` if it has not finished within `timeout`.
///
/// Unlike a task group, this returns on time even if the operation ignores
/// cancellation: the operation is cancelled and left to finish on its own.
/// This is what keeps one stuck VM from delaying the others.
public func withDeadline<T: Sendable>(
    _ timeout: Duration, operation: @escaping @Sendable () async -> T, fallback: @escaping @Sendable () -> T
) async -> T {
    let race = DeadlineRace()
    return await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }
            if race.claim() {
                race.cancelWork()
                continuation.resume(returning: fallback())
            }
        }
        race.setWork(Task {
            let value = await operation()
            timer.cancel()
            if race.claim() { continuation.resume(returning: value) }
        })
    }
}

/// Who finished first, the operation or the timer; the first one resumes the caller.
private final class DeadlineRace: Sendable {
    private let finished = Mutex(false)
    private let work = Mutex<Task<Void, Never>?>(nil)

    /// True for the first caller only.
    func claim() -> Bool {
        finished.withLock { done in
            defer { done = true }
            return !done
        }
    }

    func setWork(_ task: Task<Void, Never>) {
        work.withLock { $0 = task }
    }

    func cancelWork() {
        work.withLock { $0?.cancel() }
    }
}
